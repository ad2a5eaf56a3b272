package node

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Streams that deliver nothing cannot cut a node off: 20 attacker peers
// open 1,200 message streams that idle, send a length prefix only, or
// trickle a byte at a time (they used to take every stream the host
// allowed, and a contact's send timed out). Each attacker keeps at most
// msgStreamsPerPeer of them open at once, every one ends within 10 s of
// opening, and a contact that writes during the attack, on a new stream,
// is delivered.
func TestIdleStreamsCannotCutANodeOff(t *testing.T) {
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	b := startNode(t, t.TempDir(), boot.AddrInfo())
	c := startNode(t, t.TempDir(), boot.AddrInfo())
	if err := b.AddContact(c.ID(), "carol"); err != nil {
		t.Fatal(err)
	}
	const attackers, perAttacker = 20, 60
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var mu sync.Mutex
	var longest time.Duration
	var wg sync.WaitGroup
	attackerIDs := map[peer.ID]bool{}
	for range attackers {
		m := rawHost(t, nil)
		if err := m.Connect(ctx, b.AddrInfo()); err != nil {
			t.Fatal(err)
		}
		attackerIDs[m.ID()] = true
		for j := range perAttacker {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				s, err := m.NewStream(ctx, b.ID(), MsgProtocol)
				if err != nil {
					return // refused at once: fine
				}
				defer s.Reset()
				s.SetDeadline(start.Add(30 * time.Second)) // the test's own bound, far past the node's
				alive := make(chan struct{})
				go func() {
					defer close(alive)
					var buf [64]byte
					for {
						if _, err := s.Read(buf[:]); err != nil {
							return
						}
					}
				}()
				switch j % 3 {
				case 0: // idle
				case 1: // a length prefix, then nothing
					s.Write([]byte{0x80, 0x80, 0x01})
				case 2: // a 100-byte frame, a byte every 500 ms
					s.Write([]byte{100})
					tick := time.NewTicker(500 * time.Millisecond)
					defer tick.Stop()
				trickle:
					for range 100 {
						select {
						case <-alive:
							break trickle
						case <-tick.C:
							if _, err := s.Write([]byte{'x'}); err != nil {
								break trickle
							}
						}
					}
				}
				<-alive
				lived := time.Since(start)
				mu.Lock()
				longest = max(longest, lived)
				mu.Unlock()
			}()
		}
	}
	// b's side: how many message streams each attacker holds, sampled.
	most := 0
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for ctx.Err() == nil {
			for p := range attackerIDs {
				open := 0
				for _, conn := range b.host.Network().ConnsToPeer(p) {
					for _, st := range conn.GetStreams() {
						if st.Protocol() == MsgProtocol {
							open++
						}
					}
				}
				most = max(most, open)
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	// Meanwhile a contact writes, on a new stream.
	time.Sleep(time.Second)
	id := send(t, c, b, "can you hear me?")
	waitFor(t, 15*time.Second, "the contact's message during the attack", func() (bool, string) {
		m := find(history(t, c, b.ID()), id)
		return m != nil && m.State == "delivered", "not yet"
	})
	wg.Wait()
	cancel()
	<-sampled
	if longest > 10*time.Second {
		t.Errorf("an attacker's stream lived %v; want closed within 10 s", longest)
	}
	if most > msgStreamsPerPeer {
		t.Errorf("an attacker held %d message streams at once; the limit is %d", most, msgStreamsPerPeer)
	}
	t.Logf("%d streams tried; longest lived %v; most held by one attacker at once: %d", attackers*perAttacker, longest.Round(time.Millisecond), most)
}
