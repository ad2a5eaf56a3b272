package main

import (
	"bytes"
	"fmt"
	"os"
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
