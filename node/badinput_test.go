package node

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/node/wire"
)

// rawHost is a bare libp2p host that speaks our protocols by hand: an
// attacker, or a peer replaying what it sent before.
func rawHost(t testing.TB, key crypto.PrivKey) host.Host {
	t.Helper()
	opts := []libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics()}
	if key != nil {
		opts = append(opts, libp2p.Identity(key))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func rawStream(t testing.TB, h host.Host, to *Node) network.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, to.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	s, err := h.NewStream(ctx, to.ID(), MsgProtocol)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Reset() })
	return s
}

// exchange writes frames and reads one ack per frame.
func exchange(t testing.TB, s network.Stream, frames ...[]byte) []wire.Ack {
	t.Helper()
	var out []byte
	for _, f := range frames {
		out = wire.AppendFrame(out, f)
	}
	if _, err := s.Write(out); err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(s)
	acks := make([]wire.Ack, len(frames))
	for i := range acks {
		a, err := wire.ReadAck(r)
		if err != nil {
			t.Fatalf("ack %d: %v", i, err)
		}
		acks[i] = a
	}
	return acks
}

// fetchRawBundle asks a node for its bundle as any peer may.
func fetchRawBundle(t testing.TB, h host.Host, n *Node) *e2e.Bundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := h.NewStream(ctx, n.ID(), BundleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	raw, err := wire.ReadFrame(bufio.NewReader(s), e2e.MaxBundleSize)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e2e.VerifyBundle(raw, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// badInputSetup: a and b have talked; a's first envelope to b is kept, as
// it went over the wire, for replays.
func badInputSetup(t *testing.T) (a, b *Node, first []byte) {
	// Keep a copy of each envelope of a's as it goes on the wire.
	var mu sync.Mutex
	wire := map[e2e.MessageID][]byte{}
	boot := startNode(t, t.TempDir())
	acfg := testConfig(t.TempDir(), boot.AddrInfo())
	acfg.tap = func(id e2e.MessageID, env []byte) {
		mu.Lock()
		wire[id] = append([]byte(nil), env...)
		mu.Unlock()
	}
	a = startConfig(t, acfg)
	b = startNode(t, t.TempDir(), boot.AddrInfo())
	id := send(t, a, b, "first")
	waitFor(t, 10*time.Second, "first delivered", func() (bool, string) {
		return count(history(t, a, b.ID()), db.Outgoing, db.Delivered) == 1, "not yet"
	})
	mu.Lock()
	first = wire[e2e.MessageID(id)]
	mu.Unlock()
	if first == nil {
		t.Fatal("no copy of the first envelope")
	}
	send(t, b, a, "reply")
	return a, b, first
}

// assertConversationContinues: after the attack, a and b still talk both
// ways and b stored exactly what a and b said.
func assertConversationContinues(t *testing.T, a, b *Node) {
	t.Helper()
	send(t, a, b, "still there?")
	send(t, b, a, "yes")
	waitFor(t, 10*time.Second, "conversation after the attack", func() (bool, string) {
		return count(history(t, b, a.ID()), db.Incoming, "") == 2 && count(history(t, a, b.ID()), db.Incoming, "") == 2, "not yet"
	})
	checkConversation(t, history(t, b, a.ID()), db.Incoming, []string{"first", "still there?"})
	contacts, err := b.Contacts()
	if err != nil {
		t.Fatal(err)
	}
	if len(contacts) != 1 || contacts[0].PeerID != a.ID() {
		t.Fatalf("b's contacts after the attack: %+v, want only a", contacts)
	}
	var n int
	b.store.View(func(r *db.ReadTx) error {
		ms, err := r.Search("first", 100)
		n = len(ms)
		return err
	})
	if n != 1 {
		t.Fatalf("%d stored copies of the first message, want 1", n)
	}
}

func TestBadInputOversizedFrame(t *testing.T) {
	checkNoLeaks(t)
	a, b, _ := badInputSetup(t)
	m := rawHost(t, nil)
	s := rawStream(t, m, b)
	// A length prefix far over the limit, then some bytes: b must refuse
	// it before allocating, and drop the stream.
	hdr := binary.AppendUvarint(nil, 1<<30)
	s.Write(append(hdr, make([]byte, 1000)...))
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadAll(s)
	var timeout interface{ Timeout() bool }
	if errors.As(err, &timeout) && timeout.Timeout() {
		t.Fatal("b kept the stream open after an oversized frame")
	}
	assertConversationContinues(t, a, b)
}

func TestBadInputGarbageAndForgeries(t *testing.T) {
	checkNoLeaks(t)
	a, b, first := badInputSetup(t)

	// Garbage from a stranger: refused, nothing stored.
	mallory := rawHost(t, nil)
	s := rawStream(t, mallory, b)
	garbage := make([]byte, 300)
	rand.Read(garbage)
	tampered := append([]byte(nil), first...)
	tampered[len(tampered)-5] ^= 1
	acks := exchange(t, s, garbage, []byte{}, first, tampered)
	for i, a := range acks {
		if a.Status != wire.Rejected {
			t.Errorf("frame %d from a stranger: ack %d, want rejected", i, a.Status)
		}
	}

	// A prekey message from the stranger's own identity, made with b's
	// real bundle, with its ciphertext tampered with: refused, and the
	// stranger does not become a contact.
	mid := e2e.NewIdentity()
	mkey, _, _ := libp2pKey(mid)
	forger := rawHost(t, mkey)
	fs := rawStream(t, forger, b)
	sess, err := e2e.Initiate(mid, fetchRawBundle(t, forger, b))
	if err != nil {
		t.Fatal(err)
	}
	_, env, err := sess.Encrypt(wire.EncodeContent(time.Now().UnixMilli(), "hi, it is me"))
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), env...)
	bad[len(bad)-1] ^= 0x80
	if acks := exchange(t, fs, bad); acks[0].Status != wire.Rejected {
		t.Errorf("forged prekey message: ack %d, want rejected", acks[0].Status)
	}

	// a replays its own first envelope, as the same peer: acknowledged
	// again (a lost ack must not make a resend fail), stored once.
	ra := rawHost(t, a.priv)
	rs := rawStream(t, ra, b)
	if acks := exchange(t, rs, first, first); acks[0].Status != wire.Stored || acks[1].Status != wire.Stored {
		t.Errorf("replay by the sender: acks %v, want stored (deduplicated)", acks)
	}
	assertConversationContinues(t, a, b)
}

func TestBadInputJunkFlood(t *testing.T) {
	checkNoLeaks(t)
	a, b, _ := badInputSetup(t)
	m := rawHost(t, nil)
	const total = 10000
	junk := make([]byte, 64)
	sent, streams := 0, 0
	deadline := time.Now().Add(2 * time.Minute)
	for sent < total && time.Now().Before(deadline) {
		s := rawStream(t, m, b)
		streams++
		var burst []byte
		k := min(total-sent, 200)
		for range k {
			rand.Read(junk)
			burst = wire.AppendFrame(burst, junk)
		}
		if _, err := s.Write(burst); err == nil {
			sent += k
		}
		// b reads on until it has refused maxRejects frames in a row,
		// then resets: drain what it answered.
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, s)
		s.Reset()
	}
	if sent < total {
		t.Fatalf("sent %d junk frames in 2 minutes, want %d", sent, total)
	}
	t.Logf("%d junk frames over %d streams", sent, streams)
	assertConversationContinues(t, a, b)
}
