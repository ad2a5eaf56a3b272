package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/skip2/go-qrcode"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/node"
)

// output prints v as JSON with --json, else with the function for people.
func (e *env) output(v any, people func()) error {
	if e.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	people()
	return nil
}

// offline opens the store when no daemon runs: the verbs that only read
// work without one.
func (e *env) offline() (*node.Node, error) {
	return e.openStore(false)
}

// openStore opens the node's store; only init and daemon may create one
// (a typo in --data must not make a new identity).
func (e *env) openStore(create bool) (*node.Node, error) {
	if _, err := os.Stat(filepath.Join(e.data, db.FileName)); err != nil && !create {
		return nil, fail(exitNotFound, "no identity in %s: run `p2pmsg --data %s init`, or check --data / P2PMSG_DATA", e.data, e.data)
	}
	fc, err := e.loadConfig()
	if err != nil {
		return nil, err
	}
	cfg, err := e.nodeConfig(fc)
	if err != nil {
		return nil, err
	}
	return openNode(e, cfg)
}

// ask calls a method of the running daemon, or, when none runs, does the
// same on the store: the verbs that only read work without a daemon.
func (e *env) ask(method string, params, out any, offline func(*node.Node) error) error {
	if c, err := dial(e.data); err == nil {
		defer c.close()
		return c.call(method, params, out)
	}
	n, err := e.offline()
	if err != nil {
		return err
	}
	defer n.Close()
	return offline(n)
}

func cmdInit(e *env, args []string) error {
	fs := e.flags("init")
	if _, err := e.parse(fs, args, 0, "p2pmsg init"); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(e.data, db.FileName)); err == nil {
		return fail(exitExists, "%s holds an identity already; init never overwrites one (to start afresh, move that directory away)", e.data)
	}
	n, err := e.openStore(true)
	if err != nil {
		return err
	}
	defer n.Close()
	r := idOf(n)
	return e.output(r, func() {
		fmt.Fprintf(e.stdout, "created %s\npeer ID: %s\nfingerprint: %s\n", e.data, r.PeerID, r.Fingerprint)
		if !n.Store().SecretsSealed() {
			fmt.Fprintln(e.stdout, "warning: no passphrase: the keys are stored unsealed (set P2PMSG_PASSPHRASE before init to seal them)")
		}
	})
}

func cmdID(e *env, args []string) error {
	fs := e.flags("id")
	if _, err := e.parse(fs, args, 0, "p2pmsg id [--json]"); err != nil {
		return err
	}
	var r idResult
	if err := e.ask("id", nil, &r, func(n *node.Node) error { r = idOf(n); return nil }); err != nil {
		return err
	}
	return e.output(r, func() {
		fmt.Fprintf(e.stdout, "peer ID: %s\nfingerprint: %s\n", r.PeerID, r.Fingerprint)
		if len(r.Addrs) == 0 {
			fmt.Fprintln(e.stdout, "addresses: none (no daemon running)")
		}
		for _, a := range r.Addrs {
			fmt.Fprintf(e.stdout, "address: %s\n", a)
		}
	})
}

func cmdSend(e *env, args []string) error {
	fs := e.flags("send")
	wait := fs.Bool("wait", false, "return when delivered")
	timeout := fs.Duration("timeout", 30*time.Second, "how long --wait waits")
	pos, err := e.parse(fs, args, 2, "p2pmsg send PEER TEXT [--wait] [--timeout 30s]")
	if err != nil {
		return err
	}
	var r sendResult
	err = call(e.data, "send", sendParams{Peer: pos[0], Text: pos[1], Wait: *wait, Timeout: timeout.String()}, &r)
	if err != nil && r.ID != "" && e.json {
		e.output(r, nil) // a timeout or failure still names the message
	}
	if err != nil {
		return err
	}
	return e.output(r, func() { fmt.Fprintf(e.stdout, "%s %s\n", r.ID, r.State) })
}

