package jsonrpc

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Every test must leave no goroutine behind: the server's Close and the
// Client's Close wait for all of theirs.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// failsafe bounds a wait that should end at once; reaching it is a
// failure, never a way to synchronise.
const failsafe = 10 * time.Second

// start serves srv on a UNIX socket in a temporary directory until the
// test ends, and returns the socket's path.
func start(t testing.TB, srv *Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return path
}

func echo(_ context.Context, p json.RawMessage, _ func(any) error) (any, error) { return p, nil }

func dial(t testing.TB, path string) *Client {
	t.Helper()
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// raw is a client that writes and reads lines itself.
type raw struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t testing.TB, path string) *raw {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &raw{t, c, bufio.NewReaderSize(c, 64<<10)}
}

func (r *raw) send(line string) {
	r.t.Helper()
	if _, err := r.c.Write([]byte(line + "\n")); err != nil {
		r.t.Fatalf("write %s: %v", line, err)
	}
}

func (r *raw) recv() string {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(failsafe))
	got, err := r.r.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return strings.TrimSpace(got)
}

func (r *raw) ask(line string) string {
	r.t.Helper()
	r.send(line)
	return r.recv()
}

// wait fails the test unless ch yields within the failsafe.
func wait[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(failsafe):
		t.Fatalf("still waiting for %s", what)
		panic("unreachable")
	}
}

func filepathJoinTemp(t testing.TB) string { return filepath.Join(t.TempDir(), "s") }

func listen(t testing.TB, path string) net.Listener {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
