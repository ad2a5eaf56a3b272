package jsonrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The server against JSON-RPC 2.0: batches, notifications never
// answered, "id": null when the request's is unreadable, invalid ids and
// requests, and a subscription that ends when its client goes. The cases
// of cmd/p2pmsg's TestRPCConformance, as they were.
func TestConformance(t *testing.T) {
	ended := make(chan struct{})
	srv := NewServer()
	srv.Handle("echo", echo)
	srv.Handle("subscribe", func(ctx context.Context, _ json.RawMessage, notify func(any) error) (any, error) {
		notify("first")
		<-ctx.Done()
		close(ended)
		return nil, ctx.Err()
	})
	path := start(t, srv)

	c := dialRaw(t, path)
	cases := []struct{ req, want string }{
		{`{"jsonrpc":"2.0","id":1,"method":"echo","params":[1]}`, `{"jsonrpc":"2.0","id":1,"result":[1]}`},
		{`{"jsonrpc":"2.0","id":"a","method":"echo"}`, `{"jsonrpc":"2.0","id":"a","result":null}`},
		{`{not json`, `"id":null,"error":{"code":-32700`},
		{`{"jsonrpc":"2.0","id":{"x":1},"method":"echo"}`, `"id":null,"error":{"code":-32600`},
		{`{"jsonrpc":"2.0","id":2}`, `"id":2,"error":{"code":-32600`},
		{`{"jsonrpc":"1.0","id":3,"method":"echo"}`, `"id":3,"error":{"code":-32600`},
		{`{"jsonrpc":"2.0","id":4,"method":"nope"}`, `"id":4,"error":{"code":-32601`},
		{`[]`, `"id":null,"error":{"code":-32600`},
		{`[{"jsonrpc":"2.0","id":5,"method":"echo"},{"jsonrpc":"2.0","method":"echo"},{"jsonrpc":"2.0","id":6,"method":"nope"}]`,
			`[{"jsonrpc":"2.0","id":5,"result":null},{"jsonrpc":"2.0","id":6,"error":{"code":-32601`},
	}
	for _, tc := range cases {
		if got := c.ask(tc.req); !strings.Contains(got, tc.want) {
			t.Errorf("%s\n got %s\nwant %s", tc.req, got, tc.want)
		}
	}
	// Notifications, even of unknown methods, get no answer: the next
	// line read answers the request after them.
	c.send(`{"jsonrpc":"2.0","method":"nope"}` + "\n" + `[{"jsonrpc":"2.0","method":"echo"}]`)
	if got := c.ask(`{"jsonrpc":"2.0","id":7,"method":"echo"}`); !strings.Contains(got, `"id":7`) {
		t.Errorf("a notification was answered: %s", got)
	}

	// A subscriber that goes away ends its subscription.
	s := dialRaw(t, path)
	if got := s.ask(`{"jsonrpc":"2.0","id":1,"method":"subscribe"}`); !strings.Contains(got, `"method":"event","params":"first"`) {
		t.Fatalf("notification: %q", got)
	}
	s.c.Close()
	wait(t, ended, "the subscription to end with its client")
}

