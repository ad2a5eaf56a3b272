package jsonrpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// Handler answers one method. params is the request's "params" as
// written, nil when it has none. ctx ends when the request is cancelled
// (rpc.cancel), its client goes, or the server closes; a handler that
// runs long (a subscription) must return then, because Close waits for
// it. notify sends params as a NotifyMethod notification on the
// request's connection, before the answer; it blocks while the client
// does not read, and fails once the client has gone. It must not be
// used after the handler has returned.
//
// The result is encoded as JSON. A non-nil error is answered instead:
// see Server.ErrorCode.
type Handler func(ctx context.Context, params json.RawMessage, notify func(any) error) (any, error)

// Server serves JSON-RPC 2.0 on the connections of its listeners. Make
// one with NewServer.
type Server struct {
	// ErrorCode gives the code and the data of the answer to a handler's
	// error that is not an *Error (one that is, is answered as it is);
	// the message is err.Error(). Data that is not nil is encoded as
	// JSON: this is where an API puts what a client needs besides the
	// message, such as a result that exists despite the error. Nil means
	// CodeServerError and no data. Set it before Serve.
	ErrorCode func(err error) (code int, data any)

	ctx    context.Context
	cancel context.CancelFunc
	conns  chan struct{} // a token per connection served
	wg     sync.WaitGroup

	mu        sync.Mutex
	methods   map[string]Handler
	started   bool
	closed    bool
	listeners map[net.Listener]struct{}

	// waitHook, when set, runs as a connection's reader starts waiting
	// for one of its requests to end: tests synchronise on it.
	waitHook func()
}

// NewServer returns a server with no methods.
func NewServer() *Server {
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		ctx:       ctx,
		cancel:    cancel,
		conns:     make(chan struct{}, MaxConns),
		methods:   map[string]Handler{},
		listeners: map[net.Listener]struct{}{},
	}
}

// Handle registers h for method. It panics after Serve (the method table
// is read without a lock), for a name registered twice, and for a name
// that starts with "rpc." (reserved to the package).
func (s *Server) Handle(method string, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.started:
		panic("jsonrpc: Handle after Serve")
	case method == "" || h == nil:
		panic("jsonrpc: Handle needs a method name and a handler")
	case strings.HasPrefix(method, "rpc."):
		panic("jsonrpc: method names that start with \"rpc.\" are reserved: " + method)
	case s.methods[method] != nil:
		panic("jsonrpc: method registered twice: " + method)
	}
	s.methods[method] = h
}

// Serve accepts connections on ln until it is closed, serving each in
// goroutines of its own. It returns nil once Close has been called, and
// otherwise the listener's error. It may be called for several listeners.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.started = true
	s.listeners[ln] = struct{}{}
	s.wg.Add(1) // before Close can Wait: the accept loop adds the connections' goroutines
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		s.wg.Done()
	}()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			return err
		}
		select {
		case s.conns <- struct{}{}:
		default:
			refuse(nc)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer func() {
				<-s.conns
				s.wg.Done()
			}()
			s.serveConn(nc)
		}()
	}
}

// Close ends every request's context, closes the listeners, cuts the
// connections and waits for every goroutine of the server to return.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	lns := make([]net.Listener, 0, len(s.listeners))
	for ln := range s.listeners {
		lns = append(lns, ln)
	}
	s.mu.Unlock()
	s.cancel()
	for _, ln := range lns {
		ln.Close()
	}
	s.wg.Wait()
}

// refuse turns away a connection beyond MaxConns with an answer that says
// why, rather than leaving it waiting without a word (a CLI verb would
// hang) or closing it without one (it would look like a crash).
func refuse(nc net.Conn) {
	b, _ := marshal(&response{JSONRPC: Version, Error: &Error{Code: CodeServerError,
		Message: fmt.Sprintf("too many connections: at most %d at once", MaxConns)}})
	// A fresh socket's buffer takes these few bytes at once; the deadline
	// only keeps a broken one from stopping the accept loop.
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write(b)
	nc.Close()
}

// conn is one client's connection.
type conn struct {
	s      *Server
	nc     net.Conn
	ctx    context.Context // ends when the client goes or the server closes
	cancel context.CancelFunc
	slots  chan struct{} // a token per request in flight
	reqs   sync.WaitGroup

	wmu sync.Mutex // one message at a time on the wire

	mu      sync.Mutex
	running map[string]*request // by id as written, for rpc.cancel
}

// request is one request object, ready to run or to answer.
type request struct {
	id     json.RawMessage // nil when unreadable: answered with a null id
	notify bool            // no "id": never answered
	method string
	params json.RawMessage
	h      Handler
	err    *Error // answered without running
	ctx    context.Context
	cancel context.CancelFunc
}

