package jsonrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
)

// Calls from several goroutines on one Client each get their own answer,
// even when the answers come in another order than the requests.
func TestConcurrentCalls(t *testing.T) {
	var mu sync.Mutex
	held := map[int]chan struct{}{}
	started := make(chan int)
	srv := NewServer()
	srv.Handle("echo", echo)
	srv.Handle("hold", func(ctx context.Context, p json.RawMessage, _ func(any) error) (any, error) {
		var k int
		json.Unmarshal(p, &k)
		ch := make(chan struct{})
		mu.Lock()
		held[k] = ch
		mu.Unlock()
		started <- k
		<-ch
		return k * 10, nil
	})
	c := dial(t, start(t, srv))

	const goroutines, calls = 8, 100
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range calls {
				want := fmt.Sprintf("%d/%d", g, i)
				var got string
				if err := c.Call(context.Background(), "echo", want, &got); err != nil || got != want {
					t.Errorf("echo %s: %q, %v", want, got, err)
					return
				}
			}
		})
	}
	wg.Wait()

	// Answers in the reverse order of the calls.
	const n = 10
	errs := make(chan error, n)
	for k := range n {
		go func() {
			var got int
			err := c.Call(context.Background(), "hold", k, &got)
			if err == nil && got != k*10 {
				err = fmt.Errorf("hold %d: got %d", k, got)
			}
			errs <- err
		}()
	}
	for range n {
		wait(t, started, "hold to start")
	}
	for k := n - 1; k >= 0; k-- {
		mu.Lock()
		close(held[k])
		mu.Unlock()
		if err := wait(t, errs, "hold to answer"); err != nil {
			t.Error(err)
		}
	}
}

