package db

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const crashDirEnv = "P2PMSG_CRASH_DIR"

// TestCrashChild is the writer that TestCrashSafety kills; it does nothing
// in a normal run. Four goroutines run receive transactions (group commit)
// and print each id once Update has returned: only then is it committed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("the child process of TestCrashSafety")
	}
	start, _ := strconv.Atoi(os.Getenv("P2PMSG_CRASH_START"))
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("open failed:", err)
		os.Exit(2)
	}
	var out sync.Mutex
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := start + g; i < start+1_000_000; i += 4 {
				blob := bytes.Repeat([]byte(strconv.Itoa(i)+","), 200)
				err := s.Update(func(tx *Tx) error { _, err := receive(tx, "peer", i, blob, time.Now()); return err })
				if err != nil {
					fmt.Println("update failed:", err)
					os.Exit(3)
				}
				out.Lock()
				fmt.Printf("committed %d\n", i)
				out.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestCrashSafety kills a writing process with SIGKILL at random moments,
// 25 times; after each kill the database must open, pass integrity_check,
// hold every transaction reported committed, and hold no transaction in
// part.
func TestCrashSafety(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("in the child")
	}
	const kills = 25
	dir := t.TempDir()
	s := open(t, dir, "")
	update(t, s, func(tx *Tx) error { _, err := tx.EnsureContact("peer", time.Now()); return err })
	s.Close()

	rng := rand.New(rand.NewPCG(1, 2))
	total := 0
	for k := range kills {
		start := k * 1_000_000
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, "P2PMSG_CRASH_START="+strconv.Itoa(start))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var committed []int
		firstCommit := make(chan struct{})
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				id, ok := strings.CutPrefix(line, "committed ")
				if !ok {
					t.Errorf("child: %s", line)
					continue
				}
				n, _ := strconv.Atoi(id)
				committed = append(committed, n)
				if len(committed) == 1 {
					close(firstCommit)
				}
			}
		}()
		select {
		case <-firstCommit:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatal("the child committed nothing in 30 s")
		}
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		<-readDone
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("kill %d: the child ended otherwise: %v", k, cmd.ProcessState)
		}
		total += len(committed)
		checkAfterCrash(t, dir, start, committed)
	}
	t.Logf("%d kills, %d transactions reported committed before them, all present", kills, total)
}

func checkAfterCrash(t *testing.T, dir string, start int, committed []int) {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("open after kill: %v", err)
	}
	defer s.Close()
	var integrity string
	if err := s.wdb.QueryRow("PRAGMA integrity_check").Scan(&integrity); err != nil || integrity != "ok" {
		t.Fatalf("integrity_check: %q %v", integrity, err)
	}
	// Every reported transaction is present, wholly.
	view(t, s, func(r *ReadTx) error {
		for _, i := range committed {
			if _, err := r.Message(msgID(i)); err != nil {
				t.Fatalf("committed message %d: %v", i, err)
			}
		}
		return nil
	})
	// No transaction is present in part: each message of this run has its
	// event, each event its message, and the session is one a present
	// transaction wrote.
	var messages, events, orphans int
	lo, hi := msgID(start), msgID(start+1_000_000)
	s.reader.QueryRow("SELECT count(*) FROM messages WHERE id >= ? AND id < ?", lo[:], hi[:]).Scan(&messages)
	s.reader.QueryRow("SELECT count(*) FROM events WHERE payload >= ? AND payload < ?", lo[:], hi[:]).Scan(&events)
	s.reader.QueryRow(`SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = e.payload)`).Scan(&orphans)
	if messages != events || orphans != 0 || messages < len(committed) {
		t.Fatalf("messages %d, events %d, events without message %d, reported %d", messages, events, orphans, len(committed))
	}
	var blob []byte
	s.reader.QueryRow("SELECT blob FROM sessions WHERE peer_id = 'peer'").Scan(&blob)
	if len(blob) > 0 {
		first, _, _ := strings.Cut(string(blob), ",")
		n, _ := strconv.Atoi(first)
		if err := s.View(func(r *ReadTx) error { _, err := r.Message(msgID(n)); return err }); err != nil {
			t.Fatalf("session written by transaction %d, which is absent", n)
		}
		if !bytes.Equal(blob, bytes.Repeat([]byte(first+","), 200)) {
			t.Fatal("session blob torn")
		}
	}
}
