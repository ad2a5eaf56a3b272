package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"
)

// The API server against JSON-RPC 2.0: batches, notifications never
// answered, "id": null when the request's is unreadable, invalid ids and
// requests, and a subscription that ends when its client goes.
func TestRPCConformance(t *testing.T) {
	dir := t.TempDir()
	ln, err := listenSocket(dir)
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	srv := newRPCServer(ln, map[string]handler{
		"echo": func(_ context.Context, p json.RawMessage, _ func(any) error) (any, error) { return p, nil },
		"subscribe": func(ctx context.Context, _ json.RawMessage, notify func(any) error) (any, error) {
			notify("first")
			<-ctx.Done()
			close(ended)
			return nil, ctx.Err()
		},
	})
	go srv.serve()
	defer srv.close()

	c, err := net.Dial("unix", dir+"/"+socketName)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	ask := func(line string) string {
		t.Helper()
		c.Write([]byte(line + "\n"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		return strings.TrimSpace(got)
	}
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
		if got := ask(tc.req); !strings.Contains(got, tc.want) {
			t.Errorf("%s\n got %s\nwant %s", tc.req, got, tc.want)
		}
	}
	// Notifications, even of unknown methods, get no answer: the next
	// line read answers the request after them.
	c.Write([]byte(`{"jsonrpc":"2.0","method":"nope"}` + "\n" + `[{"jsonrpc":"2.0","method":"echo"}]` + "\n"))
	if got := ask(`{"jsonrpc":"2.0","id":7,"method":"echo"}`); !strings.Contains(got, `"id":7`) {
		t.Errorf("a notification was answered: %s", got)
	}

	// A subscriber that goes away ends its subscription.
	s, err := net.Dial("unix", dir+"/"+socketName)
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte(`{"jsonrpc":"2.0","id":1,"method":"subscribe"}` + "\n"))
	sr := bufio.NewReader(s)
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, _ := sr.ReadString('\n'); !strings.Contains(got, `"method":"event","params":"first"`) {
		t.Fatalf("notification: %q", got)
	}
	s.Close()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the subscription outlived its client")
	}
}

func TestPrintable(t *testing.T) {
	in := "hi \x1b]0;pwned\x07 \x1b[2J\u202eevil\nnext\tline"
	if got := printable(in, false); strings.ContainsAny(got, "\x1b\x07\u202e") || !strings.Contains(got, "\nnext\tline") {
		t.Errorf("printable(%q) = %q", in, got)
	}
	if got := printable(in, true); strings.ContainsAny(got, "\n\t\x1b") {
		t.Errorf("one line: %q", got)
	}
}
