package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/node"
)

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func cmdDaemon(e *env, args []string) error {
	fs := e.flags("daemon")
	var listen, bootstrap multiFlag
	fs.Var(&listen, "listen", "listen address (repeatable)")
	fs.Var(&bootstrap, "bootstrap", "bootstrap peer address (repeatable)")
	noMDNS := fs.Bool("no-mdns", false, "no discovery on the LAN")
	noPortMap := fs.Bool("no-port-map", false, "no UPnP/NAT-PMP port mapping on the router")
	var relays multiFlag
	fs.Var(&relays, "relay-via", "a relay to hold a reservation on when behind NAT (repeatable)")
	relay := fs.Bool("relay", false, "serve as a circuit relay and DHT server (for a node with a public address)")
	dhtMode := fs.String("dht-mode", "", "auto, server or client")
	reach := fs.String("reachability", "", "auto, public or private: override AutoNAT")
	if _, err := e.parse(fs, args, 0, "p2pmsg daemon [--listen MULTIADDR]... [--bootstrap MULTIADDR]... [--relay-via MULTIADDR]... [--relay] [--no-mdns] [--no-port-map]"); err != nil {
		return err
	}
	fc, err := e.loadConfig()
	if err != nil {
		return err
	}
	if len(listen) > 0 {
		fc.Listen = listen
	}
	fc.Bootstrap = append(fc.Bootstrap, bootstrap...)
	if *noMDNS {
		f := false
		fc.MDNS = &f
	}
	if *dhtMode != "" {
		fc.DHTMode = *dhtMode
	}
	fc.Relay = fc.Relay || *relay
	if *reach != "" {
		fc.Reachability = *reach
	}
	fc.Relays = append(fc.Relays, relays...)
	if *noPortMap {
		f := false
		fc.PortMap = &f
	}
	cfg, err := e.nodeConfig(fc)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if fc.LogLevel != "" {
		if err := level.UnmarshalText([]byte(fc.LogLevel)); err != nil {
			return fail(exitUsage, "log_level %q: want debug, info, warn or error", fc.LogLevel)
		}
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	cfg.Logger = log
	n, err := openNode(e, cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := n.Start(ctx); err != nil {
		n.Close()
		return err
	}
	ln, err := listenSocket(e.data)
	if err != nil {
		n.Close()
		return err
	}
	srv := newRPCServer(ln, methods(n))
	go srv.serve()
	if !n.Store().SecretsSealed() {
		log.Warn("the keys are stored unsealed: anyone who can read " + e.data + " can read them (set P2PMSG_PASSPHRASE before the first start to seal them)")
	}
	log.Info("ready", "peer_id", n.ID().String(), "addrs", fmt.Sprint(n.Addrs()), "socket", ln.Addr().String())
	<-ctx.Done()
	log.Info("stopping")
	srv.close()
	return n.Close()
}

// openNode opens the node's store, asking for the passphrase on a
// terminal when the store is sealed and none was given, and turns store
// errors into exit codes.
func openNode(e *env, cfg node.Config) (*node.Node, error) {
	if _, err := os.Stat(filepath.Join(cfg.DataDir, db.FileName)); err != nil && cfg.Passphrase == nil {
		// A new store: on a terminal, offer to seal its keys.
		p, err := newPassphrase(e)
		if err != nil {
			return nil, err
		}
		cfg.Passphrase = p
	}
	defer func() { clear(cfg.Passphrase) }() // the store derived its key
	n, err := node.New(cfg)
	if errors.Is(err, db.ErrPassphraseRequired) && cfg.Passphrase == nil {
		if cfg.Passphrase, err = promptPassphrase(e); err != nil {
			return nil, err
		}
		n, err = node.New(cfg)
	}
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, db.ErrLocked):
		return nil, fail(exitLocked, "%s is in use by another p2pmsg process (a daemon?): stop it, or talk to it with the other commands", e.data)
	case errors.Is(err, db.ErrPassphraseRequired), errors.Is(err, db.ErrWrongPassphrase):
		return nil, fail(exitPassphrase, "%v: check P2PMSG_PASSPHRASE (or unset it to be asked on a terminal)", err)
	}
	return nil, err
}

// resolvePeer reads a peer ID, or a contact's name.
func resolvePeer(n *node.Node, s string) (peer.ID, error) {
	if p, err := peer.Decode(s); err == nil {
		return p, nil
	}
	cs, err := n.Contacts()
	if err != nil {
		return "", err
	}
	var found []string
	for _, c := range cs {
		if c.Name == s {
			found = append(found, c.PeerID)
		}
	}
	switch len(found) {
	case 0:
		return "", fail(exitNotFound, "unknown peer %q: neither a peer ID nor a contact's name (see p2pmsg contacts list)", s)
	case 1:
		return peer.Decode(found[0])
	}
	return "", fail(exitUsage, "%d contacts are named %q (%s): use a peer ID, or rename one", len(found), s, strings.Join(found, ", "))
}

