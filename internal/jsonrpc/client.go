package jsonrpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// Client is one connection to a server. Calls from several goroutines
// share it, matched to their answers by id, and one Subscription at a
// time can stream on it meanwhile. A Subscription whose notifications are
// not taken holds up the calls' answers once its buffer is full (they
// come on the same connection, behind the notifications): a caller that
// waits for a call before it calls Next again needs another Client.
type Client struct {
	nc      net.Conn
	writes  chan []byte   // to the writer goroutine, which owns writes
	kick    chan struct{} // cap 1: cancels wait to be written
	slots   chan struct{} // a token per request on the wire (MaxInFlight)
	subs    chan struct{} // cap 1: the subscription on the wire
	closing chan struct{} // Close was called
	done    chan struct{} // the reader has ended: err says why
	wg      sync.WaitGroup
	once    sync.Once

	mu       sync.Mutex
	err      error // set once: why calls fail from now on
	writeErr error
	next     uint64
	pending  map[uint64]*pending // nil once the connection has ended
	sub      *Subscription
	cancels  []uint64
}

type pending struct {
	answer chan *message // cap 1: the reader never waits for a caller that left
	sub    *Subscription
}

// message is what a client reads: an answer or a notification.
type message struct {
	ID     json.RawMessage `json:"id"` // absent: a notification
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *Error          `json:"error"`
}

type outRequest struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      *uint64         `json:"id,omitempty"` // nil: a notification
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
}

// Dial connects to the server on the UNIX socket at path.
func Dial(path string) (*Client, error) {
	nc, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	return NewClient(nc), nil
}

// NewClient makes a Client of a connection, which it then owns.
func NewClient(nc net.Conn) *Client {
	c := &Client{
		nc:      nc,
		writes:  make(chan []byte),
		kick:    make(chan struct{}, 1),
		slots:   make(chan struct{}, MaxInFlight),
		subs:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		pending: map[uint64]*pending{},
	}
	c.wg.Add(2)
	go c.read()
	go c.write()
	return c
}

// Close ends the connection: calls waiting fail and the subscription
// ends, with ErrClosed. It waits for the Client's goroutines.
func (c *Client) Close() {
	c.once.Do(func() {
		c.mu.Lock()
		if c.err == nil {
			c.err = ErrClosed
		}
		c.mu.Unlock()
		close(c.closing)
		c.nc.Close()
	})
	c.wg.Wait()
}

// Call sends a request and decodes its result into result (unless nil).
// An error answer is returned as an *Error, whose Data the caller may
// decode. When ctx ends first, Call returns ctx.Err() and forgets the
// request, and asks the server to cancel it (rpc.cancel).
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	p := &pending{answer: make(chan *message, 1)}
	id, err := c.send(ctx, method, params, p)
	if err != nil {
		return err
	}
	select {
	case m := <-p.answer:
		return decodeAnswer(m, result)
	case <-ctx.Done():
		c.cancel(id)
		return ctx.Err()
	case <-c.done:
		select {
		case m := <-p.answer: // it came just before the end
			return decodeAnswer(m, result)
		default:
			return c.closedErr()
		}
	}
}

func decodeAnswer(m *message, result any) error {
	if m.Error != nil {
		return m.Error
	}
	if result == nil || len(m.Result) == 0 {
		return nil
	}
	return json.Unmarshal(m.Result, result)
}

