package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/p2pmsg/p2pmsg/internal/api"
)

// cli runs this test binary as p2pmsg.
func cli(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "P2PMSG_TEST_AS_CLI=1", "P2PMSG_PASSPHRASE=")
	return cmd
}

// startDaemon runs a daemon on 127.0.0.1 in dir until the test ends.
func startDaemon(t *testing.T, dir string, extra ...string) api.Identity {
	t.Helper()
	args := append([]string{"--data", dir, "daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--no-port-map", "--dht-mode", "server"}, extra...)
	cmd := cli(args...)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if t.Failed() {
			t.Logf("daemon %s:\n%s", dir, logs.String())
		}
	})
	r, err := waitAPI(dir, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// screen collects what a program wrote to its terminal, without the
// escape sequences.
type screen struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[a-zA-Z]|\x1b[()][AB0-2]|\x1b[=>]|\r`)

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *screen) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ansi.ReplaceAllString(s.buf.String(), "")
}

func (s *screen) waitFor(t *testing.T, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(s.text(), what) {
		if time.Now().After(deadline) {
			t.Fatalf("the chat screen never showed %q; it shows:\n%s", what, tail(s.text(), 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string { return s[max(0, len(s)-n):] }

// The chat screen, driven in a pseudo-terminal: a typed message is
// delivered to the other node, stored there once and shown delivered; a
// message from the other node appears on the screen.
func TestChatScreen(t *testing.T) {
	dir := t.TempDir()
	a := startDaemon(t, dir+"/a")
	b := startDaemon(t, dir+"/b", "--bootstrap", a.Addrs[0], "--relay")
	fi, err := os.Stat(dir + "/a/" + api.SocketName)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("the API socket has mode %v; want 0600", fi.Mode().Perm())
	}

	chat := cli("--data", dir+"/a", "chat", b.PeerID)
	chat.Env = append(chat.Env, "TERM=xterm-256color")
	tty, err := pty.StartWithSize(chat, &pty.Winsize{Rows: 30, Cols: 120})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var scr screen
	go io.Copy(&scr, tty)
	exited := make(chan error, 1)
	go func() { exited <- chat.Wait() }()

	scr.waitFor(t, "Enter send")
	io.WriteString(tty, "hello from the chat screen")
	time.Sleep(100 * time.Millisecond)
	io.WriteString(tty, "\r")
	scr.waitFor(t, "delivered")
	// b has it, once.
	c, err := api.Dial(dir + "/b")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	h, err := c.History(ctx, api.HistoryParams{Peer: a.PeerID})
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 1 || h[0].Text != "hello from the chat screen" {
		t.Fatalf("b's history: %+v", h)
	}
	// b answers; the screen shows it.
	if _, err := c.Send(ctx, api.SendParams{Peer: a.PeerID, Text: "answer from b", Wait: true}); err != nil {
		t.Fatal(err)
	}
	scr.waitFor(t, "answer from b")

	io.WriteString(tty, "\x1b") // Esc quits
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("chat exited with %v", err)
		}
	case <-time.After(10 * time.Second):
		chat.Process.Kill()
		t.Fatal("chat did not quit on Esc")
	}
}

// Commands other than chat write nothing to a terminal but their output:
// no terminal queries (Bubble Tea v1 sent one from its init, for every
// command, and waited up to 5 s for an answer).
func TestNoTerminalQueries(t *testing.T) {
	cmd := cli("help")
	tty, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var out bytes.Buffer
	io.Copy(&out, tty) // until the command exits (EIO)
	cmd.Wait()
	if bytes.Contains(out.Bytes(), []byte("\x1b]")) || bytes.Contains(out.Bytes(), []byte("\x1b[6n")) {
		t.Fatalf("p2pmsg help queried the terminal: %q", out.Bytes()[:min(80, out.Len())])
	}
	if !bytes.Contains(out.Bytes(), []byte("Exit codes:")) {
		t.Fatalf("help output: %q", out.String())
	}
}
