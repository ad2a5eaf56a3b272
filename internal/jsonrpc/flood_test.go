package jsonrpc

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A client that pipelines requests and never reads the answers makes the
// server hold the answers it cannot write. That must stay a few times
// MaxInFlight answers per connection, whether the requests come one per
// line or in batches: a batch takes as many slots as it has requests (up
// to MaxInFlight/2), not one. scripts/rpc-flood.sh is the same against
// the daemon's binary.
func TestPipelinedClientThatNeverReads(t *testing.T) {
	const answerSize = 4 << 10
	answer := strings.Repeat("x", answerSize)
	for _, batch := range []int{1, MaxBatchLen} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			var answered atomic.Int64
			srv := NewServer()
			srv.Handle("big", func(context.Context, json.RawMessage, func(any) error) (any, error) {
				answered.Add(1)
				return answer, nil
			})
			path := start(t, srv)

			var lines strings.Builder
			for i := range 200 * MaxBatchLen {
				switch {
				case batch == 1:
				case i%batch == 0:
					lines.WriteByte('[')
				default:
					lines.WriteByte(',')
				}
				fmt.Fprintf(&lines, `{"jsonrpc":"2.0","id":%d,"method":"big"}`, i)
				if batch > 1 && i%batch == batch-1 {
					lines.WriteByte(']')
				}
				if i%batch == batch-1 {
					lines.WriteByte('\n')
				}
			}
			flood := []byte(lines.String())
			c := dialRaw(t, path)
			before := liveHeap()
			wrote := make(chan error, 1)
			go func() { // blocks once the server stops reading; ends at c.Close
				_, err := c.c.Write(flood)
				wrote <- err
			}()
			// The server has stopped when no handler has run for a while:
			// every slot holds an answer it cannot write.
			for last, still := int64(-1), 0; still < 5; time.Sleep(100 * time.Millisecond) {
				if n := answered.Load(); n == last {
					still++
				} else {
					last, still = n, 0
				}
			}
			held := liveHeap() - before
			// JSONRPC_HEAP_PROFILE=FILE writes each case's heap profile to
			// FILE.batchN, for go tool pprof: how the cause was found.
			if os.Getenv("JSONRPC_HEAP_PROFILE") != "" {
				f, _ := os.Create(fmt.Sprintf("%s.batch%d", os.Getenv("JSONRPC_HEAP_PROFILE"), batch))
				pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
			t.Logf("%d requests answered, %d KiB held", answered.Load(), held>>10)
			// Up to 2 × MaxInFlight answers (two batches fill a
			// connection), encoded in buffers that may be twice their size,
			// and 1 MiB for the rest. Before batches took a slot per
			// request: 4096 answers, 18 MiB.
			if limit := int64(4*MaxInFlight*answerSize + 1<<20); held > limit {
				t.Errorf("the server holds %d KiB for a client that does not read; at most %d KiB expected", held>>10, limit>>10)
			}
			c.c.Close()
			<-wrote
		})
	}
}

// A batch takes a slot per request, up to MaxInFlight/2: it still runs
// beside a request that lasts, and two batches whose answers wait fill a
// connection, whose reader then waits.
func TestBatchTakesASlotPerRequest(t *testing.T) {
	started := make(chan struct{}, 4)
	waiting := make(chan struct{}, 1)
	release := make(chan struct{})
	srv := NewServer()
	srv.waitHook = func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
	}
	srv.Handle("echo", echo)
	srv.Handle("hold", func(ctx context.Context, _ json.RawMessage, _ func(any) error) (any, error) {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, nil
	})
	c := dialRaw(t, start(t, srv))
	batchOf := func(first string) string {
		reqs := []string{fmt.Sprintf(`{"jsonrpc":"2.0","id":0,"method":%q}`, first)}
		for i := 1; i < MaxBatchLen; i++ {
			reqs = append(reqs, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"echo"}`, i))
		}
		return "[" + strings.Join(reqs, ",") + "]"
	}

	c.send(`{"jsonrpc":"2.0","id":"lasting","method":"hold"}`)
	wait(t, started, "the lasting request to start")
	if got := c.ask(batchOf("echo")); !strings.HasPrefix(got, `[{"jsonrpc":"2.0","id":0,"result":null}`) {
		t.Fatalf("a batch beside a lasting request: %.100s", got)
	}

	// 1 + 32 slots taken, 32 more wanted: the reader waits before the
	// second batch has started.
	c.send(batchOf("hold") + "\n" + batchOf("hold"))
	wait(t, started, "the first batch to start")
	wait(t, waiting, "the reader to wait for slots")
	if len(started) != 0 {
		t.Fatal("the second batch started: a batch took fewer slots than MaxInFlight/2")
	}
	close(release)
	for range 3 {
		c.recv()
	}
	wait(t, started, "the second batch to start once slots freed")
}

// liveHeap is the heap in use after a collection.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
