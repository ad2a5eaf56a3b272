package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/p2pmsg/p2pmsg/internal/api"
)

// The script tests drive the real command: testscript puts this test
// binary on the scripts' PATH as "p2pmsg".
func TestMain(m *testing.M) {
	// The chat test runs this binary as p2pmsg in a pseudo-terminal.
	if os.Getenv("P2PMSG_TEST_AS_CLI") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	testscript.Main(m, map[string]func(){
		"p2pmsg": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata",
		Setup: func(env *testscript.Env) error {
			// No passphrase, and no data directory outside $WORK.
			env.Setenv("P2PMSG_DATA", env.WorkDir+"/default")
			env.Setenv("HOME", env.WorkDir+"/home")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitdaemon": waitDaemon,
			"exitcode":   exitCode,
			// hasprefix FILE: stdout begins with FILE's content.
			"hasprefix": func(ts *testscript.TestScript, neg bool, args []string) {
				want := ts.ReadFile(args[0])
				got := ts.ReadFile("stdout")
				if strings.HasPrefix(got, want) == neg {
					ts.Fatalf("stdout does not begin with %s:\n%s", args[0], got)
				}
			},
			// lastevent DIR VAR: $VAR = the daemon's newest event id.
			"lastevent": func(ts *testscript.TestScript, neg bool, args []string) {
				c, err := api.Dial(ts.MkAbs(args[0]))
				ts.Check(err)
				defer c.Close()
				id, err := c.LastEventID(context.Background())
				ts.Check(err)
				ts.Setenv(args[1], strconv.FormatInt(id, 10))
			},
			"waitpublished": waitPublished,
			"waitstate":     waitState,
			"rpc":           rawRPC,
			"setjson":       setJSON,
			"sendmany":      sendMany,
			"pagehistory":   pageHistory,
			"sendeach":      sendEach,
			"waitmessages":  waitMessages,
			"waitoutbox":    waitOutbox,
			"eventually":    eventually,
			"nofile":        noFile,
			"sleep": func(ts *testscript.TestScript, neg bool, args []string) {
				d, err := time.ParseDuration(args[0] + "s")
				ts.Check(err)
				time.Sleep(d)
			},
		},
	})
}

// waitdaemon DIR [VAR] waits until the daemon of DIR answers (at most
// 20 s); with VAR it sets $VAR to its first address and $VAR_ID to its
// peer ID.
func waitDaemon(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: waitdaemon DIR [VAR]")
	}
	r, err := waitAPI(ts.MkAbs(args[0]), 20*time.Second)
	ts.Check(err)
	if len(args) == 2 {
		ts.Setenv(args[1], r.Addrs[0])
		ts.Setenv(args[1]+"_ID", r.PeerID)
	}
}

// waitpublished DIR waits until the daemon of DIR has published its
// bundle (at most 20 s).
func waitPublished(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitpublished DIR")
	}
	c, err := api.Dial(ts.MkAbs(args[0]))
	ts.Check(err)
	defer c.Close()
	var st api.Status
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if st, err = c.Status(context.Background()); err == nil && !st.Published.IsZero() {
			return
		}
	}
	ts.Fatalf("%s: bundle not published in 20 s: %v; problems %v", args[0], err, st.Problems)
}

// waitstate DIR MESSAGE_ID STATE waits until the message is in STATE (at
// most 30 s).
func waitState(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: waitstate DIR MESSAGE_ID STATE")
	}
	c, err := api.Dial(ts.MkAbs(args[0]))
	ts.Check(err)
	defer c.Close()
	var m api.Message
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m, err = c.Message(context.Background(), args[1]); err == nil && m.State == args[2] {
			return
		}
	}
	ts.Fatalf("message %s: %s (%s), not %s after 30 s: %v", args[1], m.State, m.Error, args[2], err)
}

