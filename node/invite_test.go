package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

// An invitation names the node, its addresses (loopback only when there
// is nothing else) and its display name; adding one makes a contact
// with that name, connected, so that a first message goes at once.
func TestInvitationRoundTrip(t *testing.T) {
	checkNoLeaks(t)
	a, b := startNode(t, t.TempDir()), startNode(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.SetProfile(ctx, "Alice & co"); err != nil {
		t.Fatal(err)
	}
	inv := must(a.Invitation())
	s := inv.String()
	if !strings.HasPrefix(s, "p2pmsg:"+a.ID().String()+"?addr=%2Fip4%2F127.0.0.1%2Ftcp%2F") || !strings.HasSuffix(s, "&name=Alice+%26+co") {
		t.Fatalf("invitation: %s", s)
	}
	got, err := ParseInvitation(s)
	if err != nil || got.Peer != a.ID() || got.Name != "Alice & co" || len(got.Addrs) != len(inv.Addrs) {
		t.Fatalf("parsed: %+v, %v", got, err)
	}
	if err := b.AddInvitation(ctx, got, ""); err != nil {
		t.Fatal(err)
	}
	c := must(b.Contact(a.ID()))
	if c.State != ContactAccepted || c.DisplayName() != "Alice & co" || c.Path == PathOffline {
		t.Fatalf("B's contact from the invitation: %+v", c)
	}
	id := must(b.Send(ctx, a.ID(), "found you"))
	waitMessage(t, a, id, func(Message) bool { return true })
}

func TestShareableAddresses(t *testing.T) {
	m := func(s string) ma.Multiaddr { return must(ma.NewMultiaddr(s)) }
	got := shareable([]ma.Multiaddr{m("/ip4/127.0.0.1/tcp/1"), m("/ip4/192.168.1.5/tcp/2"), m("/ip6/fe80::1/tcp/3"),
		m("/ip4/8.8.4.4/tcp/4"), m("/ip4/9.9.9.9/tcp/5/p2p/12D3KooWGRUVh7dWcy5Xav7MiY5RGrEhQaYVWEqQB3n4QDTHQxpe/p2p-circuit")})
	want := []string{"/ip4/8.8.4.4/tcp/4", "/ip4/9.9.9.9/tcp/5/p2p/12D3KooWGRUVh7dWcy5Xav7MiY5RGrEhQaYVWEqQB3n4QDTHQxpe/p2p-circuit", "/ip4/192.168.1.5/tcp/2"}
	if len(got) != len(want) {
		t.Fatalf("%v", got)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("%d: %s, want %s", i, got[i], want[i])
		}
	}
	if got := shareable([]ma.Multiaddr{m("/ip4/127.0.0.1/tcp/1")}); len(got) != 1 {
		t.Fatalf("loopback alone: %v", got)
	}
}

func TestBadInvitations(t *testing.T) {
	const id = "12D3KooWGRUVh7dWcy5Xav7MiY5RGrEhQaYVWEqQB3n4QDTHQxpe"
	for _, s := range []string{
		"", "p2pmsg:", "http://example.com", "p2pmsg:notapeer", "p2pmsg:" + id + "?addr=/nope",
		"p2pmsg:" + id + "?addr=/ip4/1.2.3.4/tcp/1/p2p/" + id, "p2pmsg:" + id + "?color=red",
		"p2pmsg:" + id + "?name=" + strings.Repeat("n", MaxProfileName+1), "p2pmsg:" + id + "?name=a%07b",
		"p2pmsg:" + id + strings.Repeat("?addr=/ip4/1.2.3.4/tcp/1", 9),
		"p2pmsg:" + id + "?" + strings.Repeat("addr=/ip4/1.2.3.4/tcp/1&", 9),
		"p2pmsg:" + strings.Repeat("x", maxInvite),
	} {
		if _, err := ParseInvitation(s); !errors.Is(err, ErrBadInvitation) {
			t.Errorf("%q: %v", s, err)
		}
	}
}

// FuzzParseInvitation: any string parses or is refused, without
// panicking; what parses prints as an invitation that parses the same.
func FuzzParseInvitation(f *testing.F) {
	f.Add("p2pmsg:12D3KooWGRUVh7dWcy5Xav7MiY5RGrEhQaYVWEqQB3n4QDTHQxpe?addr=%2Fip4%2F127.0.0.1%2Ftcp%2F4001&name=Al")
	f.Add("p2pmsg:12D3KooWGRUVh7dWcy5Xav7MiY5RGrEhQaYVWEqQB3n4QDTHQxpe")
	f.Fuzz(func(t *testing.T, s string) {
		inv, err := ParseInvitation(s)
		if err != nil {
			return
		}
		again, err := ParseInvitation(inv.String())
		if err != nil || again.String() != inv.String() {
			t.Fatalf("%q reads as %q, which reads as %q (%v)", s, inv.String(), again.String(), err)
		}
	})
}
