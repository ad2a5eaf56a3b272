package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// JSON-RPC 2.0 over the daemon's UNIX socket, one JSON object per line
// (as signal-cli's socket mode). The method "subscribe" turns the
// connection into a stream of "event" notifications.

const socketName = "p2pmsg.sock"

type rpcRequest struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"` // absent: a notification
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	// Data carries the CLI exit code that the error maps to.
	Data *rpcErrorData `json:"data,omitempty"`
}

type rpcErrorData struct {
	Exit   int             `json:"exit"`
	Result json.RawMessage `json:"result,omitempty"` // what there is despite the error (send --wait: the message's id and state)
}

// resultError is an error that carries a result for the client anyway.
type resultError struct {
	result any
	err    error
}

func (e *resultError) Error() string { return e.err.Error() }
func (e *resultError) Unwrap() error { return e.err }

func withResult(result any, err error) error { return &resultError{result, err} }

// rpcID is a response's id: always present, null when the request's
// could not be read.
type rpcID json.RawMessage

func (id rpcID) MarshalJSON() ([]byte, error) {
	if len(id) == 0 {
		return []byte("null"), nil
	}
	return id, nil
}

type rpcSuccess struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      rpcID           `json:"id"`
	Result  json.RawMessage `json:"result"`
}

type rpcFailure struct {
	JSONRPC string    `json:"jsonrpc"`
	ID      rpcID     `json:"id"`
	Error   *rpcError `json:"error"`
}

type rpcNotification struct {
	JSONRPC string          `json:"jsonrpc"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// rpcResponse is what a client reads: a response or a notification.
type rpcResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"` // notifications
	Params  json.RawMessage `json:"params,omitempty"` // notifications
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

// Standard JSON-RPC error codes, and ours (application errors are 1..99,
// the CLI's exit codes).
const (
	rpcParseError     = -32700
	rpcInvalidRequest = -32600
	rpcMethodNotFound = -32601
	rpcInvalidParams  = -32602
)

// handler answers one method; stream is set for "subscribe", which
// writes notifications until ctx ends.
type handler func(ctx context.Context, params json.RawMessage, notify func(any) error) (any, error)

type rpcServer struct {
	ln      net.Listener
	methods map[string]handler
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
}

// listenSocket listens on DIR/p2pmsg.sock, mode 0600. The caller holds
// the store's lock, so a socket file already there is a dead daemon's.
func listenSocket(dir string) (net.Listener, error) {
	path := filepath.Join(dir, socketName)
	if len(path) >= 104 {
		return nil, fmt.Errorf("socket path %s is too long for a UNIX socket (%d bytes); use a shorter --data", path, len(path))
	}
	os.Remove(path)
	old := syscall.Umask(0o177) // the socket is created 0600, no window
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	return ln, nil
}

func newRPCServer(ln net.Listener, methods map[string]handler) *rpcServer {
	ctx, cancel := context.WithCancel(context.Background())
	s := &rpcServer{ln: ln, methods: methods, ctx: ctx, cancel: cancel}
	s.wg.Add(1) // the accept loop, so that close waits for every connection
	return s
}

func (s *rpcServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
		}()
	}
}

func (s *rpcServer) close() {
	s.cancel()
	s.ln.Close()
	s.wg.Wait()
}

// serveConn serves one client. A reader goroutine ends the connection's
// context when the client goes, which ends its subscriptions and waits;
// each request runs in its own goroutine, so a subscribed connection
// still takes requests (answers may come out of order, as JSON-RPC
// allows: the ids match them).
func (s *rpcServer) serveConn(c net.Conn) {
	ctx, cancel := context.WithCancel(s.ctx)
	var reqs sync.WaitGroup
	defer func() {
		cancel()
		reqs.Wait()
		c.Close()
	}()
	var wmu sync.Mutex
	enc := json.NewEncoder(c)
	write := func(v any) error {
		wmu.Lock()
		defer wmu.Unlock()
		return enc.Encode(v)
	}
	notify := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return write(rpcNotification{JSONRPC: "2.0", Method: "event", Params: b})
	}
	go func() { <-ctx.Done(); c.SetReadDeadline(time.Now()) }() // unblocks the scanner at shutdown
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		line = bytes.Clone(line)
		reqs.Add(1)
		go func() {
			defer reqs.Done()
			if line[0] == '[' {
				s.serveBatch(ctx, line, write, notify)
				return
			}
			if resp := s.handle(ctx, line, notify, false); resp != nil {
				write(resp)
			}
		}()
	}
}

func (s *rpcServer) serveBatch(ctx context.Context, line []byte, write func(any) error, notify func(any) error) {
	var items []json.RawMessage
	if err := json.Unmarshal(line, &items); err != nil {
		write(rpcFailure{JSONRPC: "2.0", Error: &rpcError{Code: rpcParseError, Message: "parse error: " + err.Error()}})
		return
	}
	if len(items) == 0 {
		write(rpcFailure{JSONRPC: "2.0", Error: &rpcError{Code: rpcInvalidRequest, Message: "invalid request: empty batch"}})
		return
	}
	var out []any
	for _, it := range items {
		if resp := s.handle(ctx, it, notify, true); resp != nil {
			out = append(out, resp)
		}
	}
	if len(out) > 0 { // a batch of notifications gets no answer
		write(out)
	}
}