// serveConn reads one request line at a time, each line's requests
// running in a goroutine of their own, so that a connection that
// subscribed still takes requests; answers may come out of order, as
// JSON-RPC allows: the ids match them.
func (s *Server) serveConn(nc net.Conn) {
	ctx, cancel := context.WithCancel(s.ctx)
	c := &conn{s: s, nc: nc, ctx: ctx, cancel: cancel, slots: make(chan struct{}, MaxInFlight), running: map[string]*request{}}
	// At Close, a read or a write blocked on a client that neither sends
	// nor reads would keep Close waiting: cut them both.
	stop := context.AfterFunc(s.ctx, func() { nc.SetDeadline(time.Now()) })
	defer func() {
		cancel() // the client has gone: its subscriptions end
		c.reqs.Wait()
		stop()
		nc.Close()
	}()
	sc := bufio.NewScanner(nc)
	sc.Buffer(make([]byte, 4096), MaxLineBytes+1) // +1: the newline
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if !c.dispatch(line) {
			return
		}
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		// The rest of the line cannot be told from the next request, and
		// a client that sends such a line is broken: answer, then end
		// the connection.
		c.write(&response{JSONRPC: Version, Error: invalidRequest(fmt.Sprintf("a line longer than %d bytes", MaxLineBytes))})
	}
}

// dispatch starts the requests of one line. It returns false when the
// connection has ended while it waited for a slot.
func (c *conn) dispatch(line []byte) bool {
	reqs, batch := c.s.parse(line)
	if r := reqs[0]; !batch && r.err == nil && r.method == CancelMethod {
		// Here, not in a goroutine: a cancel must get through when every
		// slot is taken by requests waiting to be cancelled.
		if resp := c.answer(r); resp != nil {
			c.write(resp)
		}
		return true
	}
	// A batch takes a slot per request, for it holds an answer per
	// request: until its last is ready, then until the client reads them.
	// Counted as one, a client that never reads made a connection hold 64
	// times as many answers (TestPipelinedClientThatNeverReads: 18 MiB
	// for 64 batches of 4 KiB answers, 0.4 MiB for single requests).
	// Capped at half the slots, so that a batch still runs beside
	// requests that last (subscriptions).
	weight := 1
	if batch {
		weight = min(len(reqs), MaxInFlight/2)
	}
	for i := range weight {
		select {
		case c.slots <- struct{}{}:
			continue
		default:
		}
		if c.s.waitHook != nil {
			c.s.waitHook()
		}
		// Waiting, not reading, pushes back on the client through the
		// socket; dropping a request would leave a caller without answer.
		select {
		case c.slots <- struct{}{}:
		case <-c.ctx.Done():
			for range i {
				<-c.slots
			}
			return false
		}
	}
	// Registered before the next line is read: a cancel that follows its
	// request at once finds it.
	for _, r := range reqs {
		c.register(r)
	}
	c.reqs.Add(1)
	go func() {
		defer func() {
			for range weight {
				<-c.slots
			}
			c.reqs.Done()
		}()
		var out []*response
		for _, r := range reqs {
			if resp := c.answer(r); resp != nil {
				out = append(out, resp)
			}
		}
		switch {
		case len(out) == 0: // notifications only: no answer at all
		case batch:
			c.write(out)
		default:
			c.write(out[0])
		}
	}()
	return true
}

func (c *conn) register(r *request) {
	if r.err != nil || r.h == nil {
		return
	}
	if r.notify {
		r.ctx = c.ctx // no id: nothing can cancel it
		return
	}
	r.ctx, r.cancel = context.WithCancel(c.ctx)
	c.mu.Lock()
	c.running[string(r.id)] = r // a duplicate id: the latest is the one cancelled
	c.mu.Unlock()
}

func (c *conn) unregister(r *request) {
	if r.cancel == nil {
		return
	}
	c.mu.Lock()
	if c.running[string(r.id)] == r {
		delete(c.running, string(r.id))
	}
	c.mu.Unlock()
	r.cancel()
}

// answer runs r and returns its answer, or nil for a notification (never
// answered, not even with an error).
func (c *conn) answer(r *request) *response {
	var resp *response
	switch {
	case r.err != nil:
		resp = &response{JSONRPC: Version, ID: r.id, Error: r.err}
	case r.method == CancelMethod:
		resp = c.cancelRequest(r)
	default:
		result, err := r.h(r.ctx, r.params, c.notify)
		c.unregister(r)
		resp = c.s.respond(r.id, result, err)
	}
	if r.notify {
		return nil
	}
	return resp
}

func (c *conn) cancelRequest(r *request) *response {
	var p struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(r.params, &p) != nil || len(p.ID) == 0 || !validID(p.ID) {
		return &response{JSONRPC: Version, ID: r.id, Error: &Error{Code: CodeInvalidParams,
			Message: `invalid params: ` + CancelMethod + ` takes {"id": ID}`}}
	}
	c.mu.Lock()
	target := c.running[string(p.ID)]
	c.mu.Unlock()
	if target != nil {
		target.cancel()
	}
	return &response{JSONRPC: Version, ID: r.id, Result: json.RawMessage("null")}
}

