package node

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pmsg/p2pmsg/db"
)

// The test binary doubles as a node process for the crash test: with
// P2PMSG_CHILD_DIR set it runs a node there and obeys commands on stdin.
func TestMain(m *testing.M) {
	// A private umask, as a careful user's: the directories t.TempDir
	// makes are then 0700, as a data directory must be.
	syscall.Umask(0o077)
	if dir := os.Getenv("P2PMSG_CHILD_DIR"); dir != "" {
		os.Exit(runChild(dir, os.Getenv("P2PMSG_CHILD_BOOT")))
	}
	os.Exit(m.Run())
}

// runChild prints "addr <multiaddr>" and "ready", then obeys
// "send <peer> <text>" and "quit" lines.
func runChild(dir, boot string) int {
	var bootPeers []peer.AddrInfo
	if boot != "" {
		ai, err := peer.AddrInfoFromString(boot)
		if err != nil {
			fmt.Println("error", err)
			return 2
		}
		bootPeers = append(bootPeers, *ai)
	}
	cfg := testConfig(dir, bootPeers...)
	if os.Getenv("P2PMSG_CHILD_KILL_AFTER_PAGE") != "" {
		// Killed between committing a page from a mailbox and
		// acknowledging it (TestMailboxKilledBeforeAck).
		cfg.afterPage = func() { syscall.Kill(os.Getpid(), syscall.SIGKILL) }
	}
	n, err := New(cfg)
	if err != nil {
		fmt.Println("error", err)
		return 2
	}
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		fmt.Println("error", err)
		return 2
	}
	for _, a := range n.Addrs() {
		fmt.Println("addr", a)
	}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 3)
		switch {
		case f[0] == "quit":
			if err := n.Close(); err != nil {
				fmt.Println("error", err)
				return 1
			}
			return 0
		case f[0] == "send" && len(f) == 3:
			p, err := peer.Decode(f[1])
			if err == nil {
				_, err = n.Send(ctx, p, f[2])
			}
			if err != nil {
				fmt.Println("error", err)
			} else {
				fmt.Println("ok")
			}
		}
	}
	n.Close()
	return 0
}

// child is a node in another process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	ai    peer.AddrInfo
}

func startChild(t *testing.T, dir string, boot *Node) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "P2PMSG_CHILD_DIR="+dir, "P2PMSG_CHILD_BOOT="+boot.Addrs()[0].String())
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var addrs []ma.Multiaddr
	for c.out.Scan() {
		line := c.out.Text()
		if a, ok := strings.CutPrefix(line, "addr "); ok {
			addrs = append(addrs, ma.StringCast(a))
			continue
		}
		if line == "ready" {
			break
		}
		t.Fatalf("child: %s", line)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(addrs...)
	if err != nil || len(infos) != 1 {
		t.Fatalf("child addresses %v: %v", addrs, err)
	}
	c.ai = infos[0]
	return c
}

func (c *child) command(t *testing.T, line string) {
	t.Helper()
	fmt.Fprintln(c.stdin, line)
	if !c.out.Scan() || c.out.Text() != "ok" {
		t.Fatalf("child %q: %s", line, c.out.Text())
	}
}

func (c *child) quit(t *testing.T) {
	t.Helper()
	fmt.Fprintln(c.stdin, "quit")
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("child did not close cleanly: %v", err)
	}
}

// A crash loses nothing and stores nothing twice: B, a separate process,
// is killed with SIGKILL in the middle of a 1,000-message burst and
// restarted. Afterwards B's history holds every message exactly once, A's
// outbox is empty, and the next messages both ways decrypt.
func TestCrashMidBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes; skipped with -short")
	}
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	a := startNode(t, t.TempDir(), boot.AddrInfo())
	bDir := t.TempDir()
	// B knows A: a stranger's burst would stop at its first message.
	pre, err := New(testConfig(bDir))
	if err != nil {
		t.Fatal(err)
	}
	accepts(t, pre, a)
	pre.Close()
	b := startChild(t, bDir, boot)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := a.Connect(ctx, b.ai); err != nil {
		t.Fatal(err)
	}

	const N = 1000
	want := texts("burst", N)
	sent := make(chan error, 1)
	go func() {
		for _, txt := range want {
			if _, err := a.Send(ctx, b.ai.ID, txt); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	// Kill B once a good part of the burst went through, while the rest
	// is on the wire or still to be sent.
	waitFor(t, time.Minute, "part of the burst delivered", func() (bool, string) {
		d := count(history(t, a, b.ai.ID), db.Outgoing, db.Delivered)
		return d >= N/4, fmt.Sprintf("%d delivered", d)
	})
	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	b.cmd.Wait()
	atKill := count(history(t, a, b.ai.ID), db.Outgoing, db.Delivered)
	t.Logf("B killed after %d of %d messages were acknowledged", atKill, N)
	if atKill >= N {
		t.Fatal("the whole burst was delivered before the kill: the test proved nothing")
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}

	b = startChild(t, bDir, boot)
	waitFor(t, time.Minute, "the rest delivered after the restart", func() (bool, string) {
		d := count(history(t, a, b.ai.ID), db.Outgoing, db.Delivered)
		return d == N && outbox(t, a) == 0, fmt.Sprintf("%d delivered, %d in the outbox", d, outbox(t, a))
	})
	if _, err := a.Send(ctx, b.ai.ID, "after the crash, from a"); err != nil {
		t.Fatal(err)
	}
	b.command(t, "send "+a.ID().String()+" after the crash, from b")
	waitFor(t, 30*time.Second, "messages both ways after the crash", func() (bool, string) {
		h := history(t, a, b.ai.ID)
		return count(h, db.Incoming, "") == 1 && count(h, db.Outgoing, db.Delivered) == N+1, "not yet"
	})
	b.quit(t)

	store, err := db.Open(bDir, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var h []db.Message
	store.View(func(r *db.ReadTx) (err error) {
		h, err = r.History(a.ID().String(), db.Cursor{}, 10*N)
		return err
	})
	checkConversation(t, h, db.Incoming, append(want, "after the crash, from a"))
	checkConversation(t, h, db.Outgoing, []string{"after the crash, from b"})
}