func cmdHistory(e *env, args []string) error {
	fs := e.flags("history")
	limit := fs.Int("limit", 50, "at most this many, the latest")
	pos, err := e.parse(fs, args, 1, "p2pmsg history PEER [--limit N] [--json]")
	if err != nil {
		return err
	}
	var h []historyEntry
	err = e.ask("history", historyParams{Peer: pos[0], Limit: *limit}, &h, func(n *node.Node) error {
		p, err := resolvePeer(n, pos[0])
		if err == nil {
			h, err = historyOf(n, p, *limit)
		}
		return err
	})
	if err != nil {
		return err
	}
	return e.output(h, func() {
		for _, m := range h {
			who := "me"
			if m.Direction == string(db.Incoming) {
				who = "them"
				if m.Request {
					who = "them (contact request)"
				}
			}
			state := m.State
			if m.Error != "" {
				state += ": " + m.Error
			}
			fmt.Fprintf(e.stdout, "%s  %-4s  %s  [%s]\n", m.Time.Local().Format("2006-01-02 15:04:05"), who, printable(m.Body, false), state)
		}
	})
}

func cmdReceive(e *env, args []string) error {
	fs := e.flags("receive")
	follow := fs.Bool("follow", false, "keep following new events")
	since := fs.Int64("since", 0, "start after this event id")
	if _, err := e.parse(fs, args, 0, "p2pmsg receive [--follow] [--since ID] [--json]"); err != nil {
		return err
	}
	print := func(ev node.Event) {
		if e.json {
			b, _ := json.Marshal(ev)
			fmt.Fprintln(e.stdout, string(b))
			return
		}
		line := fmt.Sprintf("#%d %s %s %s", ev.ID, ev.Time.Local().Format("15:04:05"), ev.Kind, ev.Peer)
		for _, f := range []string{ev.Direction, ev.MessageID, ev.State, ev.Reason} {
			if f != "" {
				line += " " + f
			}
		}
		fmt.Fprintln(e.stdout, line)
	}
	c, err := dial(e.data)
	if err != nil {
		if *follow {
			return err
		}
		return receiveOffline(e, *since, print)
	}
	defer c.close()
	if !*follow {
		// Page until the end: the daemon answers at most a page a call.
		for after := *since; ; {
			var evs []node.Event
			if err := c.call("events", subscribeParams{Since: after}, &evs); err != nil {
				return err
			}
			if len(evs) == 0 {
				return nil
			}
			for _, ev := range evs {
				print(ev)
			}
			after = evs[len(evs)-1].ID
		}
	}
	// Following ends with an interrupt, as a normal end (exit 0).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); c.close() }()
	raw, _ := json.Marshal(subscribeParams{Since: *since})
	if err := c.enc.Encode(rpcRequest{JSONRPC: "2.0", ID: json.RawMessage("1"), Method: "subscribe", Params: raw}); err != nil {
		return err
	}
	for {
		resp, err := c.read()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if resp.Error != nil {
			return errors.New(resp.Error.Message)
		}
		var ev node.Event
		if resp.Method == "event" && json.Unmarshal(resp.Params, &ev) == nil {
			print(ev)
		}
	}
}

func receiveOffline(e *env, since int64, print func(node.Event)) error {
	n, err := e.offline()
	if err != nil {
		return err
	}
	defer n.Close()
	for {
		evs, err := n.Events(since, 10000)
		if err != nil || len(evs) == 0 {
			return err
		}
		for _, ev := range evs {
			print(ev)
		}
		since = evs[len(evs)-1].ID
	}
}

func cmdContacts(e *env, args []string) error {
	fs := e.flags("contacts")
	name := fs.String("name", "", "the contact's name")
	const usage = "p2pmsg contacts list | add PEER [--name NAME] | accept PEER | block PEER | unblock PEER"
	pos, err := e.parse(fs, args, -1, usage)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fail(exitUsage, "usage: %s", usage)
	}
	verb := pos[0]
	if verb == "list" {
		if len(pos) != 1 {
			return fail(exitUsage, "usage: %s", usage)
		}
		var cs []contactEntry
		err := e.ask("contacts.list", nil, &cs, func(n *node.Node) (err error) {
			cs, err = contactsOf(n)
			return err
		})
		if err != nil {
			return err
		}
		return e.output(cs, func() {
			for _, c := range cs {
				flags := []string{c.State}
				if c.Verified {
					flags = append(flags, "verified")
				}
				if c.Blocked {
					flags = append(flags, "blocked")
				}
				fmt.Fprintf(e.stdout, "%s  %-12s  %-12s  %s\n", c.PeerID, printable(c.Name, true), c.Path, strings.Join(flags, ", "))
			}
		})
	}
	if len(pos) != 2 {
		return fail(exitUsage, "usage: %s", usage)
	}
	method := map[string]string{"add": "contacts.add", "accept": "contacts.accept", "block": "contacts.block", "unblock": "contacts.unblock"}[verb]
	if method == "" {
		return fail(exitUsage, "unknown contacts verb %q; usage: %s", verb, usage)
	}
	return peerCall(e, method, peerParams{Peer: pos[1], Name: *name})
}