// waitAPI waits until the daemon of dir answers "id" with an address,
// and its node runs.
func waitAPI(dir string, timeout time.Duration) (api.Identity, error) {
	deadline := time.Now().Add(timeout)
	for {
		c, err := api.Dial(dir)
		if err == nil {
			var r api.Identity
			r, err = c.ID(context.Background())
			if err == nil && len(r.Addrs) > 0 {
				// Listening is not started: the verbs that write
				// need the node running, which status tells.
				_, err = c.Status(context.Background())
			}
			c.Close()
			if err == nil && len(r.Addrs) > 0 {
				return r, nil
			}
		}
		if time.Now().After(deadline) {
			return api.Identity{}, fmt.Errorf("no daemon answered on %s in %v: %v", dir, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exitcode N PROG ARGS... runs PROG and wants exit code N.
func exitCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N program [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode: %v", err)
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("exitcode: %v", err)
	}
	if got != want {
		ts.Fatalf("exit code %d, want %d", got, want)
	}
}

// rpc DIR LINE [N] writes LINE to the daemon's socket as it is and
// prints the first N lines that come back (default 1) to stdout.
func rawRPC(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: rpc DIR LINE [N]")
	}
	lines := 1
	if len(args) == 3 {
		var err error
		lines, err = strconv.Atoi(args[2])
		ts.Check(err)
	}
	c, err := net.Dial("unix", filepath.Join(ts.MkAbs(args[0]), api.SocketName))
	ts.Check(err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	_, err = io.WriteString(c, args[1]+"\n")
	ts.Check(err)
	r := bufio.NewReader(c)
	var out strings.Builder
	for range lines {
		line, err := r.ReadString('\n')
		ts.Check(err)
		out.WriteString(line)
	}
	ts.Stdout().Write([]byte(out.String()))
}

// setjson VAR FIELD sets $VAR to a field of the JSON object that the last
// command wrote to stdout.
func setJSON(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: setjson VAR FIELD")
	}
	var v map[string]any
	ts.Check(json.Unmarshal([]byte(ts.ReadFile("stdout")), &v))
	f, ok := v[args[1]]
	if !ok {
		ts.Fatalf("no field %q in %s", args[1], ts.ReadFile("stdout"))
	}
	ts.Setenv(args[0], fmt.Sprint(f))
}

// sendmany DIR PEER N queues messages "m000" to "m<N-1>" through the API.
func sendMany(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: sendmany DIR PEER N")
	}
	n, err := strconv.Atoi(args[2])
	ts.Check(err)
	c, err := api.Dial(ts.MkAbs(args[0]))
	ts.Check(err)
	defer c.Close()
	for i := range n {
		_, err := c.Send(context.Background(), api.SendParams{Peer: args[1], Text: fmt.Sprintf("m%03d", i)})
		ts.Check(err)
	}
}

// pagehistory DIR PEER LIMIT before|after N pages through the
// conversation with the history verb, --limit LIMIT at a time, from the
// latest back with --before (or from the oldest on with --after), and
// wants exactly "m000" to "m<N-1>" among the outgoing messages, in
// order: no gap, no repeat.
func pageHistory(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 5 {
		ts.Fatalf("usage: pagehistory DIR PEER LIMIT before|after N")
	}
	want, err := strconv.Atoi(args[4])
	ts.Check(err)
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > want {
			ts.Fatalf("more pages than messages: the cursor does not move")
		}
		cmd := []string{"--data", args[0], "history", args[1], "--json", "--limit", args[2]}
		switch {
		case args[3] == "before" && cursor != "":
			cmd = append(cmd, "--before", cursor)
		case args[3] == "after" && cursor != "":
			cmd = append(cmd, "--after", cursor)
		case args[3] == "after":
			cmd = append(cmd, "--oldest")
		}
		ts.Check(ts.Exec("p2pmsg", cmd...))
		var page []api.Message
		ts.Check(json.Unmarshal([]byte(ts.ReadFile("stdout")), &page))
		if len(page) == 0 {
			break
		}
		var texts []string
		for _, m := range page {
			if m.Direction == "out" { // the ones sendmany sent
				texts = append(texts, m.Text)
			}
		}
		if args[3] == "before" {
			got = append(texts, got...)
			cursor = page[0].ID
		} else {
			got = append(got, texts...)
			cursor = page[len(page)-1].ID
		}
	}
	if len(got) != want {
		ts.Fatalf("paging %s: %d messages, want %d", args[3], len(got), want)
	}
	for i, text := range got {
		if text != fmt.Sprintf("m%03d", i) {
			ts.Fatalf("paging %s: message %d is %q (a gap or a repeat)", args[3], i, text)
		}
	}
}