// send registers p and hands its request to the writer, holding a slot
// until the answer comes (the server holds one until then too).
func (c *Client) send(ctx context.Context, method string, params any, p *pending) (uint64, error) {
	var raw json.RawMessage
	if params != nil {
		var err error
		if raw, err = marshalValue(params); err != nil {
			return 0, err
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := c.acquire(ctx, c.slots); err != nil {
		return 0, err
	}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		<-c.slots
		return 0, c.err
	}
	c.next++
	id := c.next
	c.pending[id] = p
	if p.sub != nil {
		c.sub = p.sub
		p.sub.stop = context.AfterFunc(ctx, func() { c.cancel(id) })
	}
	c.mu.Unlock()
	b, err := marshal(&outRequest{JSONRPC: Version, ID: &id, Method: method, Params: raw})
	if err == nil && len(b) > MaxLineBytes+1 {
		// The server would answer it by closing the connection.
		err = fmt.Errorf("jsonrpc: a request of %d bytes; the server takes at most %d", len(b)-1, MaxLineBytes)
	}
	if err != nil {
		c.forget(id)
		return 0, err
	}
	select {
	case c.writes <- b:
		if p.sub != nil && ctx.Err() != nil {
			// ctx ended while the request waited: its rpc.cancel may have
			// been written before the request itself, and ignored. Once
			// more, now that the writer has the request.
			c.cancel(id)
		}
		return id, nil
	case <-ctx.Done():
		c.forget(id)
		return 0, ctx.Err()
	case <-c.done:
		return 0, c.closedErr()
	}
}

func (c *Client) acquire(ctx context.Context, slot chan struct{}) error {
	select {
	case slot <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.closedErr()
	}
}

// forget drops a request that never reached the wire.
func (c *Client) forget(id uint64) {
	c.mu.Lock()
	p, ok := c.pending[id]
	delete(c.pending, id)
	if ok && p.sub != nil && c.sub == p.sub {
		c.sub = nil
	}
	c.mu.Unlock()
	if ok {
		c.release(p)
	}
}

func (c *Client) release(p *pending) {
	<-c.slots
	if p.sub != nil {
		p.sub.stop()
		<-c.subs
	}
}

// cancel asks the server to end a request whose caller has gone. Its
// slot stays taken until the answer comes: the server's does too.
func (c *Client) cancel(id uint64) {
	c.mu.Lock()
	_, ok := c.pending[id]
	if ok {
		c.cancels = append(c.cancels, id)
	}
	c.mu.Unlock()
	if ok {
		select {
		case c.kick <- struct{}{}:
		default: // the writer has yet to take the last kick: it will see this one too
		}
	}
}

func (c *Client) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// write owns the connection's writes, so that a caller whose ctx ends
// can leave while its request waits to be written.
func (c *Client) write() {
	defer c.wg.Done()
	for {
		var b []byte
		select {
		case b = <-c.writes:
		case <-c.kick:
			c.mu.Lock()
			ids := c.cancels
			c.cancels = nil
			c.mu.Unlock()
			for _, id := range ids {
				nb, _ := marshal(&outRequest{JSONRPC: Version, Method: CancelMethod, Params: fmt.Appendf(nil, `{"id":%d}`, id)})
				b = append(b, nb...)
			}
			if len(b) == 0 {
				continue
			}
		case <-c.done:
			return
		case <-c.closing:
			return
		}
		if _, err := c.nc.Write(b); err != nil {
			// Not closing the connection: the server may have said why it
			// closed its side (too many connections), and the reader is
			// yet to read that. A connection that fails to write fails to
			// read too, so the reader ends soon.
			c.mu.Lock()
			c.writeErr = err
			c.mu.Unlock()
			return
		}
	}
}

// read routes answers to their callers and notifications to the
// subscription, until the connection ends.
func (c *Client) read() {
	defer c.wg.Done()
	sc := bufio.NewScanner(c.nc)
	sc.Buffer(make([]byte, 4096), MaxAnswerBytes+1)
	var err error
	for err == nil && sc.Scan() {
		err = c.route(sc.Bytes())
	}
	if err == nil && sc.Err() != nil {
		err = fmt.Errorf("%w: %v", ErrClosed, sc.Err())
		if errors.Is(sc.Err(), bufio.ErrTooLong) {
			err = fmt.Errorf("%w: %w: an answer longer than %d bytes", ErrClosed, ErrProtocol, MaxAnswerBytes)
		}
	}
	c.mu.Lock()
	if c.err == nil {
		switch {
		case err != nil:
			c.err = err
		case c.writeErr != nil:
			c.err = fmt.Errorf("%w: %v", ErrClosed, c.writeErr)
		default:
			c.err = ErrClosed
		}
	}
	sub := c.sub
	c.sub, c.pending = nil, nil
	c.mu.Unlock()
	c.nc.Close()
	if sub != nil {
		sub.stop()
		sub.end(c.err)
	}
	close(c.done)
}

// route handles one line; an error ends the connection.
func (c *Client) route(line []byte) error {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] == '[' { // a batch's answer: this client sends none
		return nil
	}
	var m message
	if err := json.Unmarshal(line, &m); err != nil {
		return fmt.Errorf("%w: %w: a bad answer from the server: %v", ErrClosed, ErrProtocol, err)
	}
	if m.ID == nil {
		if m.Method == NotifyMethod {
			c.deliver(m.Params)
		}
		return nil
	}
	if string(m.ID) == "null" {
		// The server could not read a request; this client sends none it
		// cannot read, so this is the server refusing the connection
		// (too many connections, a line too long) before it closes it.
		if m.Error != nil {
			return fmt.Errorf("%w: %w", ErrClosed, m.Error)
		}
		return nil
	}
	var id uint64
	if json.Unmarshal(m.ID, &id) != nil {
		return nil // not an id this client gave
	}
	c.mu.Lock()
	p := c.pending[id]
	delete(c.pending, id)
	if p != nil && p.sub != nil && c.sub == p.sub {
		c.sub = nil
	}
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	c.release(p)
	if p.sub != nil {
		// The server's final answer to a subscription.
		if m.Error != nil {
			p.sub.end(m.Error)
		} else {
			p.sub.end(io.EOF)
		}
		return nil
	}
	p.answer <- &m
	return nil
}

