package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/dht"
	"github.com/p2pmsg/p2pmsg/e2e"
)

const kadProtocol = dht.ProtocolPrefix + "/kad/1.0.0"

// floodRecord is a valid bundle record of a throwaway identity.
type floodRecord struct {
	key   string
	value []byte
}

// makeFloodRecords makes n valid records, each of its own identity, on
// every core. The identities share their prekeys (ML-KEM key generation
// would cost more than the rest together; the validator does not care).
func makeFloodRecords(t testing.TB, n int, expires time.Time) []floodRecord {
	t.Helper()
	spk, pq := e2e.NewSignedPrekey(1), e2e.NewPQPrekey(2, false)
	out := make([]floodRecord, n)
	errs := make([]error, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			for i := w; i < n; i += len(errs) {
				id := e2e.NewIdentity()
				_, pid, err := libp2pKey(id)
				if err != nil {
					errs[w] = err
					return
				}
				b, err := id.SignBundle(e2e.BundleParams{Seq: 1, Expires: expires, SignedPrekey: spk, PQPrekey: pq})
				if err != nil {
					errs[w] = err
					return
				}
				out[i] = floodRecord{key: dht.Key(pid), value: b}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return out
}

// rawPut sends one PUT_VALUE of r to p on a stream of its own, as any
// peer may, and reports whether p stored it (it answers only then; a
// refusal resets the stream).
func rawPut(ctx context.Context, h host.Host, p peer.ID, r floodRecord) error {
	s, err := h.NewStream(ctx, p, kadProtocol)
	if err != nil {
		return err
	}
	defer s.Reset()
	if d, ok := ctx.Deadline(); ok {
		s.SetDeadline(d)
	}
	msg := pb.NewMessage(pb.Message_PUT_VALUE, []byte(r.key), 0)
	msg.Record = record.MakePutRecord(r.key, r.value)
	body, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := s.Write(append(binary.AppendUvarint(nil, uint64(len(body))), body...)); err != nil {
		return err
	}
	br := bufio.NewReader(s)
	l, err := binary.ReadUvarint(br)
	if err != nil {
		return err
	}
	if l > 64<<10 {
		return fmt.Errorf("answer of %d bytes", l)
	}
	if _, err := io.ReadFull(br, make([]byte, l)); err != nil {
		return err
	}
	return nil
}

func newRawHost(t testing.TB) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func connectTo(t testing.TB, h host.Host, ai peer.AddrInfo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, ai); err != nil {
		t.Fatal(err)
	}
}

func putCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// filesSize is the record store's file and its WAL.
func filesSize(path string) (file, wal int64) {
	if fi, err := os.Stat(path); err == nil {
		file = fi.Size()
	}
	if fi, err := os.Stat(path + "-wal"); err == nil {
		wal = fi.Size()
	}
	return file, wal
}

// A DHT server keeps what it held across a restart: node A stores B's
// bundle, both stop, A starts again on its data directory, and C, a
// newcomer that knows only A, finds B's bundle there.
func TestDHTRecordsSurviveRestart(t *testing.T) {
	checkNoLeaks(t)
	dirA := t.TempDir()
	a := startNode(t, dirA)
	b := startNode(t, t.TempDir(), a.AddrInfo())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var want []byte
	waitFor(t, 15*time.Second, "A stores B's bundle", func() (bool, string) {
		var err error
		want, err = a.dht.Stored(ctx, b.ID())
		return err == nil, fmt.Sprint(err)
	})
	if n := a.records.store.StoredBy(b.ID()); n != 1 {
		t.Fatalf("B's bundle is charged to B %d times", n)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dirA, db.RecordsFileName)); err != nil {
		t.Fatal(err)
	}

	a2 := startNode(t, dirA)
	if n := a2.records.store.StoredBy(b.ID()); n != 1 {
		t.Fatalf("after the restart B's bundle is charged %d times", n)
	}
	c := startNode(t, t.TempDir(), a2.AddrInfo())
	_, raw, err := c.dht.Lookup(ctx, b.ID(), 0)
	if err != nil || !bytes.Equal(raw, want) {
		t.Fatalf("looking up B's bundle after A's restart: %v", err)
	}
}

