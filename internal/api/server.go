package api

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/internal/jsonrpc"
	"github.com/p2pmsg/p2pmsg/node"
)

// Server serves the API of one node: one typed method per RPC method,
// each registered through method or stream (adapter.go).
type Server struct {
	n       *node.Node
	offline bool
	rpc     *jsonrpc.Server
}

// NewServer serves n's API. With offline, n was opened without a host
// (no daemon runs): the methods that read the store work, and the others
// answer CodeNoDaemon.
func NewServer(n *node.Node, offline bool) *Server {
	s := &Server{n: n, offline: offline, rpc: jsonrpc.NewServer()}
	s.rpc.ErrorCode = errorAnswer
	s.register()
	return s
}

// Serve serves the connections of ln until ln closes or Close.
func (s *Server) Serve(ln net.Listener) error { return s.rpc.Serve(ln) }

// Close ends every request and connection and waits for them.
func (s *Server) Close() { s.rpc.Close() }

// register is the method table. daemon marks the methods that need a
// running node: the network ones, and every write (without a daemon the
// store is opened to be read).
func (s *Server) register() {
	const daemon, store = true, false
	method(s, "id", store, s.id)
	method(s, "send", daemon, s.send)
	method(s, "resend", daemon, s.resend)
	method(s, "history", store, s.history)
	method(s, "message", store, s.message)
	method(s, "events", store, s.events)
	stream(s, "subscribe", daemon, s.subscribe)
	method(s, "last_event_id", store, s.lastEventID)
	method(s, "resolve", store, s.resolve)
	method(s, "verify", store, s.verify)
	method(s, "status", daemon, s.status)
	method(s, "contacts.list", store, s.contacts)
	method(s, "contacts.add", daemon, s.addContact)
	method(s, "contacts.rename", daemon, s.rename)
	method(s, "contacts.remove", daemon, s.removeContact)
	method(s, "contacts.requests", store, s.requests)
	method(s, "contacts.clear_requests", daemon, s.clearRequests)
	method(s, "contacts.accept", daemon, s.contactOp(func(p peer.ID) error { return s.n.Accept(p) }))
	method(s, "contacts.block", daemon, s.contactOp(func(p peer.ID) error { return s.n.Block(p, true) }))
	method(s, "contacts.unblock", daemon, s.contactOp(func(p peer.ID) error { return s.n.Block(p, false) }))
	method(s, "contacts.verified", daemon, s.setVerified)
	method(s, "trust", daemon, s.trust)
	method(s, "mailbox.allow", daemon, s.mailboxAllow)
	method(s, "mailbox.invite", daemon, s.mailboxInvite)
	method(s, "mailbox.list", daemon, s.mailboxList)
	method(s, "mailbox.revoke", daemon, s.mailboxRevoke)
	method(s, "mailboxes.add", daemon, s.mailboxesAdd)
	method(s, "mailboxes.list", daemon, s.mailboxesList)
	method(s, "mailboxes.remove", daemon, s.mailboxesRemove)
	method(s, "edit", daemon, s.edit)
	method(s, "delete", daemon, s.delete)
	method(s, "react", daemon, s.react)
	method(s, "read", daemon, s.read)
	method(s, "disappearing", daemon, s.disappearing)
	method(s, "profile", store, s.profile)
	method(s, "profile.set", daemon, s.setProfile)
	method(s, "search", store, s.search)
	method(s, "invite", daemon, s.invite)
	method(s, "backup", store, s.backup)
	method(s, "passphrase", store, s.passphrase)
}

// Fingerprint is the short form of a peer ID that people read out: the
// last 8 bytes of its multihash, in hex.
func Fingerprint(p peer.ID) string {
	b := []byte(p)
	return strings.ToUpper(hex.EncodeToString(b[max(0, len(b)-8):]))
}

func (s *Server) id(context.Context, None) (Identity, error) {
	r := Identity{PeerID: s.n.ID().String(), Fingerprint: Fingerprint(s.n.ID()), Addrs: []string{}, Sealed: s.n.SecretsSealed()}
	for _, a := range s.n.Addrs() {
		r.Addrs = append(r.Addrs, a.String())
	}
	return r, nil
}