// deliver passes a notification to the subscription. While its buffer
// is full this waits, and so reads nothing more: the server's writes
// then block, which is how a slow reader slows the server.
func (c *Client) deliver(params json.RawMessage) {
	c.mu.Lock()
	sub := c.sub
	c.mu.Unlock()
	if sub == nil {
		return
	}
	select {
	case sub.ch <- params:
	case <-sub.ctx.Done(): // the subscriber has gone; rpc.cancel is on its way
	case <-c.closing:
	}
}

// Subscription is a request that streams notifications before its
// answer (in the daemon's API, "subscribe").
type Subscription struct {
	ctx  context.Context
	ch   chan json.RawMessage
	done chan struct{} // closed once err is set
	err  error
	stop func() bool // the rpc.cancel that ctx's end sends
}

// Subscribe sends a request whose handler streams notifications, and
// returns at once. A Client has one subscription at a time (the server's
// notifications do not say whose they are): Subscribe waits, within ctx,
// until the previous one has had its answer from the server. When ctx
// ends, the subscription ends and the server is asked to cancel it.
func (c *Client) Subscribe(ctx context.Context, method string, params any) (*Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := c.acquire(ctx, c.subs); err != nil {
		return nil, err
	}
	s := &Subscription{ctx: ctx, ch: make(chan json.RawMessage, MaxBufferedNotifications), done: make(chan struct{})}
	if _, err := c.send(ctx, method, params, &pending{sub: s}); err != nil {
		if s.stop == nil { // never registered: the token is still this call's
			<-c.subs
		}
		return nil, err
	}
	return s, nil
}

// Next returns the params of the next notification, in the order sent.
// Once the subscription has ended it returns why: the server's answer
// (an *Error, or io.EOF for a result), ErrClosed for the connection, or
// ctx.Err(). Notifications that came before the server's answer or the
// connection's end are returned first; ctx's end is returned at once.
// One goroutine at a time may call Next.
func (s *Subscription) Next() (json.RawMessage, error) {
	if err := s.ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case p := <-s.ch:
		return p, nil
	case <-s.done:
		select {
		case p := <-s.ch:
			return p, nil
		default:
			return nil, s.err
		}
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
}

// end is called once, by the reader, after every notification before it
// has been delivered.
func (s *Subscription) end(err error) {
	s.err = err
	close(s.done)
}
