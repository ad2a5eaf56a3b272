package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/p2pmsg/p2pmsg/internal/api"
	"github.com/p2pmsg/p2pmsg/node"
)

// The verbs. Each makes its requests through the API client (connect):
// to the daemon, or, for those that only read, to the store in this
// process when no daemon runs.

func cmdInit(e *env, args []string) error {
	fs := e.flags("init")
	if _, err := e.parse(fs, args, 0, "p2pmsg init"); err != nil {
		return err
	}
	if node.Exists(e.data) {
		return fail(exitExists, "%s holds an identity already; init never overwrites one (to start afresh, move that directory away)", e.data)
	}
	n, err := e.openStore(true)
	if err != nil {
		return err
	}
	defer n.Close()
	c := api.Offline(n)
	defer c.Close()
	r, err := c.ID(context.Background())
	if err != nil {
		return err
	}
	return e.output(r, func() {
		fmt.Fprintf(e.stdout, "Created %s.\npeer ID: %s\nfingerprint: %s\n", e.data, r.PeerID, r.Fingerprint)
		if !n.SecretsSealed() {
			fmt.Fprintln(e.stdout, "warning: no passphrase: the keys are stored unsealed (set P2PMSG_PASSPHRASE before init to seal them)")
		}
	})
}

func cmdID(e *env, args []string) error {
	fs := e.flags("id")
	if _, err := e.parse(fs, args, 0, "p2pmsg id [--json]"); err != nil {
		return err
	}
	return e.do(true, func(ctx context.Context, c *api.Client) error {
		r, err := c.ID(ctx)
		if err != nil {
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
			if len(r.Addrs) > 0 {
				fmt.Fprintln(e.stdout, "To be added by a friend, give them the line that `p2pmsg invite` prints.")
			}
		})
	})
}

func cmdResend(e *env, args []string) error {
	fs := e.flags("resend")
	pos, err := e.parse(fs, args, -1, "p2pmsg resend MESSAGE_ID")
	if err != nil {
		return err
	}
	if len(pos) == 2 { // the peer, as earlier versions wanted it: the id names it
		pos = pos[1:]
	}
	if len(pos) != 1 {
		return fail(exitUsage, "usage: p2pmsg resend MESSAGE_ID")
	}
	return e.do(false, func(ctx context.Context, c *api.Client) error {
		r, err := c.Resend(ctx, pos[0])
		if err != nil {
			return err
		}
		return e.output(r, func() { fmt.Fprintf(e.stdout, "Sent again as message %s: %s.\n", r.ID, r.State) })
	})
}

func cmdHistory(e *env, args []string) error {
	fs := e.flags("history")
	limit := fs.Int("limit", 50, "at most this many messages")
	before := fs.String("before", "", "the messages before this message id")
	after := fs.String("after", "", "the messages after this message id")
	oldest := fs.Bool("oldest", false, "the first messages instead of the latest")
	pos, err := e.parse(fs, args, 1, "p2pmsg history PEER [--limit N] [--before ID | --after ID | --oldest] [--json]")
	if err != nil {
		return err
	}
	return e.do(true, func(ctx context.Context, c *api.Client) error {
		h, err := c.History(ctx, api.HistoryParams{Peer: pos[0], Limit: *limit, Before: *before, After: *after, Oldest: *oldest})
		if err != nil {
			return err
		}
		return e.output(h, func() {
			for _, m := range h {
				printMessage(e, m)
			}
		})
	})
}

func cmdMessage(e *env, args []string) error {
	fs := e.flags("message")
	pos, err := e.parse(fs, args, 1, "p2pmsg message MESSAGE_ID [--json]")
	if err != nil {
		return err
	}
	return e.do(true, func(ctx context.Context, c *api.Client) error {
		m, err := c.Message(ctx, pos[0])
		if err != nil {
			return err
		}
		return e.output(m, func() {
			fmt.Fprintf(e.stdout, "with: %s\n", name(m.Peer, m.Name))
			printMessage(e, m)
		})
	})
}

// kindsFlag collects --kind.
type kindsFlag []string

func (k *kindsFlag) String() string     { return strings.Join(*k, ",") }
func (k *kindsFlag) Set(v string) error { *k = append(*k, v); return nil }

func cmdReceive(e *env, args []string) error {
	fs := e.flags("receive")
	follow := fs.Bool("follow", false, "keep following new events")
	since := fs.Int64("since", 0, "start after this event id")
	var kinds kindsFlag
	fs.Var(&kinds, "kind", "only events of this kind (repeatable): message, state, contact-request, key-change, connectivity, request-dropped, mailbox")
	if _, err := e.parse(fs, args, 0, "p2pmsg receive [--follow] [--since ID] [--kind KIND]... [--json]"); err != nil {
		return err
	}
	print := func(ev api.Event) { printEvent(e, ev) }
	if !*follow {
		return e.do(true, func(ctx context.Context, c *api.Client) error {
			for after := *since; ; {
				page, err := c.Events(ctx, api.EventsParams{Since: after, Kinds: kinds})
				if err != nil {
					return err
				}
				for _, ev := range page.Events {
					print(ev)
				}
				if page.Last == after {
					return nil
				}
				after = page.Last
			}
		})
	}
	// Following ends with an interrupt, as a normal end (exit 0).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, close, err := e.connect(false)
	if err != nil {
		return err
	}
	defer close()
	w, err := c.Watch(ctx, api.SubscribeParams{Since: *since, Kinds: kinds})
	if err != nil {
		return err
	}
	for {
		ev, err := w.Next()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		print(ev)
	}
}