// What the package adds to, or makes precise in, the behaviour above.
func TestProtocol(t *testing.T) {
	block := make(chan struct{})
	started := make(chan struct{}, 1)
	cancelled := make(chan struct{})
	srv := NewServer()
	srv.Handle("echo", echo)
	srv.Handle("html", func(context.Context, json.RawMessage, func(any) error) (any, error) { return "<a&b>", nil })
	srv.Handle("block", func(ctx context.Context, _ json.RawMessage, _ func(any) error) (any, error) {
		started <- struct{}{}
		select {
		case <-ctx.Done():
			close(cancelled)
		case <-block:
		}
		return nil, ctx.Err()
	})
	path := start(t, srv)
	c := dialRaw(t, path)

	batch := make([]string, MaxBatchLen+1)
	for i := range batch {
		batch[i] = fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"echo"}`, i)
	}
	cases := []struct{ req, want string }{
		{`  {"jsonrpc":"2.0","id":1,"method":"echo","params":{"a":1}}  `, `{"jsonrpc":"2.0","id":1,"result":{"a":1}}`},
		{`{"jsonrpc":"2.0","id":null,"method":"echo"}`, `{"jsonrpc":"2.0","id":null,"result":null}`},
		{`{"jsonrpc":"2.0","id":-1.5e3,"method":"echo"}`, `{"jsonrpc":"2.0","id":-1.5e3,"result":null}`},
		{`{"jsonrpc":"2.0","id":true,"method":"echo"}`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600`},
		{`{"jsonrpc":"2.0","id":8,"method":5}`, `{"jsonrpc":"2.0","id":8,"error":{"code":-32600`},
		{`{"jsonrpc":"2.0","id":9,"method":""}`, `{"jsonrpc":"2.0","id":9,"error":{"code":-32600`},
		{`{"jsonrpc":"2.0","ID":10,"Method":"echo"}`, ``}, // members match by exact name: a notification, so unanswered; see below
		{`{"id":11,"method":"echo"}`, `{"jsonrpc":"2.0","id":11,"error":{"code":-32600`},
		{`null`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600`},
		{`"x"`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600`},
		{`{"jsonrpc":"2.0","id":1} {}`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700`},
		{`[1,{"jsonrpc":"2.0","id":12,"method":"echo"}]`, `[{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: not a request object"}},{"jsonrpc":"2.0","id":12,"result":null}]`},
		{`[` + strings.Join(batch, ",") + `]`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600`},
		{`[` + strings.Join(batch[:MaxBatchLen], ",") + `]`, `{"jsonrpc":"2.0","id":63,"result":null}]`},
		{`{"jsonrpc":"2.0","id":13,"method":"rpc.cancel","params":{"id":999}}`, `{"jsonrpc":"2.0","id":13,"result":null}`},
		{`{"jsonrpc":"2.0","id":14,"method":"rpc.cancel"}`, `{"jsonrpc":"2.0","id":14,"error":{"code":-32602`},
		{`{"jsonrpc":"2.0","id":15,"method":"rpc.other"}`, `{"jsonrpc":"2.0","id":15,"error":{"code":-32601`},
		{`{"jsonrpc":"2.0","id":16,"method":"html"}`, `{"jsonrpc":"2.0","id":16,"result":"<a&b>"}`},
	}
	for _, tc := range cases {
		if tc.want == "" {
			c.send(tc.req)
			continue
		}
		if got := c.ask(tc.req); !strings.Contains(got, tc.want) {
			t.Errorf("%.200s\n got %.200s\nwant %s", tc.req, got, tc.want)
		}
	}

	// rpc.cancel, as a notification, ends the request with that id; its
	// handler's answer still comes.
	c.send(`{"jsonrpc":"2.0","id":"b","method":"block"}`)
	wait(t, started, "block to start")
	c.send(`{"jsonrpc":"2.0","method":"rpc.cancel","params":{"id":"b"}}`)
	wait(t, cancelled, "block's context to end")
	if got := c.recv(); !strings.Contains(got, `"id":"b","error":{"code":-32000,"message":"context canceled"`) {
		t.Errorf("cancelled: %s", got)
	}
	close(block)
}

// apiError is how an API might mark its errors: an exit code, and a
// result that exists despite the error.
type apiError struct {
	exit   int
	result any
	err    error
}

func (e *apiError) Error() string { return e.err.Error() }

// The error answers: an *Error as it is, anything else through
// ErrorCode, and what cannot be encoded as an internal error.
func TestErrors(t *testing.T) {
	srv := NewServer()
	srv.ErrorCode = func(err error) (int, any) {
		data := map[string]any{"exit": 1}
		var ae *apiError
		if errors.As(err, &ae) {
			data["exit"] = ae.exit
			if ae.result != nil {
				data["result"] = ae.result
			}
			return ae.exit, data
		}
		if errors.Is(err, errBadData) {
			return 1, make(chan int)
		}
		return 1, data
	}
	srv.Handle("typed", func(context.Context, json.RawMessage, func(any) error) (any, error) {
		return nil, fmt.Errorf("wrapped: %w", &Error{Code: 42, Message: "typed", Data: json.RawMessage(`{"k":1}`)})
	})
	srv.Handle("params", func(_ context.Context, p json.RawMessage, _ func(any) error) (any, error) {
		var v struct{ N int }
		if err := json.Unmarshal(p, &v); err != nil {
			return nil, &Error{Code: CodeInvalidParams, Message: "invalid params: " + err.Error()}
		}
		return v.N, nil
	})
	srv.Handle("plain", func(context.Context, json.RawMessage, func(any) error) (any, error) {
		return nil, errors.New("boom")
	})
	srv.Handle("timeout", func(context.Context, json.RawMessage, func(any) error) (any, error) {
		res := map[string]string{"id": "9f2c", "state": "queued"}
		return res, &apiError{exit: 5, result: res, err: errors.New("message 9f2c not delivered")}
	})
	srv.Handle("badresult", func(context.Context, json.RawMessage, func(any) error) (any, error) { return make(chan int), nil })
	srv.Handle("baddata", func(context.Context, json.RawMessage, func(any) error) (any, error) { return nil, errBadData })
	srv.Handle("badtyped", func(context.Context, json.RawMessage, func(any) error) (any, error) {
		return nil, &Error{Code: 3, Message: "m", Data: json.RawMessage("{")}
	})
	c := dial(t, start(t, srv))

	cases := []struct {
		method string
		params any
		code   int
		msg    string
		data   string
	}{
		{"typed", nil, 42, "typed", `{"k":1}`},
		{"params", "x", CodeInvalidParams, "invalid params: json: cannot unmarshal", ``},
		{"plain", nil, 1, "boom", `{"exit":1}`},
		{"timeout", nil, 5, "message 9f2c not delivered", `{"exit":5,"result":{"id":"9f2c","state":"queued"}}`},
		{"badresult", nil, CodeInternalError, "internal error: the result cannot be encoded", ``},
		{"baddata", nil, CodeInternalError, "bad data (and its data cannot be encoded", ``},
		{"badtyped", nil, CodeInternalError, "m (and its data is not JSON)", ``},
		{"nope", nil, CodeMethodNotFound, "method not found: nope", ``},
	}
	for _, tc := range cases {
		err := c.Call(context.Background(), tc.method, tc.params, nil)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: %v, want an *Error", tc.method, err)
			continue
		}
		if e.Code != tc.code || !strings.HasPrefix(e.Message, tc.msg) || string(e.Data) != tc.data {
			t.Errorf("%s: %d %q %s\nwant %d %q %s", tc.method, e.Code, e.Message, e.Data, tc.code, tc.msg, tc.data)
		}
	}
	var n int
	if err := c.Call(context.Background(), "params", map[string]int{"N": 3}, &n); err != nil || n != 3 {
		t.Errorf("params: %d, %v", n, err)
	}

	// Without ErrorCode: CodeServerError, no data.
	srv2 := NewServer()
	srv2.Handle("plain", func(context.Context, json.RawMessage, func(any) error) (any, error) { return nil, errors.New("boom") })
	err := dial(t, start(t, srv2)).Call(context.Background(), "plain", nil, nil)
	if e, ok := err.(*Error); !ok || e.Code != CodeServerError || e.Message != "boom" || e.Data != nil {
		t.Errorf("without ErrorCode: %#v", err)
	}
}

var errBadData = errors.New("bad data")

// A line over MaxLineBytes is answered -32600 and ends its connection;
// one of exactly MaxLineBytes is served; other connections go on.
func TestLineTooLong(t *testing.T) {
	srv := NewServer()
	srv.Handle("echo", echo)
	path := start(t, srv)
	other := dialRaw(t, path)

	// A request of exactly MaxLineBytes, padded inside its params.
	head, tail := `{"jsonrpc":"2.0","id":1,"method":"echo","params":"`, `"}`
	exact := head + strings.Repeat("x", MaxLineBytes-len(head)-len(tail)) + tail
	c := dialRaw(t, path)
	if got := c.ask(exact); !strings.HasPrefix(got, `{"jsonrpc":"2.0","id":1,"result":"xxx`) {
		t.Errorf("a line of MaxLineBytes: %.100s", got)
	}

	long := dialRaw(t, path)
	written := make(chan error, 1)
	go func() {
		// The server stops reading midway: this write may fail.
		_, err := long.c.Write([]byte(strings.Repeat(" ", MaxLineBytes+1) + "\n"))
		written <- err
	}()
	if got := long.recv(); got != `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: a line longer than 1048576 bytes"}}` {
		t.Errorf("too long: %s", got)
	}
	if _, err := long.r.ReadString('\n'); err == nil {
		t.Error("the connection goes on after a line too long")
	}
	wait(t, written, "the long write to end")

	if got := other.ask(`{"jsonrpc":"2.0","id":2,"method":"echo"}`); got != `{"jsonrpc":"2.0","id":2,"result":null}` {
		t.Errorf("another connection: %s", got)
	}

	// The Client does not send such a request, and goes on.
	cl := dial(t, path)
	err := cl.Call(context.Background(), "echo", strings.Repeat("x", MaxLineBytes), nil)
	if err == nil || errors.Is(err, ErrClosed) {
		t.Errorf("Call with a request too long: %v", err)
	}
	if err := cl.Call(context.Background(), "echo", 1, nil); err != nil {
		t.Errorf("after a request too long: %v", err)
	}
}

// No more than MaxInFlight requests of a connection run at once; beyond
// it the server stops reading, and serves the rest when slots free.
func TestInFlightLimit(t *testing.T) {
	var running, most atomic.Int32
	started := make(chan struct{}, 2*MaxInFlight)
	waiting := make(chan struct{}, 1)
	release := make(chan struct{})
	srv := NewServer()
	srv.waitHook = func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
	}
	srv.Handle("hold", func(ctx context.Context, _ json.RawMessage, _ func(any) error) (any, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	})
	c := dialRaw(t, start(t, srv))

	const extra = 8
	var lines strings.Builder
	for i := range MaxInFlight + extra {
		fmt.Fprintf(&lines, `{"jsonrpc":"2.0","id":%d,"method":"hold"}`+"\n", i)
	}
	c.send(strings.TrimSuffix(lines.String(), "\n"))
	for range MaxInFlight {
		wait(t, started, "a request to start")
	}
	wait(t, waiting, "the reader to wait for a slot")
	if n := running.Load(); n != MaxInFlight {
		t.Errorf("%d requests running, want %d", n, MaxInFlight)
	}
	close(release)
	seen := map[string]bool{}
	for range MaxInFlight + extra {
		var r struct{ ID json.RawMessage }
		if err := json.Unmarshal([]byte(c.recv()), &r); err != nil {
			t.Fatal(err)
		}
		seen[string(r.ID)] = true
	}
	if len(seen) != MaxInFlight+extra {
		t.Errorf("%d distinct answers, want %d", len(seen), MaxInFlight+extra)
	}
	if m := most.Load(); m != MaxInFlight {
		t.Errorf("at most %d ran at once, want %d", m, MaxInFlight)
	}
}

// Beyond MaxConns a connection is told why and closed; once one goes, a
// new one is served.
func TestMaxConns(t *testing.T) {
	srv := NewServer()
	srv.Handle("echo", echo)
	path := start(t, srv)
	conns := make([]*raw, MaxConns)
	for i := range conns {
		conns[i] = dialRaw(t, path)
		if got := conns[i].ask(`{"jsonrpc":"2.0","id":1,"method":"echo"}`); got != `{"jsonrpc":"2.0","id":1,"result":null}` {
			t.Fatalf("connection %d: %s", i, got)
		}
	}

	over := dialRaw(t, path)
	if got := over.recv(); got != `{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"too many connections: at most 64 at once"}}` {
		t.Errorf("over the limit: %s", got)
	}
	if _, err := over.r.ReadString('\n'); err == nil {
		t.Error("a connection over the limit stays open")
	}

	cl := dial(t, path)
	err := cl.Call(context.Background(), "echo", nil, nil)
	var e *Error
	if !errors.Is(err, ErrClosed) || !errors.As(err, &e) || e.Code != CodeServerError {
		t.Errorf("a Client over the limit: %v", err)
	}

	// The slot frees once the server has seen the client go, which the
	// client cannot observe: try until then (each try is a round trip).
	conns[0].c.Close()
	for deadline := time.Now().Add(failsafe); ; {
		if time.Now().After(deadline) {
			t.Fatal("no connection served after one went")
		}
		c, err := Dial(path)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), failsafe)
		err = c.Call(ctx, "echo", nil, nil)
		cancel()
		c.Close()
		if err == nil {
			break
		}
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("after a connection went: %v", err)
		}
	}
}

// Close returns with clients connected, whatever they are doing, and
// leaves no goroutine behind.
func TestCloseWithClients(t *testing.T) {
	defer goleak.VerifyNone(t)
	srv := NewServer()
	srv.Handle("echo", echo)
	blocked := make(chan struct{}, 1)
	srv.Handle("block", func(ctx context.Context, _ json.RawMessage, _ func(any) error) (any, error) {
		blocked <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	flooding := make(chan struct{}, 1)
	srv.Handle("flood", func(ctx context.Context, _ json.RawMessage, notify func(any) error) (any, error) {
		big := strings.Repeat("x", 64<<10)
		for i := 0; ctx.Err() == nil; i++ {
			if i == 2 { // the next ones fill the socket: the client does not read
				flooding <- struct{}{}
			}
			if err := notify(big); err != nil {
				return nil, err
			}
		}
		return nil, ctx.Err()
	})
	path := filepathJoinTemp(t)
	ln := listen(t, path)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	idle := dialRaw(t, path)
	flood := dialRaw(t, path)
	flood.send(`{"jsonrpc":"2.0","id":1,"method":"flood"}`)
	wait(t, flooding, "the flood to start")
	cl, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	called := make(chan error, 1)
	go func() { called <- cl.Call(context.Background(), "block", nil, nil) }()
	wait(t, blocked, "block to start")
	half := dialRaw(t, path)
	half.send(`{"jsonrpc":"2.0","id":1,"method":"ech`) // half a line

	srv.Close()
	if err := wait(t, served, "Serve to return"); err != nil {
		t.Errorf("Serve: %v", err)
	}
	// The handler's answer may be written before the connection is cut.
	var e *Error
	if err := wait(t, called, "the call to end"); !errors.Is(err, ErrClosed) && !errors.As(err, &e) {
		t.Errorf("a call when the server closes: %v", err)
	}
	if err := srv.Serve(listen(t, filepathJoinTemp(t))); err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
	cl.Close()
	for _, r := range []*raw{idle, flood, half} {
		r.c.Close()
	}
}

func TestHandleRules(t *testing.T) {
	for name, f := range map[string]func(*Server){
		"reserved": func(s *Server) { s.Handle("rpc.cancel", echo) },
		"twice":    func(s *Server) { s.Handle("echo", echo) },
		"nameless": func(s *Server) { s.Handle("", echo) },
		"nil":      func(s *Server) { s.Handle("x", nil) },
		"serving": func(s *Server) {
			ln := listen(t, filepathJoinTemp(t))
			ln.Close()
			s.Serve(ln) // returns at once, but has started
			s.Handle("late", echo)
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := NewServer()
			s.Handle("echo", echo)
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
				s.Close()
			}()
			f(s)
		})
	}
}
