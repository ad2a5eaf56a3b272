package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/mailbox"
)

// A node started as a mailbox admits owners by peer ID or by invitation,
// lists and revokes them, serves the mailbox protocols on its host and
// keeps them in a file of its own; a node that is not one says so.
func TestMailboxRole(t *testing.T) {
	checkNoLeaks(t)
	cfg := testConfig(t.TempDir())
	cfg.DHTMode = DHTClient // the mailbox serves the DHT whatever this says
	cfg.Mailbox = true
	cfg.MailboxLimits = MailboxLimits{Quota: 100}
	m := startConfig(t, cfg)
	owner := startNode(t, t.TempDir())
	plain := startNode(t, t.TempDir())

	if _, err := os.Stat(filepath.Join(cfg.DataDir, db.MailboxFileName)); err != nil {
		t.Fatalf("the mailbox store: %v", err)
	}
	if err := plain.MailboxAllow(owner.ID(), 0, 0, 0); !errors.Is(err, ErrNotMailbox) {
		t.Fatalf("a plain node admitting: %v", err)
	}
	if err := m.MailboxAllow(owner.ID(), 1000, 0, time.Hour); err != nil {
		t.Fatal(err)
	}
	owners, err := m.MailboxOwners()
	if err != nil || len(owners) != 1 || owners[0].Peer != owner.ID() || owners[0].Quota != 100 || owners[0].TTLMax != time.Hour {
		t.Fatalf("owners %+v, %v", owners, err)
	}

	// The owner talks to the mailbox over the node's host.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := owner.Host().Connect(ctx, m.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	st, err := mailbox.Call(ctx, owner.Host(), m.ID(), mailbox.Status{})
	if err != nil || st.(mailbox.StatusReply).Quota != 100 {
		t.Fatalf("status: %v, %v", st, err)
	}

	// An invitation: its code names the mailbox and redeems once.
	code, err := m.MailboxInvite(0, 0, 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	secret, ai, err := ParseInvite(code)
	if err != nil || ai.ID != m.ID() || len(ai.Addrs) == 0 {
		t.Fatalf("invitation %q: %v, %v", code, ai, err)
	}
	if err := plain.Host().Connect(ctx, ai); err != nil {
		t.Fatal(err)
	}
	if _, err := mailbox.Call(ctx, plain.Host(), m.ID(), mailbox.Redeem{Secret: secret}); err != nil {
		t.Fatalf("redeem: %v", err)
	}
	if owners, _ := m.MailboxOwners(); len(owners) != 2 {
		t.Fatalf("%d owners after the invitation", len(owners))
	}
	for _, bad := range []string{"", "p2pmsg-mbox:", "p2pmsg-mbox:AAAA@" + ai.Addrs[0].String(), code[:len(code)-60]} {
		if _, _, err := ParseInvite(bad); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
	if ok, err := m.MailboxRevoke(owner.ID()); !ok || err != nil {
		t.Fatalf("revoke: %v, %v", ok, err)
	}
	if _, err := mailbox.Call(ctx, owner.Host(), m.ID(), mailbox.Status{}); err == nil {
		t.Fatal("a revoked owner still has a status")
	}
	if st, err := m.Status(); err != nil || st.DHT.Mode != DHTServer {
		t.Fatalf("a mailbox does not serve the DHT: %+v, %v", st.DHT, err)
	}
}