func printEvent(e *env, ev api.Event) {
	if e.json {
		b, _ := json.Marshal(ev)
		fmt.Fprintln(e.stdout, string(b))
		return
	}
	line := fmt.Sprintf("#%d %s %s %s", ev.ID, ev.Time.Local().Format("15:04:05"), ev.Kind, name(ev.Peer, ev.Name))
	for _, f := range []string{ev.Direction, ev.MessageID, ev.State, ev.Path, ev.Reason} {
		if f != "" {
			line += " " + printable(f, true)
		}
	}
	if ev.Text != "" {
		line += ": " + multiline(ev.Text)
	}
	fmt.Fprintln(e.stdout, fitWidth(line, e.width()))
}

func cmdVerify(e *env, args []string) error {
	fs := e.flags("verify")
	pos, err := e.parse(fs, args, 1, "p2pmsg verify PEER")
	if err != nil {
		return err
	}
	return e.do(true, func(ctx context.Context, c *api.Client) error {
		r, err := c.Verify(ctx, pos[0])
		if err != nil {
			return err
		}
		return e.output(r, func() {
			// The QR code holds the digits, for the other side to scan
			// off this screen; into a pipe it would be noise.
			if e.width() > 0 {
				printQR(e, "p2pmsg-safety-number:"+strings.ReplaceAll(r.SafetyNumber, " ", ""))
			}
			fmt.Fprintf(e.stdout, "Safety number with %s:\n\n%s\n\nCompare it with the one their p2pmsg shows (p2pmsg verify YOUR_ID), in person or on a call;\nif they match, no one sits between you: then run p2pmsg trust %s --verified 'THE NUMBER'.\n",
				name(r.PeerID, r.Name), r.SafetyNumber, pos[0])
		})
	})
}

func cmdStatus(e *env, args []string) error {
	fs := e.flags("status")
	if _, err := e.parse(fs, args, 0, "p2pmsg status [--json]"); err != nil {
		return err
	}
	return e.do(false, func(ctx context.Context, c *api.Client) error {
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		return e.output(st, func() { printStatus(e, st) })
	})
}

// describeDHT says in one line what the node does in each DHT.
func describeDHT(d api.DHTStatus) string {
	half := func(serving bool, peers int, where string) string {
		role := "client"
		if serving {
			role = "server"
		}
		return fmt.Sprintf("%s %s, %d peers", where, role, peers)
	}
	wan := half(d.WANServer, d.WANPeers, "internet")
	if !d.WANServer && d.Mode == string(node.DHTAuto) {
		wan += " (a server once reachable from the internet)"
	}
	return half(d.LANServer, d.LANPeers, "LAN") + "; " + wan + "; mode " + d.Mode
}

func printStatus(e *env, st api.Status) {
	for _, p := range st.Problems {
		fmt.Fprintf(e.stdout, "problem: %s\n", p.Text)
	}
	fmt.Fprintf(e.stdout, "peer ID:        %s\nreachability:   %s\nconnected peers: %d\nDHT:            %s\n",
		st.PeerID, st.Reachability, st.ConnectedPeers, describeDHT(st.DHT))
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
		fmt.Fprintf(e.stdout, "contact %s: %s\n", name(c.PeerID, c.Name), c.Path)
	}
	if st.Requests > 0 {
		fmt.Fprintf(e.stdout, "contact requests: %d pending (p2pmsg contacts requests)\n", st.Requests)
	}
	if st.NewSessionsPending > 0 {
		fmt.Fprintf(e.stdout, "restored:       new sessions still to start with %d contacts (it retries every minute)\n", st.NewSessionsPending)
	}
	if st.Outbox > 0 {
		fmt.Fprintf(e.stdout, "outbox:         %d waiting for an acknowledgement or a receipt\n", st.Outbox)
	}
	if len(st.Mailboxes) == 0 {
		fmt.Fprintln(e.stdout, "mailboxes:      none: messages reach you only while you are online (p2pmsg mailboxes add)")
	}
	for _, m := range st.Mailboxes {
		if m.Reachable {
			fmt.Fprintf(e.stdout, "mailbox %s: reachable; %d waiting (%d bytes); one-time keys left %d + %d post-quantum\n",
				m.PeerID, m.Stored, m.StoredBytes, m.OneTimeKeys, m.PQOneTime)
		} else {
			fmt.Fprintf(e.stdout, "mailbox %s: unreachable: %s\n", m.PeerID, m.LastError)
		}
	}
	for _, c := range st.ClockSkews {
		d := time.Duration(c.OffsetMillis) * time.Millisecond
		how := "behind ours (or its messages all came late)"
		if d < 0 {
			d, how = -d, "ahead of ours"
		}
		fmt.Fprintf(e.stdout, "warning: the clock of %s is %s %s: one of the two clocks is wrong, and your conversation sorts out of order\n",
			c.PeerID, d.Round(time.Second), how)
	}
	if st.SecretsUnsealed {
		fmt.Fprintln(e.stdout, "warning: the keys are stored unsealed (no passphrase)")
	}
}

// cmdVersion prints the version the binary was built as: the module's
// version for a release (go install ...@vX), else the commit it was
// built from.
func cmdVersion(e *env, args []string) error {
	fs := e.flags("version")
	if _, err := e.parse(fs, args, 0, "p2pmsg version [--json]"); err != nil {
		return err
	}
	v := versionInfo()
	return e.output(v, func() {
		fmt.Fprintf(e.stdout, "p2pmsg %s (%s, %s)\n", v.Version, v.Go, v.Commit)
	})
}

// buildVersion is what `p2pmsg version` says.
type buildVersion struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Go      string `json:"go"`
}

func versionInfo() buildVersion {
	v := buildVersion{Version: "(devel)", Commit: "unknown commit", Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				v.Commit += " (modified)"
			}
		}
	}
	return v
}