// The store over its SQLite file, attacked over the real protocol: each
// of four peers PUTs three times its quota; the quota and the total cap
// hold, the file stays within the cap, an honest newcomer still gets in,
// and after a restart the store holds the same records, less those that
// expired meanwhile, and serves them.
func TestDHTRecordStoreOnSQLite(t *testing.T) {
	checkNoLeaks(t)
	const quota, total, attackers = 8, 20, 4
	path := filepath.Join(t.TempDir(), db.RecordsFileName)
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	limits := dht.Limits{PerPeer: quota, Records: total}
	open := func() (*dht.Store, *db.Records) {
		f, err := db.OpenRecords(path)
		if err != nil {
			t.Fatal(err)
		}
		s, err := dht.NewStore(recordsBackend{f}, dht.StoreConfig{Limits: limits, Now: clock})
		if err != nil {
			f.Close()
			t.Fatal(err)
		}
		return s, f
	}
	server := func(s *dht.Store) (host.Host, *dht.DHT) {
		h := newRawHost(t)
		d, err := dht.New(h, dht.Config{Mode: dht.ModeServer, Store: s, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return h, d
	}

	s, f := open()
	vh, vd := server(s)
	vinfo := peer.AddrInfo{ID: vh.ID(), Addrs: vh.Addrs()}
	recs := makeFloodRecords(t, attackers*quota*3+4, time.Now().Add(7*24*time.Hour))
	var wg sync.WaitGroup
	accepted := make([]int, attackers)
	for i := range attackers {
		h := newRawHost(t)
		connectTo(t, h, vinfo)
		wg.Go(func() {
			for _, r := range recs[i*quota*3 : (i+1)*quota*3] {
				ctx, cancel := putCtx()
				if rawPut(ctx, h, vh.ID(), r) == nil {
					accepted[i]++
				}
				cancel()
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	if st.Records != total || st.Senders != attackers {
		t.Fatalf("after the attack: %+v (accepted %v)", st, accepted)
	}
	for i, n := range accepted {
		if n > quota {
			t.Fatalf("attacker %d: %d accepted, quota %d", i, n, quota)
		}
	}
	file, wal := filesSize(path)
	t.Logf("accepted %v; %+v; file %d KiB, WAL %d KiB", accepted, st, file>>10, wal>>10)
	// About 1.5 KB a record: 20 of them in 4 KiB pages, with the key's
	// index; the WAL holds the pages written since its last checkpoint.
	if file > 2*st.Bytes+64<<10 || wal > 4<<20+64<<10 {
		t.Fatalf("file %d bytes, WAL %d bytes for %d bytes of records", file, wal, st.Bytes)
	}

	// An honest newcomer: its own bundle and one it relays, both stored.
	honest := newRawHost(t)
	connectTo(t, honest, vinfo)
	fresh, shortLived := recs[len(recs)-2], makeFloodRecords(t, 1, time.Now().Add(time.Hour))[0]
	for _, r := range []floodRecord{fresh, shortLived} {
		ctx, cancel := putCtx()
		err := rawPut(ctx, honest, vh.ID(), r)
		cancel()
		if err != nil {
			t.Fatalf("honest PUT after the attack: %v", err)
		}
	}
	before := s.Stats()
	if before.Records != total {
		t.Fatalf("%+v", before)
	}

	// Restart two hours later: the short-lived record has expired.
	vd.Close()
	vh.Close()
	s.Close()
	f.Close()
	offset.Store(int64(2 * time.Hour))
	s, f = open()
	t.Cleanup(func() { s.Close(); f.Close() })
	after := s.Stats()
	if after.Records != total-1 || after.Senders != before.Senders || s.StoredBy(honest.ID()) != 1 {
		t.Fatalf("reopened: %+v, before %+v", after, before)
	}
	rows := 0
	f.Each(func(db.Record) error { rows++; return nil })
	if rows != total-1 {
		t.Fatalf("%d rows in the file", rows)
	}
	vh2, _ := server(s)
	asker := newRawHost(t)
	connectTo(t, asker, peer.AddrInfo{ID: vh2.ID(), Addrs: vh2.Addrs()})
	client, err := dht.New(asker, dht.Config{Mode: dht.ModeClient})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	m, err := pb.NewProtocolMessenger(client.Inner().MessageSender())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := putCtx()
	defer cancel()
	for _, c := range []struct {
		r    floodRecord
		want bool
	}{{fresh, true}, {shortLived, false}} {
		rec, _, err := m.GetValue(ctx, vh2.ID(), c.r.key)
		if err != nil {
			t.Fatal(err)
		}
		if got := bytes.Equal(rec.GetValue(), c.r.value); got != c.want {
			t.Fatalf("served after the restart: %v, want %v", got, c.want)
		}
	}
}

// floodChildEnv makes the test binary, re-executed, run
// TestRecordFloodChild: the victim of BenchmarkRecordFlood.
const floodChildEnv = "P2PMSG_FLOOD_CHILD"

// BenchmarkRecordFlood: one peer PUTs 40,000 valid records, each of its
// own identity, into a DHT server that runs in a process of its own (this
// test binary re-executed), so that the server's memory is measured
// alone. "node" is a node as the daemon runs it (DHT server, the record
// store in its SQLite file, the default limits); "unbounded" is a bare
// DHT server storing everything in memory, as before the store had
// limits. Metrics: records stored and refused, the server's RSS growth
// once the flood is over (after a GC that returns freed memory to the
// OS), its peak RSS growth, its heap growth, and the flood's rate.
func BenchmarkRecordFlood(b *testing.B) {
	const n = 40000
	recs := makeFloodRecords(b, n, time.Now().Add(7*24*time.Hour))
	for _, mode := range []string{"node", "unbounded"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				runFlood(b, mode, recs)
			}
		})
	}
}

type childStats struct {
	records, refused        int64
	rss, hwm, heap, fileKiB int64
}

func runFlood(b *testing.B, mode string, recs []floodRecord) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestRecordFloodChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), floodChildEnv+"="+mode, "P2PMSG_FLOOD_DIR="+b.TempDir())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		go io.Copy(io.Discard, stdout)
		if err := cmd.Wait(); err != nil {
			b.Errorf("child: %v", err)
		}
	}()
	sc := bufio.NewScanner(stdout)
	var ai *peer.AddrInfo
	for ai == nil && sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "addr "); ok {
			if ai, err = peer.AddrInfoFromString(rest); err != nil {
				b.Fatal(err)
			}
		} else {
			b.Log("child: ", sc.Text())
		}
	}
	if ai == nil {
		b.Fatal("the child exited before it listened")
	}
	stats := func() childStats {
		fmt.Fprintln(stdin, "stats")
		for sc.Scan() {
			var c childStats
			if _, err := fmt.Sscanf(sc.Text(), "stats records=%d refused=%d rss=%d hwm=%d heap=%d file=%d",
				&c.records, &c.refused, &c.rss, &c.hwm, &c.heap, &c.fileKiB); err == nil {
				return c
			}
			b.Log("child: ", sc.Text())
		}
		b.Fatal("the child exited")
		return childStats{}
	}

	h := newRawHost(b)
	connectTo(b, h, *ai)
	base := stats()
	const workers = 8
	var next, stored atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(len(recs)) {
					return
				}
				ctx, cancel := putCtx()
				if rawPut(ctx, h, ai.ID, recs[i]) == nil {
					stored.Add(1)
				}
				cancel()
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	end := stats()
	b.ReportMetric(float64(end.records-base.records), "stored")
	b.ReportMetric(float64(stored.Load()), "acked")
	b.ReportMetric(float64(end.refused-base.refused), "refused")
	b.ReportMetric(float64(end.rss-base.rss)/1024, "MB-RSS-growth")
	b.ReportMetric(float64(end.hwm-base.rss)/1024, "MB-peak-growth")
	b.ReportMetric(float64(end.heap-base.heap)/(1<<20), "MB-heap-growth")
	b.ReportMetric(float64(end.fileKiB)/1024, "MB-file")
	b.ReportMetric(float64(len(recs))/took.Seconds(), "puts/s")
}

