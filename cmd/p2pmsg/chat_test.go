package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/x/vt"
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
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		cmd.Process.Signal(os.Interrupt)
		<-exited
	}
	daemons.Store(dir, stop)
	t.Cleanup(func() {
		stop()
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

// daemons holds how to stop the daemon of each data directory.
var daemons sync.Map

// stopDaemon stops the daemon that startDaemon started in dir, and waits
// for it to exit.
func stopDaemon(t *testing.T, dir string) {
	t.Helper()
	stop, ok := daemons.Load(dir)
	if !ok {
		t.Fatalf("no daemon was started in %s", dir)
	}
	stop.(func())()
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

	scr.waitFor(t, "enter send")
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

// vterm is a terminal for the chat screen: a pseudo-terminal whose output
// a terminal emulator draws, so that a test reads the screen as a user
// sees it (the renderer writes only what changed).
type vterm struct {
	t    *testing.T
	tty  *os.File
	cmd  *exec.Cmd
	mu   sync.Mutex
	emu  *vt.Emulator
	done chan error
}

func startChat(t *testing.T, cols, rows int, args ...string) *vterm {
	t.Helper()
	cmd := cli(append(args, "chat")...)
	cmd.Env = append(cmd.Env, "TERM=xterm-256color")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: uint16(rows), Cols: uint16(cols)})
	if err != nil {
		t.Fatal(err)
	}
	tm := &vterm{t: t, tty: tty, cmd: cmd, emu: vt.NewEmulator(cols, rows), done: make(chan error, 1)}
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := tty.Read(buf)
			if n > 0 {
				tm.mu.Lock()
				tm.emu.Write(buf[:n])
				tm.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	go io.Copy(tty, tm.emu) // the terminal's answers to the program's queries
	go func() { tm.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		tty.Close()
	})
	return tm
}

func (tm *vterm) screen() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.emu.String()
}

// waitFor waits until the screen shows s (at most 20 s).
func (tm *vterm) waitFor(s string) {
	tm.t.Helper()
	tm.waitUntil("shows "+s, func(scr string) bool { return strings.Contains(scr, s) })
}

func (tm *vterm) waitUntil(what string, ok func(string) bool) {
	tm.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(tm.screen()); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			tm.t.Fatalf("the chat screen never %s; it shows:\n%s", what, tm.screen())
		}
	}
}

func (tm *vterm) keys(s string) {
	io.WriteString(tm.tty, s)
	time.Sleep(30 * time.Millisecond) // one key press at a time, as typed
}

// The chat screen for daily use, in a terminal: a contact request
// accepted by a key; scrolling back through 1,000 messages to the first;
// a reaction that reaches the other side; and the daemon restarted under
// the screen, which says so, keeps the draft, and sends it once the
// daemon is back.
func TestChatScreenDaily(t *testing.T) {
	dir := t.TempDir()
	a := startDaemon(t, dir+"/a")
	b := startDaemon(t, dir+"/b", "--bootstrap", a.Addrs[0])
	ctx := context.Background()
	cb, err := api.Dial(dir + "/b")
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	if _, err := cb.SetProfile(ctx, "Bea"); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Send(ctx, api.SendParams{Peer: a.PeerID, Text: "hello, it is Bea", Wait: true}); err != nil {
		t.Fatal(err)
	}

	tm := startChat(t, 100, 30, "--data", dir+"/a")
	tm.waitFor("Bea")
	tm.waitFor("contact request: alt+a accepts")
	tm.keys("\x1ba") // alt+a
	tm.waitUntil("shows Bea accepted", func(s string) bool { return !strings.Contains(s, "contact request") })

	// 1,000 messages from Bea, now a contact.
	for i := range 1000 {
		if _, err := cb.Send(ctx, api.SendParams{Peer: a.PeerID, Text: fmt.Sprintf("note %04d from Bea", i)}); err != nil {
			t.Fatal(err)
		}
	}
	tm.waitFor("note 0999 from Bea")
	if strings.Contains(tm.screen(), "hello, it is Bea") {
		t.Fatal("the first message shows before scrolling back")
	}
	for i := 0; i < 200 && !strings.Contains(tm.screen(), "hello, it is Bea"); i++ {
		tm.keys("\x1b[5~") // pgup
	}
	tm.waitFor("hello, it is Bea")
	tm.keys("\x1b[F") // end
	tm.waitFor("note 0999 from Bea")

	// A reaction to the latest message.
	tm.keys("\t")
	tm.keys("+")
	tm.waitFor("react: 1 👍")
	tm.keys("1")
	waitFor(t, 20*time.Second, "reaction at Bea", func() bool {
		h, err := cb.History(ctx, api.HistoryParams{Peer: a.PeerID, Limit: 1})
		return err == nil && len(h) == 1 && len(h[0].Reactions) == 1 && h[0].Reactions[0].Emoji == "👍"
	})
	tm.keys("\t") // tab again: back to the composer (esc would do, but a
	// lone ESC and the next key typed at once read as alt+that key)
	tm.waitFor("enter send")

	// The daemon goes away under the screen, and comes back.
	for _, r := range "a draft that survives" {
		tm.keys(string(r))
	}
	stopDaemon(t, dir+"/a")
	tm.waitFor("daemon away")
	tm.keys("\r") // fails: kept
	tm.waitFor("a draft that survives")
	startDaemon(t, dir+"/a", "--bootstrap", b.Addrs[0]) // on a new port: it finds B
	tm.waitFor("daemon connected")
	tm.waitFor("a draft that survives")
	tm.keys("\r")
	tm.waitUntil("sent the draft", func(s string) bool { return !strings.Contains(s, "› a draft that survives") })
	defer func() {
		if t.Failed() {
			if ca, err := api.Dial(dir + "/a"); err == nil {
				h, _ := ca.History(ctx, api.HistoryParams{Peer: b.PeerID, Limit: 3})
				st, _ := ca.Status(ctx)
				t.Logf("A's latest: %+v\nstatus: %+v\nscreen:\n%s", h, st, tm.screen())
			}
		}
	}()
	waitFor(t, 20*time.Second, "draft at Bea", func() bool {
		h, err := cb.History(ctx, api.HistoryParams{Peer: a.PeerID, Limit: 1})
		return err == nil && len(h) == 1 && h[0].Text == "a draft that survives"
	})
	tm.keys("\x03") // ctrl+c
	select {
	case <-tm.done:
	case <-time.After(10 * time.Second):
		t.Fatal("chat did not quit on ctrl+c")
	}
}
