package db

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func openRecords(t testing.TB, path string) *Records {
	t.Helper()
	r, err := OpenRecords(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func recordsIn(t testing.TB, r *Records) map[string]Record {
	t.Helper()
	m := map[string]Record{}
	if err := r.Each(func(rec Record) error { m[rec.Key] = rec; return nil }); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRecordsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), RecordsFileName)
	r := openRecords(t, path)
	for i := range 3 {
		rec := &Record{Key: fmt.Sprintf("/k/%d", i), Sender: []byte{byte(i)}, Expires: t0, Data: bytes.Repeat([]byte{byte(i)}, 100+i)}
		if i == 2 {
			rec.Sender = nil // the node's own
		}
		if err := r.Write(nil, rec); err != nil {
			t.Fatal(err)
		}
	}
	// Replace one and delete another in one transaction.
	if err := r.Write([]string{"/k/1", "/k/none"}, &Record{Key: "/k/0", Sender: []byte{7}, Expires: t0.Add(1), Data: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := r.Get("/k/0"); err == nil {
		t.Fatal("Get after Close")
	}

	r = openRecords(t, path)
	m := recordsIn(t, r)
	if len(m) != 2 || m["/k/0"].Size != 3 || !bytes.Equal(m["/k/0"].Sender, []byte{7}) || m["/k/0"].Data != nil ||
		!m["/k/0"].Expires.Equal(t0) || len(m["/k/2"].Sender) != 0 || m["/k/2"].Size != 102 {
		t.Fatalf("after reopening: %+v", m)
	}
	if d, ok, err := r.Get("/k/0"); err != nil || !ok || string(d) != "new" {
		t.Fatalf("Get: %q %v %v", d, ok, err)
	}
	if _, ok, err := r.Get("/k/1"); err != nil || ok {
		t.Fatalf("deleted record: %v %v", ok, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	stop := errors.New("stop")
	if err := r.Each(func(Record) error { return stop }); err != stop {
		t.Fatalf("Each does not return f's error: %v", err)
	}
}

// OpenRecords touches no file it does not recognise, and says that its
// own may be deleted when it cannot use it.
func TestRecordsRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	store := open(t, dir, "")
	store.Close()
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte(strings.Repeat("not a database ", 20)), 0o600)
	newer := filepath.Join(dir, "newer.sqlite")
	r := openRecords(t, newer)
	r.Close()
	raw, err := sql.Open("sqlite3", newer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec("PRAGMA user_version = 2"); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	for name, c := range map[string]struct {
		path string
		want error
	}{
		"the main store": {filepath.Join(dir, FileName), ErrNotP2PMsg},
		"a text file":    {text, ErrNotP2PMsg},
		"a newer schema": {newer, ErrTooNew},
	} {
		before, _ := os.ReadFile(c.path)
		_, err := OpenRecords(c.path)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), "may be deleted") {
			t.Errorf("%s: %v", name, err)
		}
		if after, _ := os.ReadFile(c.path); !bytes.Equal(before, after) {
			t.Errorf("%s: the file changed", name)
		}
	}
}

// Churn within a bounded set of records (what a store at its cap sees)
// leaves the file bounded by what it holds, not by what passed through:
// SQLite reuses the pages it freed, and the WAL is cut back after each
// checkpoint.
func TestRecordsFileStaysBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), RecordsFileName)
	r := openRecords(t, path)
	const live, size, rounds = 64, 8 << 10, 40
	data := bytes.Repeat([]byte{0xa5}, size)
	size0 := func() int64 {
		var total int64
		for _, suffix := range []string{"", "-wal"} {
			if fi, err := os.Stat(path + suffix); err == nil {
				total += fi.Size()
			}
		}
		return total
	}
	var peak int64
	for round := range rounds {
		for i := range live {
			del := []string{fmt.Sprintf("/k/%d/%d", round-1, i)}
			if err := r.Write(del, &Record{Key: fmt.Sprintf("/k/%d/%d", round, i), Sender: []byte("p"), Expires: t0, Data: data}); err != nil {
				t.Fatal(err)
			}
		}
		peak = max(peak, size0())
	}
	if n := len(recordsIn(t, r)); n != live {
		t.Fatalf("%d records", n)
	}
	main, _ := os.Stat(path)
	t.Logf("%d records of %d KiB written, %d held: file %d KiB, file and WAL at most %d KiB",
		live*rounds, size>>10, live, main.Size()>>10, peak>>10)
	if limit := int64(2*live*size + 64<<10); main.Size() > limit {
		t.Fatalf("file %d bytes for %d bytes of records", main.Size(), live*size)
	}
	if limit := int64(2*live*size + recordsWALLimit + 1<<20); peak > limit {
		t.Fatalf("file and WAL reached %d bytes", peak)
	}
}
