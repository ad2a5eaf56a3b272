package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/p2pmsg/p2pmsg/internal/jsonrpc"
	"github.com/p2pmsg/p2pmsg/node"
)

// SocketName is the daemon's socket in the data directory.
const SocketName = "p2pmsg.sock"

// Listen listens on DIR/p2pmsg.sock, mode 0600. The caller holds the
// store's lock, so a socket file already there is a dead daemon's.
func Listen(dir string) (net.Listener, error) {
	path := filepath.Join(dir, SocketName)
	if len(path) >= 104 {
		return nil, fmt.Errorf("socket path %s is too long for a UNIX socket (%d bytes); use a shorter data directory", path, len(path))
	}
	os.Remove(path)
	// The socket is created 0600, with no window in which it is not. The
	// umask is process-wide: Listen runs once, before the daemon serves.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	return ln, err
}

// Client is a typed client of the API, over the daemon's socket or a
// Server in this process.
type Client struct {
	rpc  *jsonrpc.Client
	stop func() // ends the in-process server, if any
	once sync.Once
}

// Dial connects to the daemon of a data directory. When none answers
// the error has CodeNoDaemon.
func Dial(dir string) (*Client, error) {
	rpc, err := jsonrpc.Dial(filepath.Join(dir, SocketName))
	if err != nil {
		return nil, withCode(CodeNoDaemon, fmt.Errorf("no daemon runs on %s: start one with `p2pmsg --data %s daemon`", dir, dir))
	}
	return &Client{rpc: rpc}, nil
}

// Offline serves n's API in this process, for when no daemon runs: n
// was opened and not started, and the Server answers CodeNoDaemon to the
// methods that need one. Close ends the server; n stays the caller's.
func Offline(n *node.Node) *Client {
	srv := NewServer(n, true)
	ln := newPipeListener()
	go srv.Serve(ln)
	return &Client{rpc: jsonrpc.NewClient(ln.dial()), stop: func() { ln.Close(); srv.Close() }}
}

// Close ends the connection (and the in-process server).
func (c *Client) Close() {
	c.once.Do(func() {
		c.rpc.Close()
		if c.stop != nil {
			c.stop()
		}
	})
}

func call[R any](ctx context.Context, c *Client, method string, params any) (R, error) {
	var r R
	err := c.rpc.Call(ctx, method, params, &r)
	return r, err
}

func (c *Client) ID(ctx context.Context) (Identity, error) { return call[Identity](ctx, c, "id", nil) }

// Send sends a message; with p.Wait, it answers once the message is
// delivered or failed. An error may carry the message's id and state
// anyway: see ResultOf.
func (c *Client) Send(ctx context.Context, p SendParams) (SendResult, error) {
	return call[SendResult](ctx, c, "send", p)
}

func (c *Client) Resend(ctx context.Context, id string) (SendResult, error) {
	return call[SendResult](ctx, c, "resend", MessageParams{ID: id})
}

func (c *Client) History(ctx context.Context, p HistoryParams) ([]Message, error) {
	return call[[]Message](ctx, c, "history", p)
}

func (c *Client) Message(ctx context.Context, id string) (Message, error) {
	return call[Message](ctx, c, "message", MessageParams{ID: id})
}

func (c *Client) Events(ctx context.Context, p EventsParams) (EventPage, error) {
	return call[EventPage](ctx, c, "events", p)
}

func (c *Client) LastEventID(ctx context.Context) (int64, error) {
	return call[int64](ctx, c, "last_event_id", nil)
}

func (c *Client) Resolve(ctx context.Context, peer string) (Resolved, error) {
	return call[Resolved](ctx, c, "resolve", PeerParams{Peer: peer})
}

func (c *Client) Verify(ctx context.Context, peer string) (SafetyNumber, error) {
	return call[SafetyNumber](ctx, c, "verify", PeerParams{Peer: peer})
}

func (c *Client) Status(ctx context.Context) (Status, error) {
	return call[Status](ctx, c, "status", nil)
}

func (c *Client) Contacts(ctx context.Context) ([]Contact, error) {
	return call[[]Contact](ctx, c, "contacts.list", nil)
}

// AddContact adds or accepts a contact; an empty name keeps its name.
func (c *Client) AddContact(ctx context.Context, p ContactParams) (Contact, error) {
	return call[Contact](ctx, c, "contacts.add", p)
}

// Rename renames a contact; an empty name removes its name.
func (c *Client) Rename(ctx context.Context, p ContactParams) (Contact, error) {
	return call[Contact](ctx, c, "contacts.rename", p)
}

// RemoveContact deletes a contact with its sessions and history.
func (c *Client) RemoveContact(ctx context.Context, peer string) (Removed, error) {
	return call[Removed](ctx, c, "contacts.remove", PeerParams{Peer: peer})
}

// Requests lists the pending contact requests, the oldest first.
func (c *Client) Requests(ctx context.Context) ([]Contact, error) {
	return call[[]Contact](ctx, c, "contacts.requests", nil)
}

// ClearRequests deletes every pending contact request with its messages.
func (c *Client) ClearRequests(ctx context.Context) (Cleared, error) {
	return call[Cleared](ctx, c, "contacts.clear_requests", nil)
}

// ContactOp runs "contacts.accept", "contacts.block" or
// "contacts.unblock" on a peer.
func (c *Client) ContactOp(ctx context.Context, method, peer string) (Contact, error) {
	return call[Contact](ctx, c, method, PeerParams{Peer: peer})
}

func (c *Client) SetVerified(ctx context.Context, peer string, verified bool) (Contact, error) {
	return call[Contact](ctx, c, "contacts.verified", VerifiedParams{Peer: peer, Verified: &verified})
}

func (c *Client) Trust(ctx context.Context, peer string) (Trusted, error) {
	return call[Trusted](ctx, c, "trust", PeerParams{Peer: peer})
}

// A Watcher follows the event log through "subscribe".
type Watcher struct {
	sub *jsonrpc.Subscription
}

// Watch follows the events after p.Since, of p.Kinds (all when empty),
// until ctx ends.
func (c *Client) Watch(ctx context.Context, p SubscribeParams) (*Watcher, error) {
	sub, err := c.rpc.Subscribe(ctx, "subscribe", p)
	if err != nil {
		return nil, err
	}
	return &Watcher{sub: sub}, nil
}

// Next returns the next event. When the subscription ends it returns
// why: ctx's error, the daemon's error answer, or a connection error
// (the daemon went away).
func (w *Watcher) Next() (Event, error) {
	raw, err := w.sub.Next()
	if err != nil {
		return Event{}, err
	}
	var e Event
	if err := json.Unmarshal(raw, &e); err != nil {
		return Event{}, fmt.Errorf("api: an event that does not decode: %w", err)
	}
	return e, nil
}

// pipeListener hands one in-memory connection to a Server.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn, 1), done: make(chan struct{})}
}

// dial returns the client's end of a new connection.
func (l *pipeListener) dial() net.Conn {
	client, server := net.Pipe()
	l.conns <- server
	return client
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "in-process" }