// TestRecordFloodChild is BenchmarkRecordFlood's victim; it runs only
// there. It prints "addr", then answers "stats" lines until stdin closes.
func TestRecordFloodChild(t *testing.T) {
	mode := os.Getenv(floodChildEnv)
	if mode == "" {
		t.Skip("only run by BenchmarkRecordFlood")
	}
	dir := os.Getenv("P2PMSG_FLOOD_DIR")
	var store *dht.Store
	var addr peer.AddrInfo
	switch mode {
	case "node":
		n := startNode(t, dir)
		store, addr = n.records.store, n.AddrInfo()
	case "unbounded":
		s, err := dht.NewStore(nil, dht.StoreConfig{Limits: dht.Limits{PerPeer: 1 << 30, Records: 1 << 30, Bytes: 1 << 40}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		h := newRawHost(t)
		d, err := dht.New(h, dht.Config{Mode: dht.ModeServer, Store: s})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		store, addr = s, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}
	default:
		t.Fatalf("mode %q", mode)
	}
	addrs, err := peer.AddrInfoToP2pAddrs(&addr)
	if err != nil || len(addrs) == 0 {
		t.Fatal(err)
	}
	fmt.Println("addr", addrs[0])
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() != "stats" {
			continue
		}
		// What the process keeps, not what the last burst left for the
		// collector: settle, collect, and hand freed pages back.
		time.Sleep(500 * time.Millisecond)
		runtime.GC()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		status, err := os.ReadFile("/proc/self/status")
		if err != nil {
			t.Fatal(err)
		}
		file, wal := filesSize(filepath.Join(dir, db.RecordsFileName))
		st := store.Stats()
		fmt.Printf("stats records=%d refused=%d rss=%d hwm=%d heap=%d file=%d\n", st.Records, st.Refused,
			statusKiB(status, "VmRSS:"), statusKiB(status, "VmHWM:"), ms.HeapAlloc, (file+wal)>>10)
	}
}

func statusKiB(status []byte, field string) int64 {
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}