// sendeach DIR PEER N sends messages "m000" to "m<N-1>" with the send
// verb, one run of the binary each.
func sendEach(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: sendeach DIR PEER N")
	}
	n, err := strconv.Atoi(args[2])
	ts.Check(err)
	for i := range n {
		ts.Check(ts.Exec("p2pmsg", "--data", args[0], "send", args[1], fmt.Sprintf("m%03d", i)))
	}
}

// waitmessages DIR PEER in|out STATE N waits (at most 30 s) until the
// messages "m000" to "m<N-1>" are in the conversation, in that
// direction, in order, each once, all in STATE; other texts are ignored.
func waitMessages(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 5 {
		ts.Fatalf("usage: waitmessages DIR PEER in|out STATE N")
	}
	want, err := strconv.Atoi(args[4])
	ts.Check(err)
	c, err := api.Dial(ts.MkAbs(args[0]))
	ts.Check(err)
	defer c.Close()
	state := ""
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		h, err := c.History(context.Background(), api.HistoryParams{Peer: args[1], Limit: want + 100})
		ts.Check(err)
		var got []api.Message
		for _, m := range h {
			if m.Direction == args[2] && len(m.Text) == 4 && m.Text[0] == 'm' {
				got = append(got, m)
			}
		}
		state = fmt.Sprintf("%d messages", len(got))
		ok := len(got) == want
		for i, m := range got {
			if m.Text != fmt.Sprintf("m%03d", i) {
				ts.Fatalf("message %d is %q (out of order or twice)", i, m.Text)
			}
			if m.State != args[3] {
				ok, state = false, fmt.Sprintf("%s; %s is %s", state, m.Text, m.State)
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("after 30 s: %s, want %d %s", state, want, args[3])
		}
	}
}

// waitoutbox DIR waits (at most 20 s) until the daemon's outbox is empty.
func waitOutbox(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitoutbox DIR")
	}
	c, err := api.Dial(ts.MkAbs(args[0]))
	ts.Check(err)
	defer c.Close()
	var st api.Status
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if st, err = c.Status(context.Background()); err == nil && st.Outbox == 0 {
			return
		}
	}
	ts.Fatalf("%s: %d in the outbox after 20 s: %v", args[0], st.Outbox, err)
}

// eventually REGEX ARGS... runs p2pmsg ARGS until its stdout matches
// REGEX (with !, until it does not), at most 20 s; the last run's
// stdout is the script's.
func eventually(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: [!] eventually REGEX ARGS...")
	}
	re, err := regexp.Compile(args[0])
	ts.Check(err)
	var last string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := ts.Exec("p2pmsg", args[1:]...); err != nil {
			last = err.Error() + ": " + ts.ReadFile("stderr")
			continue
		}
		last = ts.ReadFile("stdout")
		if re.MatchString(last) != neg {
			return
		}
	}
	ts.Fatalf("after 20 s, p2pmsg %s: %q does not hold (neg %v) of:\n%s", strings.Join(args[1:], " "), args[0], neg, last)
}

// nofile DIR TEXT waits (at most 20 s) until no file under DIR holds
// TEXT: the raw bytes of the database, its WAL and the rest.
func noFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: nofile DIR TEXT")
	}
	var holding []string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		holding = nil
		err := filepath.WalkDir(ts.MkAbs(args[0]), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Type()&os.ModeSocket != 0 {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte(args[1])) {
				holding = append(holding, filepath.Base(path))
			}
			return nil
		})
		ts.Check(err)
		if len(holding) == 0 {
			return
		}
	}
	ts.Fatalf("after 20 s, %s still holds %q in %v", args[0], args[1], holding)
}
