package node

import (
	"bufio"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/node/wire"
)

// benchText is a typical chat message.
const benchText = "On my way, I'll be there in ten minutes. Order me a coffee?"

// BenchmarkSteadyMessaging: A sends to B over one connection, both with
// durable stores; b.N messages from 64 concurrent senders. Reports
// messages/s from the first Send to the last acknowledgement, and the
// latency from Send to "delivered" (ack committed at A).
func BenchmarkSteadyMessaging(b *testing.B) {
	const senders = 64
	a, bn := startNode(b, b.TempDir()), startNode(b, b.TempDir())
	ctx := context.Background()
	if err := a.Connect(ctx, bn.AddrInfo()); err != nil {
		b.Fatal(err)
	}
	accepts(b, bn, a)
	send(b, a, bn, "warm up")
	waitDelivered(b, a, bn.ID(), 1)
	last, _ := lastEvent(b, a)

	var mu sync.Mutex
	start := map[MessageID]time.Time{}
	events := a.Watch(ctx, last, EventState)
	b.ResetTimer()
	t0 := time.Now()
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				s := time.Now()
				id, err := a.Send(ctx, bn.ID(), benchText)
				if err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				start[id] = s
				mu.Unlock()
			}
		}()
	}
	go func() {
		for i := 0; i < b.N; i++ {
			jobs <- i
		}
		close(jobs)
	}()
	lat := make([]time.Duration, 0, b.N)
	for len(lat) < b.N {
		e, err := events.Next()
		if err != nil {
			b.Fatal(err)
		}
		if e.State != Delivered {
			continue
		}
		at := time.Now()
		mu.Lock()
		s, ok := start[e.MessageID]
		mu.Unlock()
		for !ok { // the ack beat the Send's return to its caller
			time.Sleep(time.Millisecond)
			mu.Lock()
			s, ok = start[e.MessageID]
			mu.Unlock()
		}
		lat = append(lat, at.Sub(s))
	}
	elapsed := time.Since(t0)
	wg.Wait()
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
}

// BenchmarkTransportFloor: the same traffic over a raw libp2p stream,
// with no crypto and no storage: frames of an envelope's size, each
// answered by an ack frame, pipelined. What the messaging above is
// compared with.
func BenchmarkTransportFloor(b *testing.B) {
	h1, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		b.Fatal(err)
	}
	defer h1.Close()
	h2, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		b.Fatal(err)
	}
	defer h2.Close()
	h2.SetStreamHandler("/floor", func(s network.Stream) {
		defer s.Close()
		r, w := bufio.NewReader(s), bufio.NewWriter(s)
		for {
			f, err := wire.ReadFrame(r, wire.MaxFrame)
			if err != nil {
				return
			}
			var a wire.Ack
			copy(a.ID[:], f)
			a.Status = wire.Stored
			w.Write(a.Append(nil))
			if r.Buffered() == 0 {
				w.Flush()
			}
		}
	})
	ctx := context.Background()
	if err := h1.Connect(ctx, peer.AddrInfo{ID: h2.ID(), Addrs: h2.Addrs()}); err != nil {
		b.Fatal(err)
	}
	s, err := h1.NewStream(ctx, h2.ID(), "/floor")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Reset()
	// An envelope of benchText: its size on the wire.
	frame := make([]byte, len(wire.EncodeContent(0, benchText))+e2e.MessageOverhead)
	b.ResetTimer()
	t0 := time.Now()
	sentAt := make([]time.Time, b.N)
	done := make(chan []time.Duration)
	go func() {
		r := bufio.NewReader(s)
		lat := make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			if _, err := wire.ReadAck(r); err != nil {
				b.Error(err)
				break
			}
			lat = append(lat, time.Since(sentAt[i]))
		}
		done <- lat
	}()
	w := bufio.NewWriter(s)
	for i := 0; i < b.N; i++ {
		sentAt[i] = time.Now()
		w.Write(wire.AppendFrame(nil, frame))
		if i%64 == 63 || i == b.N-1 {
			w.Flush()
		}
	}
	lat := <-done
	elapsed := time.Since(t0)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
}

// BenchmarkFirstContact: a DHT lookup, connect, bundle fetch, PQXDH and
// the first message acknowledged, to a peer never seen before, in a
// 10-node network.
func BenchmarkFirstContact(b *testing.B) {
	boot := startNode(b, b.TempDir())
	for i := 0; i < 8; i++ {
		startNode(b, b.TempDir(), boot.AddrInfo())
	}
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		a := startNode(b, b.TempDir(), boot.AddrInfo())
		c := startNode(b, b.TempDir(), boot.AddrInfo())
		if _, err := c.PublishBundle(ctx); err != nil {
			b.Fatal(err)
		}
		// a knows only c's peer ID.
		a.Host().Network().ClosePeer(c.ID())
		a.Host().Peerstore().ClearAddrs(c.ID())
		b.StartTimer()
		s := time.Now()
		send(b, a, c, "hello, stranger")
		waitDelivered(b, a, c.ID(), 1)
		lat = append(lat, time.Since(s))
		b.StopTimer()
		a.Close()
		c.Close()
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*95/100]), "p95-ms")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func waitDelivered(t testing.TB, n *Node, p peer.ID, want int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		h := history(t, n, p)
		if count(h, db.Outgoing, db.Delivered) >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(fmt.Sprintf("%d messages not delivered in 30 s", want))
		}
	}
}

func lastEvent(t testing.TB, n *Node) (int64, error) {
	var id int64
	err := n.store.View(func(r *db.ReadTx) (err error) {
		id, err = r.LastEventID()
		return err
	})
	return id, err
}
