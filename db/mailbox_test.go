package db

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func openMailbox(t testing.TB) *Mailbox {
	t.Helper()
	m, err := OpenMailbox(filepath.Join(t.TempDir(), MailboxFileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

var inbox1, inbox2 = [InboxSize]byte{1}, [InboxSize]byte{2}

func addOwners(t testing.TB, m *Mailbox) {
	t.Helper()
	for i, o := range []MailboxOwner{
		{Peer: "owner1", Inbox: inbox1, Quota: 5, QuotaBytes: 1000, TTLMax: 24 * time.Hour},
		{Peer: "owner2", Inbox: inbox2, Quota: 100, QuotaBytes: 1 << 20, TTLMax: time.Hour},
	} {
		if err := m.AddOwner(o, t0.Add(time.Duration(i)*time.Second), 0); err != nil {
			t.Fatal(err)
		}
	}
}

func deposit(t testing.TB, m *Mailbox, d MailboxDeposit) DepositResult {
	t.Helper()
	if d.Now.IsZero() {
		d.Now = t0
	}
	r, err := m.Deposit(d)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Deposits are stored once (a retry is a duplicate), within the owner's
// quotas of count, bytes and waiting strangers, paged out in order, and
// deleted on acknowledgement, which frees the quota.
func TestMailboxDeposits(t *testing.T) {
	m := openMailbox(t)
	addOwners(t, m)
	if err := m.AddOwner(MailboxOwner{Peer: "owner1", Inbox: [16]byte{9}, Quota: 1, QuotaBytes: 1, TTLMax: time.Hour}, t0, 0); !errors.Is(err, ErrOwnerExists) {
		t.Fatalf("an owner twice: %v", err)
	}
	if err := m.AddOwner(MailboxOwner{Peer: "owner3", Inbox: [16]byte{9}, Quota: 1, QuotaBytes: 1, TTLMax: time.Hour}, t0, 2); !errors.Is(err, ErrFull) {
		t.Fatalf("a third owner where two are the most: %v", err)
	}
	seal := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 100) }
	for i := range 4 {
		if r := deposit(t, m, MailboxDeposit{Inbox: inbox1, Seal: seal(i)}); r != DepositStored {
			t.Fatalf("deposit %d: %v", i, r)
		}
	}
	if r := deposit(t, m, MailboxDeposit{Inbox: inbox1, Seal: seal(2)}); r != DepositDuplicate {
		t.Fatalf("a retried deposit: %v", r)
	}
	if r := deposit(t, m, MailboxDeposit{Inbox: inbox1, Seal: seal(9), Stranger: true, MaxStrangers: 0}); r != DepositQuota {
		t.Fatalf("a stranger over the cap: %v", r)
	}
	if r := deposit(t, m, MailboxDeposit{Inbox: inbox1, Seal: seal(10), Stranger: true, MaxStrangers: 1}); r != DepositStored {
		t.Fatalf("a stranger: %v", r)
	}
	if r := deposit(t, m, MailboxDeposit{Inbox: inbox1, Seal: seal(11)}); r != DepositQuota {
		t.Fatalf("over the count quota: %v", r)
	}
	if r := deposit(t, m, MailboxDeposit{Inbox: [16]byte{7}, Seal: seal(1)}); r != DepositUnknownInbox {
		t.Fatalf("an unknown inbox: %v", r)
	}
	if r := deposit(t, m, MailboxDeposit{Inbox: inbox2, Seal: make([]byte, 1<<20+1)}); r != DepositQuota {
		t.Fatalf("over the byte quota: %v", r)
	}
	for seal, want := range map[string]bool{string(seal(2)): true, string(seal(11)): false} {
		if has, err := m.HasDeposit(inbox1, sha256.Sum256([]byte(seal))); err != nil || has != want {
			t.Fatalf("HasDeposit %v, want %v (%v)", has, want, err)
		}
	}
	o, err := m.Owner("owner1")
	if err != nil {
		t.Fatal(err)
	}
	if o.Used != 5 || o.UsedBytes != 500 || o.StrangersWaiting != 1 {
		t.Fatalf("use %d deposits, %d bytes, %d strangers", o.Used, o.UsedBytes, o.StrangersWaiting)
	}
	// Pages of at most 250 bytes: two deposits each, in order.
	var seqs []uint64
	var got [][]byte
	for after := uint64(0); ; {
		page, more, err := m.Page(inbox1, after, 250, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 2 {
			t.Fatalf("a page of %d deposits", len(page))
		}
		for _, d := range page {
			seqs = append(seqs, d.Seq)
			got = append(got, d.Seal)
			after = d.Seq
		}
		if !more {
			break
		}
	}
	want := [][]byte{seal(0), seal(1), seal(2), seal(3), seal(10)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("paged %d deposits out of order", len(got))
	}
	if page, _, _ := m.Page(inbox1, 0, 1, 0, 100); len(page) != 1 {
		t.Fatalf("a page smaller than one deposit holds %d", len(page))
	}
	// Each deposit's overhead counts, and so does the item cap.
	if page, _, _ := m.Page(inbox1, 0, 250, 30, 100); len(page) != 1 {
		t.Fatalf("two deposits of 100 bytes and 30 of overhead each fit 250 bytes: %d", len(page))
	}
	if page, more, _ := m.Page(inbox1, 0, 1<<20, 0, 3); len(page) != 3 || !more {
		t.Fatalf("a page of at most 3 holds %d (more %v)", len(page), more)
	}
	if n, err := m.Ack(inbox2, seqs); err != nil || n != 0 {
		t.Fatalf("another owner acknowledged %d: %v", n, err)
	}
	if n, err := m.Ack(inbox1, append(seqs[:3], 1<<63, 1<<40)); err != nil || n != 3 {
		t.Fatalf("acknowledged %d: %v", n, err)
	}
	if r := deposit(t, m, MailboxDeposit{Inbox: inbox1, Seal: seal(12)}); r != DepositStored {
		t.Fatalf("after an ack freed the quota: %v", r)
	}
	if o, _ := m.Owner("owner1"); o.Used != 3 || o.UsedBytes != 300 {
		t.Fatalf("after the ack: %d deposits, %d bytes", o.Used, o.UsedBytes)
	}
	// Removing the owner removes its deposits.
	if ok, err := m.RemoveOwner("owner1"); !ok || err != nil {
		t.Fatalf("remove: %v, %v", ok, err)
	}
	if page, _, _ := m.Page(inbox1, 0, 1<<20, 0, 100); len(page) != 0 {
		t.Fatalf("%d deposits left after the owner went", len(page))
	}
}

// A deposit lives for the sender's TTL within the owner's, and Expire
// deletes it then, freeing the quota.
func TestMailboxExpiry(t *testing.T) {
	m := openMailbox(t)
	addOwners(t, m)
	if err := m.SetPolicy("owner1", MailboxPolicy{TTL: 48 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	if o, _ := m.Owner("owner1"); o.TTL != 24*time.Hour {
		t.Fatalf("a TTL over the operator's maximum became %v", o.TTL)
	}
	deposit(t, m, MailboxDeposit{Inbox: inbox1, Seal: []byte("short"), TTL: time.Hour})
	deposit(t, m, MailboxDeposit{Inbox: inbox1, Seal: []byte("long"), TTL: 72 * time.Hour})
	for _, c := range []struct {
		at   time.Duration
		gone int
	}{{59 * time.Minute, 0}, {time.Hour, 1}, {24*time.Hour - time.Second, 0}, {24 * time.Hour, 1}} {
		if n, err := m.Expire(t0.Add(c.at)); err != nil || n != c.gone {
			t.Fatalf("at %v: %d expired, want %d (%v)", c.at, n, c.gone, err)
		}
	}
	if o, _ := m.Owner("owner1"); o.Used != 0 || o.UsedBytes != 0 {
		t.Fatalf("after expiry: %d deposits, %d bytes", o.Used, o.UsedBytes)
	}
}

// Concurrent deposits share commits and all land, once each.
func TestMailboxDepositGroups(t *testing.T) {
	m := openMailbox(t)
	if err := m.AddOwner(MailboxOwner{Peer: "o", Inbox: inbox1, Quota: 10000, QuotaBytes: 1 << 30, TTLMax: time.Hour}, t0, 0); err != nil {
		t.Fatal(err)
	}
	const n = 400
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			for try := range 2 { // the second is a retry: a duplicate
				r, err := m.Deposit(MailboxDeposit{Inbox: inbox1, Seal: []byte(fmt.Sprint(i)), Now: t0})
				if err == nil && r != []DepositResult{DepositStored, DepositDuplicate}[try] {
					err = fmt.Errorf("deposit %d, try %d: %v", i, try, r)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	page, _, err := m.Page(inbox1, 0, 1<<30, 20, 1000)
	if err != nil || len(page) != n {
		t.Fatalf("%d deposits stored, want %d (%v)", len(page), n, err)
	}
}

// One-time keys: at most max of each kind kept, one of each handed out
// at a time, lowest id first, never twice.
func TestMailboxOTKs(t *testing.T) {
	m := openMailbox(t)
	addOwners(t, m)
	var otks []MailboxOTK
	for i := range 5 {
		otks = append(otks, MailboxOTK{Kind: 1, ID: uint32(10 - i), Cert: []byte{1, byte(i)}}, MailboxOTK{Kind: 2, ID: uint32(20 + i), Cert: []byte{2, byte(i)}})
	}
	counts, err := m.PutOTKs("owner1", otks, 4)
	if err != nil || counts[1] != 4 || counts[2] != 4 {
		t.Fatalf("counts %v, %v", counts, err)
	}
	if _, err := m.PutOTKs("nobody", otks, 4); !errors.Is(err, ErrNoInbox) {
		t.Fatalf("keys for no owner: %v", err)
	}
	seen := map[uint32]bool{}
	for round := range 5 {
		got, err := m.TakeOTKs(inbox1)
		if err != nil {
			t.Fatal(err)
		}
		if round == 4 {
			if len(got) != 0 {
				t.Fatalf("handed out %d keys from an empty store", len(got))
			}
			break
		}
		if len(got) != 2 || got[0].Kind != 1 || got[1].Kind != 2 {
			t.Fatalf("round %d: %+v", round, got)
		}
		for _, k := range got {
			if seen[k.ID] {
				t.Fatalf("key %d handed out twice", k.ID)
			}
			seen[k.ID] = true
		}
		if got[0].ID != uint32(7+round) {
			t.Fatalf("round %d handed out X25519 key %d, not the lowest", round, got[0].ID)
		}
	}
}

// An invitation admits one owner, once, before it expires.
func TestMailboxInvites(t *testing.T) {
	m := openMailbox(t)
	secret := []byte("a 32-byte invitation secret.....")
	limits := MailboxOwner{Quota: 7, QuotaBytes: 7000, TTLMax: time.Hour}
	if err := m.AddInvite(sha256.Sum256(secret), limits, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.RedeemInvite([]byte("wrong"), "p", inbox1, t0, 0); !errors.Is(err, ErrBadInvite) {
		t.Fatalf("a wrong secret: %v", err)
	}
	if _, err := m.RedeemInvite(secret, "p", inbox1, t0.Add(time.Hour), 0); !errors.Is(err, ErrBadInvite) {
		t.Fatalf("an expired invitation: %v", err)
	}
	if ok, err := m.InviteValid(secret, t0); !ok || err != nil {
		t.Fatalf("a waiting invitation: %v, %v", ok, err)
	}
	o, err := m.RedeemInvite(secret, "p", inbox1, t0, 0)
	if err != nil || o.Quota != 7 || o.QuotaBytes != 7000 || o.TTLMax != time.Hour || o.Inbox != inbox1 {
		t.Fatalf("redeemed: %+v, %v", o, err)
	}
	if _, err := m.RedeemInvite(secret, "q", inbox2, t0, 0); !errors.Is(err, ErrBadInvite) {
		t.Fatalf("an invitation redeemed twice: %v", err)
	}
}

// Revoked token indexes stay revoked until the token key changes.
func TestMailboxRevoked(t *testing.T) {
	m := openMailbox(t)
	addOwners(t, m)
	key := bytes.Repeat([]byte{1}, 32)
	if err := m.SetPolicy("owner1", MailboxPolicy{TokenKey: key, Revoked: []uint32{3}}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetPolicy("owner1", MailboxPolicy{TokenKey: key, Revoked: []uint32{4}}); err != nil {
		t.Fatal(err)
	}
	for idx, want := range map[uint32]bool{3: true, 4: true, 5: false} {
		if got, err := m.Revoked(inbox1, idx); err != nil || got != want {
			t.Fatalf("index %d revoked %v (%v)", idx, got, err)
		}
	}
	if err := m.SetPolicy("owner1", MailboxPolicy{TokenKey: bytes.Repeat([]byte{2}, 32)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Revoked(inbox1, 3); got {
		t.Fatal("a new token key kept the old revocations")
	}
	many := make([]uint32, MaxRevoked+1)
	for i := range many {
		many[i] = uint32(i)
	}
	if err := m.SetPolicy("owner1", MailboxPolicy{TokenKey: bytes.Repeat([]byte{2}, 32), Revoked: many}); !errors.Is(err, ErrTooMany) {
		t.Fatalf("more revoked indexes than kept: %v", err)
	}
	if err := m.SetPolicy("nobody", MailboxPolicy{}); !errors.Is(err, ErrNoInbox) {
		t.Fatalf("a policy for no owner: %v", err)
	}
}

// The file survives a reopen, and another program's file (or the node's
// own store) is refused untouched.
func TestMailboxFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, MailboxFileName)
	m, err := OpenMailbox(path)
	if err != nil {
		t.Fatal(err)
	}
	addOwners(t, m)
	deposit(t, m, MailboxDeposit{Inbox: inbox1, Seal: []byte("kept")})
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if m, err = OpenMailbox(path); err != nil {
		t.Fatal(err)
	}
	if page, _, err := m.Page(inbox1, 0, 100, 20, 10); err != nil || len(page) != 1 {
		t.Fatalf("after reopening: %d deposits, %v", len(page), err)
	}
	m.Close()
	if _, err := m.Deposit(MailboxDeposit{Inbox: inbox1, Seal: []byte("x")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("a deposit after Close: %v", err)
	}
	s := open(t, filepath.Join(dir, "store"), "")
	s.Close()
	store := filepath.Join(dir, "store", FileName)
	before, _ := os.ReadFile(store)
	if _, err := OpenMailbox(store); !errors.Is(err, ErrNotP2PMsg) {
		t.Fatalf("the node's store opened as a mailbox: %v", err)
	}
	if after, _ := os.ReadFile(store); !bytes.Equal(before, after) {
		t.Fatal("the refused file was written")
	}
}

// BenchmarkMailboxDeposit: deposits a second into one inbox from 64
// concurrent depositors, as a mailbox's handlers make them (group
// commit, synchronous=FULL); seals of 1 KiB, the smallest step.
//
//	go test ./db -run '^$' -bench MailboxDeposit -benchtime 20000x
func BenchmarkMailboxDeposit(b *testing.B) {
	m := openMailbox(b)
	if err := m.AddOwner(MailboxOwner{Peer: "o", Inbox: inbox1, Quota: 1 << 30, QuotaBytes: 1 << 40, TTLMax: time.Hour}, t0, 0); err != nil {
		b.Fatal(err)
	}
	seal := make([]byte, 1<<10)
	var next sync.Mutex
	i := 0
	b.SetParallelism(32) // × GOMAXPROCS depositors
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		s := bytes.Clone(seal)
		for pb.Next() {
			next.Lock()
			i++
			n := i
			next.Unlock()
			s[0], s[1], s[2], s[3] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
			r, err := m.Deposit(MailboxDeposit{Inbox: inbox1, Seal: s, Now: t0})
			if err != nil || r != DepositStored {
				b.Errorf("deposit %d: %v, %v", n, r, err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deposits/s")
}