// Wire types of the API (README: "JSON-RPC").

type idResult struct {
	PeerID      string   `json:"peer_id"`
	Addrs       []string `json:"addrs"`
	Fingerprint string   `json:"fingerprint"`
}

type sendParams struct {
	Peer    string `json:"peer"`
	Text    string `json:"text"`
	Wait    bool   `json:"wait,omitempty"`
	Timeout string `json:"timeout,omitempty"` // Go duration, default 30s
}

type sendResult struct {
	ID    string `json:"id"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

type historyParams struct {
	Peer  string `json:"peer"`
	Limit int    `json:"limit,omitempty"`
}

type historyEntry struct {
	ID        string    `json:"id"`
	Direction string    `json:"direction"`
	Body      string    `json:"body"`
	State     string    `json:"state"`
	Time      time.Time `json:"time"`
	Error     string    `json:"error,omitempty"`
	Request   bool      `json:"contact_request,omitempty"` // from a stranger not yet accepted
}

type resendParams struct {
	Peer string `json:"peer"`
	ID   string `json:"id"`
}

type peerParams struct {
	Peer string `json:"peer"`
	Name string `json:"name,omitempty"`
}

type subscribeParams struct {
	Since int64 `json:"since"`
}

type contactEntry struct {
	PeerID   string `json:"peer_id"`
	Name     string `json:"name,omitempty"`
	State    string `json:"state"`
	Verified bool   `json:"verified"`
	Blocked  bool   `json:"blocked"`
	Path     string `json:"path"` // direct, hole-punched, relayed, offline
}

func fingerprint(p peer.ID) string {
	b := []byte(p)
	return strings.ToUpper(hex.EncodeToString(b[len(b)-8:]))
}

func idOf(n *node.Node) idResult {
	r := idResult{PeerID: n.ID().String(), Fingerprint: fingerprint(n.ID()), Addrs: []string{}}
	for _, a := range n.Addrs() {
		r.Addrs = append(r.Addrs, a.String())
	}
	return r
}

func decode[T any](raw json.RawMessage) (T, error) {
	var v T
	if len(raw) == 0 {
		return v, nil
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fail(exitUsage, "invalid params: %v", err)
	}
	return v, nil
}

func historyOf(n *node.Node, p peer.ID, limit int) ([]historyEntry, error) {
	if limit <= 0 {
		limit = 50
	}
	msgs, err := n.History(p, db.Cursor{}, limit)
	if err != nil {
		return nil, err
	}
	c, _ := n.Contact(p)
	out := make([]historyEntry, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, historyEntry{ID: hex.EncodeToString(m.ID[:]), Direction: string(m.Direction), Body: m.Body,
			State: string(m.State), Time: m.Time(), Error: m.Error,
			Request: m.Direction == db.Incoming && c.State == db.ContactRequest})
	}
	return out, nil
}

func contactsOf(n *node.Node) ([]contactEntry, error) {
	cs, err := n.Contacts()
	if err != nil {
		return nil, err
	}
	out := make([]contactEntry, 0, len(cs))
	for _, c := range cs {
		path := node.PathOffline
		if p, err := peer.Decode(c.PeerID); err == nil {
			path = n.Path(p)
		}
		out = append(out, contactEntry{PeerID: c.PeerID, Name: c.Name, State: string(c.State), Verified: c.Verified, Blocked: c.Blocked, Path: string(path)})
	}
	return out, nil
}

// sendAndWait sends, and with wait follows the message's state until it
// is delivered or failed, or the timeout.
func sendAndWait(ctx context.Context, n *node.Node, p sendParams) (sendResult, error) {
	to, err := resolvePeer(n, p.Peer)
	if err != nil {
		return sendResult{}, err
	}
	timeout := 30 * time.Second
	if p.Timeout != "" {
		if timeout, err = time.ParseDuration(p.Timeout); err != nil {
			return sendResult{}, fail(exitUsage, "timeout %q: %v", p.Timeout, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last int64
	n.Store().View(func(r *db.ReadTx) (err error) {
		last, err = r.LastEventID()
		return err
	})
	id, err := n.Send(ctx, to, p.Text)
	if errors.Is(err, node.ErrPeerNotFound) || errors.Is(err, node.ErrBadPeer) {
		return sendResult{}, &cliError{code: exitNotFound, err: err}
	}
	if errors.Is(err, node.ErrBlocked) {
		return sendResult{}, fail(exitError, "%v: unblock it first (p2pmsg contacts unblock %s)", err, to)
	}
	if err != nil {
		return sendResult{}, err
	}
	res := sendResult{ID: hex.EncodeToString(id[:]), State: string(db.Queued)}
	if !p.Wait {
		return res, nil
	}
	for e := range n.Subscribe(ctx, last) {
		if e.Kind != node.EventState || e.MessageID != res.ID {
			continue
		}
		res.State, res.Error = e.State, e.Reason
		switch db.MessageState(e.State) {
		case db.Delivered:
			return res, nil
		case db.Failed:
			return res, withResult(res, fail(exitError, "message %s failed: %s", res.ID, e.Reason))
		}
	}
	return res, withResult(res, fail(exitTimeout, "message %s not delivered within %v (it is %s, and will be retried)", res.ID, timeout, res.State))
}

// methods is the daemon's API.
func methods(n *node.Node) map[string]handler {
	return map[string]handler{
		"id": func(context.Context, json.RawMessage, func(any) error) (any, error) { return idOf(n), nil },
		"send": func(ctx context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
			p, err := decode[sendParams](raw)
			if err != nil {
				return nil, err
			}
			return sendAndWait(ctx, n, p)
		},
		"history": func(_ context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
			p, err := decode[historyParams](raw)
			if err != nil {
				return nil, err
			}
			to, err := resolvePeer(n, p.Peer)
			if err != nil {
				return nil, err
			}
			return historyOf(n, to, p.Limit)
		},
		"subscribe": func(ctx context.Context, raw json.RawMessage, notify func(any) error) (any, error) {
			p, err := decode[subscribeParams](raw)
			if err != nil {
				return nil, err
			}
			for e := range n.Subscribe(ctx, p.Since) {
				if err := notify(e); err != nil {
					return nil, err
				}
			}
			return nil, ctx.Err()
		},
		"events": func(_ context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
			p, err := decode[subscribeParams](raw)
			if err != nil {
				return nil, err
			}
			return n.Events(p.Since, 10000)
		},
		"last_event_id": func(context.Context, json.RawMessage, func(any) error) (any, error) {
			var id int64
			err := n.Store().View(func(r *db.ReadTx) (err error) {
				id, err = r.LastEventID()
				return err
			})
			return id, err
		},
		"contacts.list":     func(context.Context, json.RawMessage, func(any) error) (any, error) { return contactsOf(n) },
		"contacts.add":      contactOp(n, func(p peer.ID, name string) error { return n.AddContact(p, name) }),
		"contacts.accept":   contactOp(n, func(p peer.ID, _ string) error { return n.Accept(p) }),
		"contacts.block":    contactOp(n, func(p peer.ID, _ string) error { return n.Block(p, true) }),
		"contacts.unblock":  contactOp(n, func(p peer.ID, _ string) error { return n.Block(p, false) }),
		"trust":             contactOp(n, func(p peer.ID, _ string) error { return n.TrustIdentity(p) }),
		"contacts.verified": contactOp(n, func(p peer.ID, _ string) error { return n.SetVerified(p, true) }),
		"resend": func(ctx context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
			p, err := decode[resendParams](raw)
			if err != nil {
				return nil, err
			}
			to, err := resolvePeer(n, p.Peer)
			if err != nil {
				return nil, err
			}
			b, err := hex.DecodeString(p.ID)
			if err != nil || len(b) != 16 {
				return nil, fail(exitUsage, "message id %q: want the 32 hex digits that send and history print", p.ID)
			}
			newID, err := n.Resend(ctx, to, [16]byte(b))
			if err != nil {
				return nil, err
			}
			return sendResult{ID: hex.EncodeToString(newID[:]), State: string(db.Queued)}, nil
		},
		"verify": func(_ context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
			p, err := decode[peerParams](raw)
			if err != nil {
				return nil, err
			}
			to, err := resolvePeer(n, p.Peer)
			if err != nil {
				return nil, err
			}
			sn, err := n.SafetyNumber(to)
			return map[string]string{"peer_id": to.String(), "safety_number": sn}, err
		},
		"status": func(context.Context, json.RawMessage, func(any) error) (any, error) { return n.Status() },
	}
}

// addContact adds or accepts a contact; a name is set only when given,
// and must not be another contact's.
func addContact(n *node.Node, p peer.ID, name string) error {
	c, err := n.Contact(p)
	if err != nil && !errors.Is(err, db.ErrNotFound) {
		return err
	}
	if name == "" {
		name = c.Name // keep the name it has
	} else if other, err := resolvePeer(n, name); err == nil && other != p {
		return fail(exitUsage, "the name %q is %s's already: rename that contact first", name, other)
	}
	return n.AddContact(p, name)
}

func contactOp(n *node.Node, f func(peer.ID, string) error) handler {
	return func(_ context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
		p, err := decode[peerParams](raw)
		if err != nil {
			return nil, err
		}
		id, err := peer.Decode(p.Peer)
		if err != nil {
			if id, err = resolvePeer(n, p.Peer); err != nil {
				return nil, err
			}
		}
		if err := f(id, p.Name); err != nil {
			if errors.Is(err, db.ErrNotFound) {
				return nil, &cliError{code: exitNotFound, err: err}
			}
			return nil, err
		}
		return map[string]string{"peer_id": id.String()}, nil
	}
}
