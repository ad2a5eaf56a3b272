package db

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
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

const sealCrashDirEnv = "P2PMSG_SEAL_CRASH_DIR"

// sealCrashPass is the passphrase after the i-th change of
// TestCrashSealingChild: 0 is the v1 store's; then a rewrap, unsealing,
// sealing, a new store key, unsealing, sealing, ... ("": unsealed).
func sealCrashPass(i int) string {
	if i%3 == 2 {
		return ""
	}
	return fmt.Sprintf("pass %d", i)
}

// TestCrashSealingChild is the process that TestCrashSafetyOfSealing
// kills: it opens a v1-sealed store (the upgrade, then the VACUUM that
// turns on auto-vacuum) and changes its sealing over and over, printing
// each step once it returned.
func TestCrashSealingChild(t *testing.T) {
	dir := os.Getenv(sealCrashDirEnv)
	if dir == "" {
		t.Skip("the child process of TestCrashSafetyOfSealing")
	}
	s, err := Open(dir, Options{Passphrase: []byte(sealCrashPass(0)), KDF: fastKDF})
	if err != nil {
		fmt.Println("open failed:", err)
		os.Exit(2)
	}
	fmt.Println("opened")
	for i := 1; ; i++ {
		pass := []byte(sealCrashPass(i))
		if i%6 == 4 {
			err = s.RotateStoreKey(pass, fastKDF)
		} else {
			err = s.ChangePassphrase(pass, fastKDF)
		}
		if err != nil {
			fmt.Println("change failed:", err)
			os.Exit(3)
		}
		fmt.Printf("changed %d\n", i)
	}
}

// TestCrashSafetyOfSealing kills, with SIGKILL at random moments, a
// process that upgrades a v1-sealed store of 3,000 messages and then
// seals, unseals, rewraps and rekeys it in turn. After each kill the
// store opens with the passphrase of the last step reported or of the
// one under way, passes integrity_check, holds every message whole,
// finds them by search, is sealed or not as a whole, and (sealed) leaves
// no text in its files.
func TestCrashSafetyOfSealing(t *testing.T) {
	if os.Getenv(sealCrashDirEnv) != "" {
		t.Skip("in the child")
	}
	const kills, n = 16, 3000
	template := t.TempDir()
	v1Store(t, template, sealCrashPass(0), n)
	original, err := os.ReadFile(filepath.Join(template, FileName))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	steps := map[int]int{}
	for k := range kills {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), original, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashSealingChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), sealCrashDirEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		last := -1 // the last step reported: -1 none, 0 opened, i changed i
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				if line == "opened" {
					last = 0
				} else if i, ok := strings.CutPrefix(line, "changed "); ok {
					last, _ = strconv.Atoi(i)
				} else {
					t.Errorf("child: %s", line)
				}
			}
		}()
		time.Sleep(time.Duration(rng.IntN(600)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		<-readDone
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("kill %d: the child ended otherwise: %v", k, cmd.ProcessState)
		}
		steps[last]++
		checkAfterSealingCrash(t, dir, n, sealCrashPass(max(last, 0)), sealCrashPass(last+1))
	}
	t.Logf("%d kills; at the step reported last (-1: not opened yet): %v", kills, steps)
}

func checkAfterSealingCrash(t *testing.T, dir string, n int, passes ...string) {
	t.Helper()
	var s *Store
	var errs []error
	for _, pass := range passes {
		var err error
		if s, err = Open(dir, Options{Passphrase: []byte(pass), KDF: fastKDF}); err == nil {
			break
		}
		if !errors.Is(err, ErrWrongPassphrase) && !errors.Is(err, ErrPassphraseRequired) && !errors.Is(err, ErrNotSealed) {
			t.Fatalf("open after kill with %q: %v", pass, err)
		}
		errs = append(errs, err)
	}
	if s == nil {
		t.Fatalf("opens with none of %q: %v", passes, errs)
	}
	defer s.Close()
	var integrity string
	if err := s.wdb.QueryRow("PRAGMA integrity_check").Scan(&integrity); err != nil || integrity != "ok" {
		t.Fatalf("integrity_check: %q %v", integrity, err)
	}
	checkConversation(t, s, n)
	clearBodies := countRows(t, s, "SELECT count(*) FROM messages WHERE body_sealed IS NULL")
	indexed := countRows(t, s, "SELECT count(*) FROM messages_fts_docsize")
	words := countRows(t, s, "SELECT count(*) FROM message_words")
	if s.SecretsSealed() {
		if clearBodies != 0 || indexed != 0 || words == 0 || countRows(t, s, "SELECT version FROM sealing") != sealingV2 {
			t.Fatalf("sealed, yet %d clear bodies, %d in FTS4, %d words", clearBodies, indexed, words)
		}
		mustNotLeak(t, dir, "after a kill, reopened")
	} else if clearBodies != n || indexed != n || words != 0 {
		t.Fatalf("unsealed, yet %d clear bodies of %d, %d in FTS4, %d words", clearBodies, n, indexed, words)
	}
	if av := countRows(t, s, "PRAGMA auto_vacuum"); av != autoVacuumIncremental {
		t.Fatalf("auto_vacuum %d", av)
	}
}