// respond makes the answer to a handler's return, always one that
// encodes: a result or error data that does not is a bug of the API,
// answered as an internal error rather than not at all.
func (s *Server) respond(id json.RawMessage, result any, err error) *response {
	if err != nil {
		return &response{JSONRPC: Version, ID: id, Error: s.toError(err)}
	}
	b, err := marshalValue(result)
	if err != nil {
		return &response{JSONRPC: Version, ID: id, Error: &Error{Code: CodeInternalError,
			Message: "internal error: the result cannot be encoded: " + err.Error()}}
	}
	return &response{JSONRPC: Version, ID: id, Result: b}
}

func (s *Server) toError(err error) *Error {
	var e *Error
	if errors.As(err, &e) && e != nil {
		if len(e.Data) > 0 && !json.Valid(e.Data) {
			return &Error{Code: CodeInternalError, Message: e.Message + " (and its data is not JSON)"}
		}
		return e
	}
	code, data := CodeServerError, any(nil)
	if s.ErrorCode != nil {
		code, data = s.ErrorCode(err)
	}
	e = &Error{Code: code, Message: err.Error()}
	if data != nil {
		b, merr := marshalValue(data)
		if merr != nil {
			return &Error{Code: CodeInternalError, Message: fmt.Sprintf("%v (and its data cannot be encoded: %v)", err, merr)}
		}
		e.Data = b
	}
	return e
}

// write sends one message. A failed write means the client has gone:
// its requests end.
func (c *conn) write(v any) error {
	b, err := marshal(v)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.nc.Write(b); err != nil {
		c.cancel()
		return err
	}
	return nil
}

func (c *conn) notify(params any) error {
	b, err := marshalValue(params)
	if err != nil {
		return err
	}
	return c.write(&notification{JSONRPC: Version, Method: NotifyMethod, Params: b})
}

// parse reads a line into its requests: one, or a batch's. A line that
// is not a request or a batch at all is one request to answer with an
// error.
func (s *Server) parse(line []byte) (reqs []*request, batch bool) {
	if !json.Valid(line) {
		err := json.Unmarshal(line, new(json.RawMessage)) // for its message
		return []*request{{err: &Error{Code: CodeParseError, Message: "parse error: " + err.Error()}}}, false
	}
	if line[0] != '[' {
		return []*request{s.parseRequest(line)}, false
	}
	var items []json.RawMessage
	json.Unmarshal(line, &items) // valid JSON: cannot fail
	switch {
	case len(items) == 0:
		return []*request{{err: invalidRequest("empty batch")}}, false
	case len(items) > MaxBatchLen:
		return []*request{{err: invalidRequest(fmt.Sprintf("a batch of %d requests; at most %d", len(items), MaxBatchLen))}}, false
	}
	for _, it := range items {
		reqs = append(reqs, s.parseRequest(it))
	}
	return reqs, true
}

// parseRequest reads one valid JSON value as a request. Members are
// matched by their exact names (encoding/json would match "ID" too).
func (s *Server) parseRequest(raw json.RawMessage) *request {
	if raw[0] != '{' {
		return &request{err: invalidRequest("not a request object")}
	}
	var m map[string]json.RawMessage
	json.Unmarshal(raw, &m) // a valid object: cannot fail
	id, hasID := m["id"]
	if hasID && !validID(id) {
		return &request{err: invalidRequest("id must be a string, a number or null")}
	}
	r := &request{id: id, notify: !hasID}
	var version string
	if json.Unmarshal(m["jsonrpc"], &version) != nil || version != Version {
		r.err = invalidRequest(`"jsonrpc" must be "2.0"`)
		return r
	}
	rawMethod := m["method"]
	if len(rawMethod) == 0 || string(rawMethod) == "null" || string(rawMethod) == `""` {
		r.err = invalidRequest(`no "method"`)
		return r
	}
	if json.Unmarshal(rawMethod, &r.method) != nil {
		r.err = invalidRequest(`"method" must be a string`)
		return r
	}
	r.params = m["params"]
	if r.method == CancelMethod {
		return r
	}
	if r.h = s.methods[r.method]; r.h == nil {
		r.err = &Error{Code: CodeMethodNotFound, Message: "method not found: " + r.method}
	}
	return r
}

func invalidRequest(msg string) *Error {
	return &Error{Code: CodeInvalidRequest, Message: "invalid request: " + msg}
}

// validID reports whether a value read from valid JSON is a string, a
// number or null.
func validID(id json.RawMessage) bool {
	switch c := id[0]; {
	case c == '"', c == 'n', c == '-', '0' <= c && c <= '9':
		return true
	}
	return false
}
