package api

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/p2pmsg/p2pmsg/internal/jsonrpc"
	"github.com/p2pmsg/p2pmsg/node"
)

// Params are decoded strictly, with errors that name what is wrong in
// the caller's terms (JSON kinds and field names, not Go types).
func TestParamsAreStrict(t *testing.T) {
	cases := []struct {
		raw  string
		into any
		want string // "" means accepted
	}{
		{`{"peer":"bob","text":"hi"}`, new(SendParams), ""},
		{``, new(SendParams), ""},
		{`null`, new(SendParams), ""},
		{`{"peer":"bob","txt":"hi"}`, new(SendParams), `send: unknown field "txt" (it takes peer, text, wait, timeout, reply_to)`},
		{`{"peer":"bob","limit":"ten"}`, new(HistoryParams), `"limit" must be a number, not string`},
		{`{"peer":5}`, new(PeerParams), `"peer" must be a string, not number`},
		{`["bob","hi"]`, new(SendParams), "params must be an object"},
		{`{}`, new(None), ""},
		{`[]`, new(None), ""},
		{`{"x":1}`, new(None), `unknown field "x" (it takes no params)`},
		{`{"peer":"bob"} {"peer":"eve"}`, new(PeerParams), "params:"},
		{`{"PEER":"bob","text":"hi"}`, new(SendParams), `unknown field "PEER"`},
		{`{"peer":"bob","Text":"hi"}`, new(SendParams), `unknown field "Text"`},
	}
	for _, tc := range cases {
		err := decodeStrict("send", []byte(tc.raw), tc.into)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.raw, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.raw, err, tc.want)
		case err != nil && CodeOf(err) != CodeInvalid:
			t.Errorf("%s: code %d, want CodeInvalid", tc.raw, CodeOf(err))
		}
	}
}

// Without a daemon the Server reads the store and refuses the rest with
// CodeNoDaemon; errors keep their codes across the wire; lists are [].
func TestOfflineServer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := filepath.Join(t.TempDir(), "data") // made 0700 by the store
	n, err := node.New(node.Config{DataDir: dir, NoMDNS: true, NoPortMap: true})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	c := Offline(n)
	defer c.Close()
	ctx := context.Background()

	id, err := c.ID(ctx)
	if err != nil || id.PeerID != n.ID().String() || id.Addrs == nil || len(id.Addrs) != 0 {
		t.Fatalf("id: %+v %v", id, err)
	}
	cs, err := c.Contacts(ctx)
	if err != nil || cs == nil || len(cs) != 0 {
		t.Fatalf("contacts: %#v %v", cs, err)
	}
	for name, call := range map[string]func() error{
		"send":         func() error { _, err := c.Send(ctx, SendParams{Peer: id.PeerID, Text: "hi"}); return err },
		"contacts.add": func() error { _, err := c.AddContact(ctx, ContactParams{Peer: id.PeerID}); return err },
		"status":       func() error { _, err := c.Status(ctx); return err },
		"trust":        func() error { _, err := c.Trust(ctx, id.PeerID); return err },
	} {
		err := call()
		var re *jsonrpc.Error
		if CodeOf(err) != CodeNoDaemon || !errors.As(err, &re) || !strings.Contains(err.Error(), "no daemon runs") {
			t.Errorf("%s offline: %v (code %d), want CodeNoDaemon", name, err, CodeOf(err))
		}
	}
	if _, err := c.Message(ctx, "00000000000000000000000000000000"); CodeOf(err) != CodeNotFound {
		t.Errorf("an unknown message: %v (code %d)", err, CodeOf(err))
	}
	if _, err := c.History(ctx, HistoryParams{Peer: "nobody"}); CodeOf(err) != CodeNotFound {
		t.Errorf("an unknown name: %v (code %d)", err, CodeOf(err))
	}
	if _, err := c.History(ctx, HistoryParams{Peer: " "}); CodeOf(err) != CodeInvalid {
		t.Errorf("a blank peer: %v (code %d)", err, CodeOf(err))
	}
	if _, err := c.Events(ctx, EventsParams{Kinds: []string{"gossip"}}); CodeOf(err) != CodeInvalid || !strings.Contains(err.Error(), "unknown event kind") {
		t.Errorf("an unknown event kind: %v", err)
	}
}
