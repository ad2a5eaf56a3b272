package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
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
				c, err := dial(ts.MkAbs(args[0]))
				ts.Check(err)
				defer c.close()
				var id int64
				ts.Check(c.call("last_event_id", nil, &id))
				ts.Setenv(args[1], strconv.FormatInt(id, 10))
			},
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

// waitAPI waits until the daemon of dir answers "id" with an address.
func waitAPI(dir string, timeout time.Duration) (idResult, error) {
	deadline := time.Now().Add(timeout)
	for {
		c, err := dial(dir)
		if err == nil {
			var r idResult
			err = c.call("id", nil, &r)
			c.close()
			if err == nil && len(r.Addrs) > 0 {
				return r, nil
			}
		}
		if time.Now().After(deadline) {
			return idResult{}, fmt.Errorf("no daemon answered on %s in %v: %v", dir, timeout, err)
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
