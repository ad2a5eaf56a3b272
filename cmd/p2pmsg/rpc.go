package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// JSON-RPC 2.0 over the daemon's UNIX socket, one JSON object per line
// (as signal-cli's socket mode). The method "subscribe" turns the
// connection into a stream of "event" notifications.

const socketName = "p2pmsg.sock"

type rpcRequest struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
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
	Exit int `json:"exit"`
}

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
	return &rpcServer{ln: ln, methods: methods, ctx: ctx, cancel: cancel}
}

func (s *rpcServer) serve() {
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

func (s *rpcServer) serveConn(c net.Conn) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	go func() { <-ctx.Done(); c.Close() }()
	var wmu sync.Mutex
	enc := json.NewEncoder(c)
	write := func(v any) error {
		wmu.Lock()
		defer wmu.Unlock()
		return enc.Encode(v)
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var req rpcRequest
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			write(rpcResponse{JSONRPC: "2.0", Error: &rpcError{Code: rpcParseError, Message: "parse error: " + err.Error()}})
			continue
		}
		resp := rpcResponse{JSONRPC: "2.0", ID: req.ID}
		h, ok := s.methods[req.Method]
		switch {
		case req.JSONRPC != "2.0":
			resp.Error = &rpcError{Code: rpcInvalidRequest, Message: `invalid request: "jsonrpc" must be "2.0"`}
		case !ok:
			resp.Error = &rpcError{Code: rpcMethodNotFound, Message: "method not found: " + req.Method}
		default:
			notify := func(v any) error {
				b, err := json.Marshal(v)
				if err != nil {
					return err
				}
				return write(rpcResponse{JSONRPC: "2.0", Method: "event", Params: b})
			}
			result, err := h(ctx, req.Params, notify)
			if err != nil {
				resp.Error = toRPCError(err)
			} else if resp.Result, err = json.Marshal(result); err != nil {
				resp.Error = toRPCError(err)
			}
		}
		if req.ID == nil && resp.Error == nil {
			continue // a notification from the client: no answer
		}
		if write(resp) != nil {
			return
		}
	}
}

func toRPCError(err error) *rpcError {
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
