package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Read verbs fired at a daemon while it starts never make it exit: a
// verb that finds no socket opens the store for an instant, and a daemon
// that finds the store held by it waits (it used to exit with 6). The
// verbs succeed too, through the store or through the daemon.
func TestReadVerbsWhileTheDaemonStarts(t *testing.T) {
	dir := t.TempDir() + "/data" // made 0700 by p2pmsg
	if out, err := cli("--data", dir, "init").CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	const starts = 50
	for i := range starts {
		daemon := cli("--data", dir, "daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--no-port-map")
		var logs bytes.Buffer
		daemon.Stderr = &logs
		if err := daemon.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- daemon.Wait() }()
		// Read verbs in a loop until the daemon answers.
		var wg sync.WaitGroup
		ready := make(chan struct{})
		failures := make(chan string, 64)
		for _, verb := range [][]string{{"id"}, {"contacts", "list"}, {"receive"}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-ready:
						return
					default:
					}
					out, err := cli(append([]string{"--data", dir}, verb...)...).CombinedOutput()
					if err != nil {
						select {
						case failures <- fmt.Sprintf("%v: %v: %s", verb, err, out):
						default:
						}
					}
				}
			}()
		}
		_, err := waitAPI(dir, 20*time.Second)
		close(ready)
		wg.Wait()
		select {
		case err := <-exited:
			t.Fatalf("start %d: the daemon exited (%v) while read verbs ran:\n%s", i, err, logs.String())
		default:
		}
		if err != nil {
			t.Fatalf("start %d: %v\n%s", i, err, logs.String())
		}
		daemon.Process.Signal(os.Interrupt)
		if err := <-exited; err != nil {
			t.Fatalf("start %d: the daemon ended with %v:\n%s", i, err, logs.String())
		}
		select {
		case f := <-failures:
			t.Fatalf("start %d: a read verb failed: %s", i, f)
		default:
		}
	}
}

// A passphrase given in the environment does not stay in the daemon's
// environment (/proc/PID/environ shows it for the process's life): the
// daemon runs itself again without it, same PID. --passphrase-file opens
// a sealed store too; a wrong one is exit 7.
func TestPassphraseLeavesTheDaemonsEnvironment(t *testing.T) {
	dir := t.TempDir() + "/data"
	const secret = "correct horse\nbattery staple" // a line break inside: handed over as it is
	withSecret := func(c *exec.Cmd) *exec.Cmd {
		c.Env = append(c.Env, "P2PMSG_PASSPHRASE="+secret)
		return c
	}
	if out, err := withSecret(cli("--data", dir, "init")).CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	start := func(c *exec.Cmd) *exec.Cmd {
		t.Helper()
		var logs bytes.Buffer
		c.Stderr = &logs
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		if _, err := waitAPI(dir, 20*time.Second); err != nil {
			c.Process.Kill()
			t.Fatalf("%v\n%s", err, logs.String())
		}
		return c
	}
	stop := func(c *exec.Cmd) {
		c.Process.Signal(os.Interrupt)
		c.Wait()
	}
	daemon := start(withSecret(cli("--data", dir, "daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--no-port-map")))
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", daemon.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(environ, []byte("P2PMSG_TEST_AS_CLI=1")) {
		t.Fatalf("read the environment of another process: %q", environ)
	}
	if bytes.Contains(environ, []byte("P2PMSG_PASSPHRASE")) || bytes.Contains(environ, []byte(secret)) {
		t.Errorf("the passphrase is in the daemon's environment")
	}
	out, err := cli("--data", dir, "status", "--json").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(`"secrets_unsealed": false`)) {
		t.Errorf("status of the daemon: %v\n%s", err, out)
	}
	stop(daemon)

	file := filepath.Join(t.TempDir(), "passphrase")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stop(start(cli("--data", dir, "--passphrase-file", file, "daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--no-port-map")))

	os.WriteFile(file, []byte("wrong\n"), 0o600)
	err = cli("--data", dir, "id", "--passphrase-file", file).Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitPassphrase {
		t.Errorf("a wrong passphrase file: %v, want exit %d", err, exitPassphrase)
	}
}