// peerCall runs a method on one peer through the daemon.
func peerCall(e *env, method string, p peerParams) error {
	var r map[string]string
	if err := call(e.data, method, p, &r); err != nil {
		return err
	}
	return e.output(r, func() { fmt.Fprintf(e.stdout, "%s: %s\n", method, r["peer_id"]) })
}

func cmdTrust(e *env, args []string) error {
	fs := e.flags("trust")
	verified := fs.Bool("verified", false, "record that you compared safety numbers (sessions kept)")
	pos, err := e.parse(fs, args, 1, "p2pmsg trust PEER [--verified]")
	if err != nil {
		return err
	}
	if *verified {
		return peerCall(e, "contacts.verified", peerParams{Peer: pos[0]})
	}
	return peerCall(e, "trust", peerParams{Peer: pos[0]})
}

func cmdResend(e *env, args []string) error {
	fs := e.flags("resend")
	pos, err := e.parse(fs, args, 2, "p2pmsg resend PEER MESSAGE_ID")
	if err != nil {
		return err
	}
	var r sendResult
	if err := call(e.data, "resend", resendParams{Peer: pos[0], ID: pos[1]}, &r); err != nil {
		return err
	}
	return e.output(r, func() { fmt.Fprintf(e.stdout, "%s %s\n", r.ID, r.State) })
}

func cmdVerify(e *env, args []string) error {
	fs := e.flags("verify")
	pos, err := e.parse(fs, args, 1, "p2pmsg verify PEER")
	if err != nil {
		return err
	}
	var r map[string]string
	if err := call(e.data, "verify", peerParams{Peer: pos[0]}, &r); err != nil {
		return err
	}
	return e.output(r, func() {
		// The QR code holds the digits, for a phone to read off the
		// other screen.
		if q, err := qrcode.New("p2pmsg-safety-number:"+strings.ReplaceAll(r["safety_number"], " ", ""), qrcode.Medium); err == nil {
			fmt.Fprint(e.stdout, q.ToSmallString(false))
		}
		fmt.Fprintf(e.stdout, "Safety number with %s:\n\n%s\n\nCompare it with the one their p2pmsg shows (p2pmsg verify YOUR_ID), in person or on a call;\nif they match, no one sits between you.\n",
			r["peer_id"], r["safety_number"])
	})
}

func cmdStatus(e *env, args []string) error {
	fs := e.flags("status")
	if _, err := e.parse(fs, args, 0, "p2pmsg status [--json]"); err != nil {
		return err
	}
	var st node.Status
	if err := call(e.data, "status", nil, &st); err != nil {
		return err
	}
	return e.output(st, func() {
		fmt.Fprintf(e.stdout, "peer ID:        %s\nreachability:   %s\nconnected peers: %d\nDHT routing table: %d peers\n",
			st.PeerID, st.Reachability, st.ConnectedPeers, st.RoutingTable)
		if st.Published.IsZero() {
			fmt.Fprintln(e.stdout, "bundle:         not published yet")
		} else {
			fmt.Fprintf(e.stdout, "bundle:         published %s ago to %d peers; next %s\n",
				time.Since(st.Published).Round(time.Second), st.Replicas, st.NextRepublish.Local().Format("15:04"))
		}
		for _, a := range st.Addrs {
			fmt.Fprintf(e.stdout, "address:        %s\n", a)
		}
		if len(st.RelayAddrs) == 0 {
			fmt.Fprintln(e.stdout, "relay reservations: none")
		}
		for _, a := range st.RelayAddrs {
			fmt.Fprintf(e.stdout, "relay reservation: %s\n", a)
		}
		for _, c := range st.Contacts {
			name := c.Name
			if name == "" {
				name = c.PeerID
			}
			fmt.Fprintf(e.stdout, "contact %s: %s\n", name, c.Path)
		}
		if st.SecretsUnsealed {
			fmt.Fprintln(e.stdout, "warning: the keys are stored unsealed (no passphrase)")
		}
	})
}
