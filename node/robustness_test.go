package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pmsg/p2pmsg/db"

	"github.com/p2pmsg/p2pmsg/node/wire"
)

// A configuration that cannot work is refused by New, before anything
// is created, with a sentence that names what is wrong.
func TestNewRefusesABadConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.ListenAddrs = []string{"not-a-multiaddr"}
	cfg.RetryMin, cfg.RetryMax = time.Minute, time.Second
	cfg.DHTMode = "sometimes"
	_, err := New(cfg)
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New: %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{`listen address "not-a-multiaddr"`, "retry min 1m0s is above retry max 1s", `DHT mode "sometimes"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	if Exists(dir) {
		t.Error("a store was created for a refused configuration")
	}
}

// A Start that fails leaves a node that refuses to work (no panic), and
// nothing running.
func TestStartFailure(t *testing.T) {
	checkNoLeaks(t)
	n, err := New(testConfig(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	// New refuses this; set behind its back, it makes the host fail to
	// build. (A port in use fails too, but go-libp2p v0.51 then leaks the
	// goroutines of the half-built host.)
	n.cfg.ListenAddrs = []string{"not-a-multiaddr"}
	if err := n.Start(context.Background()); err == nil {
		t.Fatal("Start with a bad listen address succeeded")
	}
	other := startNode(t, t.TempDir())
	if _, err := n.Send(context.Background(), other.ID(), "hi"); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Send after a failed Start: %v, want ErrNotStarted", err)
	}
	if _, err := n.PublishBundle(context.Background()); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("PublishBundle after a failed Start: %v", err)
	}
}

// The recipient loses its session (here: it resets the peer). The
// sender's next message is refused with a reason that makes it drop its
// session; the message shows failed, with that reason; resent, it starts
// a new session and arrives.
func TestRecipientLostTheSession(t *testing.T) {
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	a := startNode(t, t.TempDir(), boot.AddrInfo())
	b := startNode(t, t.TempDir(), boot.AddrInfo())
	send(t, a, b, "one")
	send(t, b, a, "two") // both sides confirmed: a sends normal messages now
	waitFor(t, 10*time.Second, "first exchange", func() (bool, string) {
		return count(history(t, a, b.ID()), db.Incoming, "") == 1, "not yet"
	})
	if err := b.dropSessions(a.ID()); err != nil { // forgets a's sessions
		t.Fatal(err)
	}
	id := send(t, a, b, "three")
	var failed *db.Message
	waitFor(t, 10*time.Second, "the message refused", func() (bool, string) {
		failed = find(history(t, a, b.ID()), id)
		return failed != nil && failed.State == db.Failed, "not yet"
	})
	if failed.Error != wire.ReasonNoSession.String() {
		t.Errorf("failure reason %q", failed.Error)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id2, err := a.Resend(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the resent message delivered", func() (bool, string) {
		m := find(history(t, a, b.ID()), id2)
		return m != nil && m.State == db.Delivered, "not yet"
	})
	checkConversation(t, history(t, b, a.ID()), db.Incoming, []string{"one", "three"})
	send(t, b, a, "four")
	waitFor(t, 10*time.Second, "the reply", func() (bool, string) {
		return count(history(t, a, b.ID()), db.Incoming, "") == 2, "not yet"
	})
}

// Send's rare path: the session it saw when it looked is gone when its
// message is encrypted (here: dropped in between, as a "no session" ack
// does). Send fetches the bundle, submits once more, and the message
// arrives under a new session.
func TestSendAfterTheSessionVanished(t *testing.T) {
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	a := startNode(t, t.TempDir(), boot.AddrInfo())
	b := startNode(t, t.TempDir(), boot.AddrInfo())
	accepts(t, b, a)
	send(t, a, b, "one")
	waitDelivered(t, a, b.ID(), 1)
	c, err := a.conv(b.ID())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.dropSessions(b.ID()); err != nil {
		t.Fatal(err)
	}
	if c.sessions.Load() != sessionsNone {
		t.Fatalf("after the reset the conversation knows sessions %d, want none", c.sessions.Load())
	}
	c.sessions.Store(sessionsSome) // what Send saw before the reset
	send(t, a, b, "two")
	waitDelivered(t, a, b.ID(), 2)
	checkConversation(t, history(t, b, a.ID()), db.Incoming, []string{"one", "two"})
	if c.sessions.Load() != sessionsSome {
		t.Fatalf("after the new session the conversation knows sessions %d, want some", c.sessions.Load())
	}
}

// Peer IDs cost nothing: many strangers fetching bundles get one-time
// prekeys only within the global budget, and the node tops them up.
func TestOneTimePrekeysCannotBeDrained(t *testing.T) {
	checkNoLeaks(t)
	b := startNode(t, t.TempDir())
	const strangers = 60
	withOPK := 0
	for range strangers {
		h := rawHost(t, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := h.Connect(ctx, b.AddrInfo()); err != nil {
			t.Fatal(err)
		}
		cancel()
		if fetchRawBundle(t, h, b).HasOneTimePrekey {
			withOPK++
		}
		h.Close()
	}
	t.Logf("%d of %d strangers got one-time prekeys", withOPK, strangers)
	if withOPK == 0 || withOPK > issueBurst+5 {
		t.Fatalf("%d of %d strangers got one-time prekeys; want 1..%d", withOPK, strangers, issueBurst+5)
	}
	var left int
	b.store.View(func(r *db.ReadTx) (err error) {
		left, err = r.UnissuedPrekeys(db.OneTimePrekey)
		return err
	})
	if left < oneTimeLow {
		t.Fatalf("%d unissued one-time prekeys left, want at least %d", left, oneTimeLow)
	}
}

// Blocking a peer fails what was queued for it, and sends nothing more.
func TestBlockStopsQueuedDelivery(t *testing.T) {
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	a := startNode(t, t.TempDir(), boot.AddrInfo())
	bDir := t.TempDir()
	b := startNode(t, bDir, boot.AddrInfo())
	bID := b.ID()
	send(t, a, b, "hello")
	waitDelivered(t, a, bID, 1)
	b.Close()
	id := send(t, a, b, "queued while b is away")
	if err := a.Block(bID, true); err != nil {
		t.Fatal(err)
	}
	a.kick(bID)
	waitFor(t, 10*time.Second, "the queued message failed", func() (bool, string) {
		m := find(history(t, a, bID), id)
		return m != nil && m.State == db.Failed, "not yet"
	})
	if n := outbox(t, a); n != 0 {
		t.Fatalf("%d envelopes still queued for a blocked peer", n)
	}
}

// A node configured as a relay serves circuit relay v2's hop protocol
// and the DHT; others do not serve the hop protocol.
func TestRelayService(t *testing.T) {
	checkNoLeaks(t)
	cfg := testConfig(t.TempDir())
	cfg.RelayService = true
	cfg.DHTMode = DHTClient // overridden: a relay is a DHT server
	relay := startConfig(t, cfg)
	plain := startNode(t, t.TempDir())
	const hop = "/libp2p/circuit/relay/0.2.0/hop"
	if !slices.Contains(relay.Host().Mux().Protocols(), hop) {
		t.Fatalf("relay node does not serve %s: %v", hop, relay.Host().Mux().Protocols())
	}
	if slices.Contains(plain.Host().Mux().Protocols(), hop) {
		t.Fatal("a plain node serves the relay hop protocol")
	}
	if !slices.Contains(relay.Host().Mux().Protocols(), "/p2pmsg/kad/1.0.0") {
		t.Fatal("relay node is not a DHT server")
	}
}

// Through a relay: B is behind "NAT" (forced private) with a reservation
// on R; A knows only B's relayed address. The envelope crosses the
// limited connection, the path is reported as relayed, and B stores the
// message once.
func TestRelayedDelivery(t *testing.T) {
	checkNoLeaks(t)
	rcfg := testConfig(t.TempDir())
	rcfg.RelayService = true
	relay := startConfig(t, rcfg)
	bcfg := testConfig(t.TempDir(), relay.AddrInfo())
	bcfg.Relays = []peer.AddrInfo{relay.AddrInfo()}
	bcfg.Reachability = ReachabilityPrivate
	b := startConfig(t, bcfg)
	// a may reach b only through the relay (on loopback it could dial b
	// directly, and would, once identify told it b's addresses).
	acfg := testConfig(t.TempDir())
	acfg.hostOptions = []libp2p.Option{libp2p.ConnectionGater(onlyRelayedTo{b.ID()})}
	a := startConfig(t, acfg)
	// go-libp2p advertises relay addresses only through public relays, so
	// on loopback b's circuit address is written by hand: the relay's
	// address, /p2p-circuit, b.
	circuit, err := ma.NewMultiaddr(relay.Addrs()[0].String() + "/p2p-circuit/p2p/" + b.ID().String())
	if err != nil {
		t.Fatal(err)
	}
	ai, err := peer.AddrInfoFromP2pAddr(circuit)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Until b holds its reservation, the relay refuses to connect us.
	waitFor(t, 20*time.Second, "a connection through the relay", func() (bool, string) {
		err := a.Connect(ctx, *ai)
		return err == nil, fmt.Sprint(err)
	})
	if p := a.Path(b.ID()); p != PathRelayed {
		t.Fatalf("path to b: %s, want relayed", p)
	}
	send(t, a, b, "through the relay")
	waitDelivered(t, a, b.ID(), 1)
	checkConversation(t, history(t, b, a.ID()), db.Incoming, []string{"through the relay"})
	if p := a.Path(b.ID()); p != PathRelayed {
		t.Fatalf("after the message, path to b: %s, want relayed", p)
	}
	st, err := b.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Reachability != "private" {
		t.Fatalf("b's status: reachability %s, want private", st.Reachability)
	}
}

// onlyRelayedTo refuses direct dials to one peer.
type onlyRelayedTo struct{ p peer.ID }

func (g onlyRelayedTo) InterceptPeerDial(peer.ID) bool { return true }
func (g onlyRelayedTo) InterceptAddrDial(p peer.ID, a ma.Multiaddr) bool {
	return p != g.p || isCircuit(a)
}
func (g onlyRelayedTo) InterceptAccept(network.ConnMultiaddrs) bool { return true }
func (g onlyRelayedTo) InterceptSecured(d network.Direction, p peer.ID, c network.ConnMultiaddrs) bool {
	return p != g.p || isCircuit(c.RemoteMultiaddr())
}
func (g onlyRelayedTo) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}