func (s *Server) send(ctx context.Context, p SendParams) (SendResult, error) {
	to, err := s.n.Resolve(p.Peer)
	if err != nil {
		return SendResult{}, err
	}
	timeout := 30 * time.Second
	if p.Timeout != "" {
		if timeout, err = time.ParseDuration(p.Timeout); err != nil || timeout <= 0 {
			return SendResult{}, invalid("timeout %q: want a positive duration such as 30s or 2m", p.Timeout)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last, err := s.n.LastEventID()
	if err != nil {
		return SendResult{}, err
	}
	d := node.Draft{Text: p.Text}
	if p.ReplyTo != "" {
		if d.ReplyTo, err = node.ParseMessageID(p.ReplyTo); err != nil {
			return SendResult{}, withCode(CodeInvalid, err)
		}
	}
	id, err := s.n.SendDraft(ctx, to, d)
	if errors.Is(err, node.ErrBlocked) {
		return SendResult{}, fmt.Errorf("%w: unblock it first (p2pmsg contacts unblock %s)", err, to)
	}
	if err != nil {
		return SendResult{}, err
	}
	res := SendResult{ID: id.String(), State: string(node.Queued)}
	if m, err := s.n.Message(id); err == nil {
		res.State, res.Error = string(m.State), m.Error // e.g. queued without a session yet, and why
	}
	if !p.Wait {
		return res, nil
	}
	if res.State == string(node.Queued) {
		// Not found yet: it may take days. Not delivered, so not
		// success; no failure either: the outbox keeps looking.
		if waits, err := s.n.WaitsForPeer(to); err == nil && waits {
			return res, withResult(res, withCode(CodeNotFound, fmt.Errorf("message %s: %s", res.ID, res.Error)))
		}
	}
	w := s.n.Watch(ctx, last, node.EventState)
	for {
		e, err := w.Next()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				err = withCode(CodeTimeout, fmt.Errorf("message %s not delivered within %v (it is %s, and will be retried)", res.ID, timeout, res.State))
			}
			return res, withResult(res, err)
		}
		if e.MessageID != id {
			continue
		}
		res.State, res.Error = string(e.State), e.Reason
		switch e.State {
		case node.Delivered:
			return res, nil
		case node.Mailboxed:
			// The recipient is away, and one of its mailboxes holds the
			// message for it: it is out of this node's hands but for a
			// resend if the mailbox loses it (the outbox keeps it until
			// the recipient's receipt).
			return res, nil
		case node.Queued:
			// Held until the recipient accepts us: that may take days.
			// Not delivered, so not success; no failure either: the
			// message goes once the recipient accepts.
			if e.Reason != "" {
				return res, withResult(res, withCode(CodeTimeout,
					fmt.Errorf("message %s is held: %s (it goes once they accept you)", res.ID, e.Reason)))
			}
		case node.Failed:
			return res, withResult(res, fmt.Errorf("message %s failed: %s", res.ID, e.Reason))
		}
	}
}

func (s *Server) resend(ctx context.Context, p MessageParams) (SendResult, error) {
	id, err := node.ParseMessageID(p.ID)
	if err != nil {
		return SendResult{}, withCode(CodeInvalid, err)
	}
	newID, err := s.n.Resend(ctx, id)
	if err != nil {
		return SendResult{}, err
	}
	return SendResult{ID: newID.String(), State: string(node.Queued)}, nil
}

func (s *Server) history(_ context.Context, p HistoryParams) ([]Message, error) {
	to, err := s.n.Resolve(p.Peer)
	if err != nil {
		return nil, err
	}
	pg := node.Page{Limit: p.Limit, Oldest: p.Oldest}
	if pg.Limit == 0 {
		pg.Limit = 50
	}
	if pg.Before, err = s.cursor(to, p.Before); err != nil {
		return nil, err
	}
	if pg.After, err = s.cursor(to, p.After); err != nil {
		return nil, err
	}
	ms, err := s.n.History(to, pg)
	if err != nil {
		return nil, err
	}
	c, _ := s.n.Contact(to)
	out := make([]Message, 0, len(ms))
	for _, m := range ms {
		out = append(out, messageOf(m, c))
	}
	return out, nil
}

// cursor is the position of a message of the conversation with p.
func (s *Server) cursor(p peer.ID, id string) (node.Cursor, error) {
	if id == "" {
		return node.Cursor{}, nil
	}
	mid, err := node.ParseMessageID(id)
	if err != nil {
		return node.Cursor{}, withCode(CodeInvalid, err)
	}
	m, err := s.n.Message(mid)
	if err != nil {
		return node.Cursor{}, err
	}
	if m.Peer != p {
		return node.Cursor{}, invalid("message %s is not in the conversation with %s", id, p)
	}
	return m.Cursor(), nil
}

func messageOf(m node.Message, c node.Contact) Message {
	out := Message{ID: m.ID.String(), Peer: m.Peer.String(), Name: c.DisplayName(), NameIsTheirs: c.Name == "" && c.ProfileName != "",
		Direction: string(m.Direction), Text: m.Text,
		State: string(m.State), Error: m.Error, Sent: m.Sent, Stored: m.Stored, Seq: m.Seq(),
		Request: m.Direction == node.Incoming && c.State == node.ContactRequest,
		Edited:  m.Edited, Deleted: m.Deleted, Timer: int64(m.Timer / time.Second), Expires: m.Expires}
	if !m.ReplyTo.IsZero() {
		out.ReplyTo = m.ReplyTo.String()
	}
	for _, r := range m.Reactions {
		x := Reaction{Emoji: r.Emoji}
		if r.Reactor != "" {
			x.Peer = r.Reactor.String()
			if r.Reactor == c.PeerID {
				x.Name = c.DisplayName()
			}
		}
		out.Reactions = append(out.Reactions, x)
	}
	return out
}

func (s *Server) message(_ context.Context, p MessageParams) (Message, error) {
	id, err := node.ParseMessageID(p.ID)
	if err != nil {
		return Message{}, withCode(CodeInvalid, err)
	}
	m, err := s.n.Message(id)
	if err != nil {
		return Message{}, err
	}
	c, _ := s.n.Contact(m.Peer)
	return messageOf(m, c), nil
}