// handle runs one request and returns its response, or nil for a
// notification (which is never answered, not even with an error).
func (s *rpcServer) handle(ctx context.Context, raw []byte, notify func(any) error, inBatch bool) any {
	var req rpcRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		code, msg := rpcParseError, "parse error: "
		if inBatch || json.Valid(raw) {
			code, msg = rpcInvalidRequest, "invalid request: "
		}
		return rpcFailure{JSONRPC: "2.0", Error: &rpcError{Code: code, Message: msg + err.Error()}}
	}
	fail := func(code int, msg string) any {
		return rpcFailure{JSONRPC: "2.0", ID: rpcID(req.ID), Error: &rpcError{Code: code, Message: msg}}
	}
	if len(req.ID) > 0 && !validID(req.ID) {
		return rpcFailure{JSONRPC: "2.0", Error: &rpcError{Code: rpcInvalidRequest, Message: "invalid request: id must be a string, a number or null"}}
	}
	isNotification := len(req.ID) == 0
	var resp any
	h, ok := s.methods[req.Method]
	switch {
	case req.JSONRPC != "2.0":
		resp = fail(rpcInvalidRequest, `invalid request: "jsonrpc" must be "2.0"`)
	case req.Method == "":
		resp = fail(rpcInvalidRequest, `invalid request: no "method"`)
	case !ok:
		resp = fail(rpcMethodNotFound, "method not found: "+req.Method)
	default:
		result, err := h(ctx, req.Params, notify)
		var b []byte
		if err == nil {
			b, err = json.Marshal(result)
		}
		if err != nil {
			resp = rpcFailure{JSONRPC: "2.0", ID: rpcID(req.ID), Error: toRPCError(err)}
		} else {
			resp = rpcSuccess{JSONRPC: "2.0", ID: rpcID(req.ID), Result: b}
		}
	}
	if isNotification {
		return nil
	}
	return resp
}

func validID(id json.RawMessage) bool {
	switch id[0] {
	case '"', 'n':
		return true
	}
	var f float64
	return json.Unmarshal(id, &f) == nil
}

func toRPCError(err error) *rpcError {
	e := toRPCErrorCode(err)
	var re *resultError
	if errors.As(err, &re) {
		if b, merr := json.Marshal(re.result); merr == nil {
			e.Data.Result = b
		}
	}
	return e
}

func toRPCErrorCode(err error) *rpcError {
	var ce *cliError
	if errors.As(err, &ce) {
		code := ce.code
		if code == exitUsage {
			return &rpcError{Code: rpcInvalidParams, Message: err.Error(), Data: &rpcErrorData{Exit: code}}
		}
		return &rpcError{Code: code, Message: err.Error(), Data: &rpcErrorData{Exit: code}}
	}
	return &rpcError{Code: exitError, Message: err.Error(), Data: &rpcErrorData{Exit: exitError}}
}

// rpcClient is a CLI verb's connection to the daemon.
type rpcClient struct {
	c    net.Conn
	sc   *bufio.Scanner
	enc  *json.Encoder
	next int
}

// dial connects to the daemon of the data directory.
func dial(dir string) (*rpcClient, error) {
	path := filepath.Join(dir, socketName)
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, fail(exitNoDaemon, "no daemon runs on %s (%v): start one with `p2pmsg --data %s daemon`", dir, errors.Unwrap(err), dir)
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	return &rpcClient{c: c, sc: sc, enc: json.NewEncoder(c)}, nil
}

func (c *rpcClient) close() { c.c.Close() }

// call makes one request on a connection of its own (the chat screen's
// requests run concurrently; a verb makes one).
func call(dir, method string, params, out any) error {
	c, err := dial(dir)
	if err != nil {
		return err
	}
	defer c.close()
	return c.call(method, params, out)
}

// call sends a request and decodes its result into out; an error answer
// becomes a cliError with the exit code the daemon gave.
func (c *rpcClient) call(method string, params, out any) error {
	c.next++
	raw, err := json.Marshal(params)
	if err != nil {
		return err
	}
	id := json.RawMessage(fmt.Sprint(c.next))
	if err := c.enc.Encode(rpcRequest{JSONRPC: "2.0", ID: id, Method: method, Params: raw}); err != nil {
		return fail(exitNoDaemon, "the daemon went away: %v", err)
	}
	for {
		resp, err := c.read()
		if err != nil {
			return err
		}
		if resp.Method != "" {
			continue // a notification of an earlier subscription
		}
		if resp.Error != nil {
			code := exitError
			if resp.Error.Data != nil {
				code = resp.Error.Data.Exit
				if len(resp.Error.Data.Result) > 0 && out != nil {
					json.Unmarshal(resp.Error.Data.Result, out)
				}
			}
			return &cliError{code: code, err: errors.New(resp.Error.Message)}
		}
		if out != nil {
			return json.Unmarshal(resp.Result, out)
		}
		return nil
	}
}

func (c *rpcClient) read() (rpcResponse, error) {
	var resp rpcResponse
	if !c.sc.Scan() {
		err := c.sc.Err()
		if err == nil {
			err = errors.New("connection closed")
		}
		return resp, fail(exitNoDaemon, "the daemon went away: %v", err)
	}
	if err := json.Unmarshal(c.sc.Bytes(), &resp); err != nil {
		return resp, fmt.Errorf("bad answer from the daemon: %v", err)
	}
	return resp, nil
}