// A Client calls while its subscription streams, and the subscription
// loses nothing and keeps its order.
func TestCallDuringSubscription(t *testing.T) {
	proceed := make(chan struct{})
	const flood = 1000
	srv := NewServer()
	srv.Handle("echo", echo)
	srv.Handle("subscribe", func(ctx context.Context, _ json.RawMessage, notify func(any) error) (any, error) {
		notify(-1)
		select {
		case <-proceed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		for i := range flood {
			if err := notify(i); err != nil {
				return nil, err
			}
		}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	c := dial(t, start(t, srv))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub, err := c.Subscribe(ctx, "subscribe", nil)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := sub.Next(); err != nil || string(p) != "-1" {
		t.Fatalf("first: %s, %v", p, err)
	}
	// The subscription's handler is running and waits: a call still
	// gets its answer.
	var got string
	if err := c.Call(ctx, "echo", "during", &got); err != nil || got != "during" {
		t.Fatalf("call during a subscription: %q, %v", got, err)
	}
	close(proceed)

	// Calls while the flood comes, more than the client buffers.
	calls := make(chan error, 1)
	go func() {
		for i := range 50 {
			var got int
			if err := c.Call(ctx, "echo", i, &got); err != nil || got != i {
				calls <- fmt.Errorf("echo %d: %d, %v", i, got, err)
				return
			}
		}
		calls <- nil
	}()
	for i := range flood {
		p, err := sub.Next()
		if err != nil || string(p) != fmt.Sprint(i) {
			t.Fatalf("notification %d: %s, %v", i, p, err)
		}
	}
	if err := wait(t, calls, "the calls"); err != nil {
		t.Error(err)
	}
}

// A subscription reports its end, whichever way it ends.
func TestSubscriptionEnds(t *testing.T) {
	ended := make(chan error, 1)
	newServer := func() *Server {
		srv := NewServer()
		srv.Handle("echo", echo)
		srv.Handle("three", func(_ context.Context, p json.RawMessage, notify func(any) error) (any, error) {
			for i := range 3 {
				notify(i)
			}
			if string(p) == `"fail"` {
				return nil, &Error{Code: 9, Message: "done"}
			}
			return "ok", nil
		})
		srv.Handle("forever", func(ctx context.Context, _ json.RawMessage, notify func(any) error) (any, error) {
			notify("first")
			<-ctx.Done()
			ended <- ctx.Err()
			return nil, ctx.Err()
		})
		return srv
	}
	next := func(t *testing.T, sub *Subscription, want string) {
		t.Helper()
		if p, err := sub.Next(); err != nil || string(p) != want {
			t.Fatalf("Next: %s, %v; want %s", p, err, want)
		}
	}

	t.Run("answer", func(t *testing.T) {
		c := dial(t, start(t, newServer()))
		for _, tc := range []struct {
			params string
			end    func(error) bool
		}{
			{"fail", func(err error) bool { e, ok := err.(*Error); return ok && e.Code == 9 }},
			{"ok", func(err error) bool { return err == io.EOF }},
		} {
			sub, err := c.Subscribe(context.Background(), "three", tc.params)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				next(t, sub, fmt.Sprint(i))
			}
			if _, err := sub.Next(); !tc.end(err) {
				t.Errorf("%s: the end: %v", tc.params, err)
			}
		}
	})

	t.Run("unknown", func(t *testing.T) {
		c := dial(t, start(t, newServer()))
		sub, err := c.Subscribe(context.Background(), "nope", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sub.Next(); err == nil || err.(*Error).Code != CodeMethodNotFound {
			t.Errorf("unknown method: %v", err)
		}
	})

	t.Run("ctx", func(t *testing.T) {
		c := dial(t, start(t, newServer()))
		ctx, cancel := context.WithCancel(context.Background())
		sub, err := c.Subscribe(ctx, "forever", nil)
		if err != nil {
			t.Fatal(err)
		}
		next(t, sub, `"first"`)
		cancel()
		if _, err := sub.Next(); err != context.Canceled {
			t.Errorf("Next after cancel: %v", err)
		}
		// The server's handler ends too (rpc.cancel), with the
		// connection still open for what follows.
		if err := wait(t, ended, "the handler to end"); err != context.Canceled {
			t.Errorf("handler: %v", err)
		}
		if err := c.Call(context.Background(), "echo", nil, nil); err != nil {
			t.Errorf("call after: %v", err)
		}
		ctx2, cancel2 := context.WithCancel(context.Background())
		defer cancel2()
		sub2, err := c.Subscribe(ctx2, "forever", nil)
		if err != nil {
			t.Fatal(err)
		}
		next(t, sub2, `"first"`)
		cancel2()
		wait(t, ended, "the second handler to end")
	})

	t.Run("server closes", func(t *testing.T) {
		srv := newServer()
		c := dial(t, start(t, srv))
		sub, err := c.Subscribe(context.Background(), "forever", nil)
		if err != nil {
			t.Fatal(err)
		}
		next(t, sub, `"first"`)
		srv.Close()
		<-ended
		// The handler's answer may be written before the connection is
		// cut, or not.
		var e *Error
		if _, err := sub.Next(); !errors.Is(err, ErrClosed) && !errors.As(err, &e) {
			t.Errorf("Next after the server closed: %v", err)
		}
		if err := c.Call(context.Background(), "echo", nil, nil); !errors.Is(err, ErrClosed) {
			t.Errorf("Call after the server closed: %v", err)
		}
	})

	t.Run("client closes", func(t *testing.T) {
		c := dial(t, start(t, newServer()))
		sub, err := c.Subscribe(context.Background(), "forever", nil)
		if err != nil {
			t.Fatal(err)
		}
		next(t, sub, `"first"`)
		c.Close()
		if _, err := sub.Next(); !errors.Is(err, ErrClosed) {
			t.Errorf("Next after Close: %v", err)
		}
		wait(t, ended, "the handler to end with its client")
		if _, err := c.Subscribe(context.Background(), "forever", nil); !errors.Is(err, ErrClosed) {
			t.Errorf("Subscribe after Close: %v", err)
		}
	})
}

// A Call whose ctx ends returns ctx.Err() and has the server cancel the
// request; the Client goes on.
func TestCallCancel(t *testing.T) {
	started := make(chan struct{}, 1)
	ended := make(chan error, 1)
	srv := NewServer()
	srv.Handle("echo", echo)
	srv.Handle("block", func(ctx context.Context, _ json.RawMessage, _ func(any) error) (any, error) {
		started <- struct{}{}
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, ctx.Err()
	})
	c := dial(t, start(t, srv))

	ctx, cancel := context.WithCancel(context.Background())
	called := make(chan error, 1)
	go func() { called <- c.Call(ctx, "block", nil, nil) }()
	wait(t, started, "block to start")
	cancel()
	if err := wait(t, called, "Call to return"); err != context.Canceled {
		t.Errorf("Call: %v", err)
	}
	if err := wait(t, ended, "the handler to end"); err != context.Canceled {
		t.Errorf("handler: %v", err)
	}
	if err := c.Call(ctx, "echo", nil, nil); err != context.Canceled {
		t.Errorf("Call with a done ctx: %v", err)
	}
	var got int
	if err := c.Call(context.Background(), "echo", 7, &got); err != nil || got != 7 {
		t.Errorf("after: %d, %v", got, err)
	}
}
