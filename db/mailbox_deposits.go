package db

import (
	"crypto/sha256"
	"database/sql"
	"errors"
	"math"
	"slices"
	"strings"
	"time"
)

// Deposits: stored in groups (one commit for all the deposits that
// arrived while the last one was committing), paged out to their owner,
// deleted when the owner acknowledges them or when they expire.

// DepositResult is what became of a deposit.
type DepositResult int

const (
	DepositStored DepositResult = iota + 1
	// DepositDuplicate: the same seal was in the inbox already (a retry
	// whose answer was lost): as good as stored.
	DepositDuplicate
	// DepositQuota: the owner's quota (deposits, bytes, or waiting
	// strangers) is reached.
	DepositQuota
	DepositUnknownInbox
)

// MailboxDeposit is a deposit to store.
type MailboxDeposit struct {
	Inbox    [InboxSize]byte
	Seal     []byte
	Stranger bool
	// TTL is the sender's wish, kept within the owner's TTL.
	TTL time.Duration
	// MaxStrangers bounds the strangers' deposits waiting in the inbox.
	MaxStrangers int
	Now          time.Time
}

type depositReq struct {
	ds   []MailboxDeposit
	done chan depositAns
}

type depositAns struct {
	r   []DepositResult
	err error
}

// Deposit stores a deposit, in a commit shared with the deposits made at
// the same time, and returns once that commit is durable.
func (m *Mailbox) Deposit(d MailboxDeposit) (DepositResult, error) {
	r, err := m.Deposits([]MailboxDeposit{d})
	if err != nil {
		return 0, err
	}
	return r[0], nil
}

// Deposits stores deposits in this order (their sequence numbers follow
// it), in commits shared with the deposits made at the same time, and
// returns each one's result once they are durable.
func (m *Mailbox) Deposits(ds []MailboxDeposit) ([]DepositResult, error) {
	req := &depositReq{ds: ds, done: make(chan depositAns, 1)}
	select {
	case m.deposits <- req:
	case <-m.stopping:
		return nil, ErrClosed
	}
	a := <-req.done
	return a.r, a.err
}

func (m *Mailbox) depositWriter() {
	defer close(m.stopped)
	for {
		var first *depositReq
		select {
		case first = <-m.deposits:
		case <-m.stopping:
			return
		}
		group := []*depositReq{first}
		n := len(first.ds)
	gather:
		for n < MaxDepositGroup {
			select {
			case r := <-m.deposits:
				group = append(group, r)
				n += len(r.ds)
			default:
				break gather
			}
		}
		var all []*MailboxDeposit
		for _, r := range group {
			for i := range r.ds {
				all = append(all, &r.ds[i])
			}
		}
		results := make([]DepositResult, len(all))
		err := m.tx(func(tx *sql.Tx) error { return storeDeposits(tx, all, results) })
		if err != nil {
			err = m.probe().classify("store deposits", err)
		}
		for _, r := range group {
			r.done <- depositAns{results[:len(r.ds):len(r.ds)], err}
			results = results[len(r.ds):]
		}
	}
}

// inboxUse is an owner's use and limits, as a group of deposits changes it.
type inboxUse struct {
	quota, used, strangers int
	quotaBytes, usedBytes  int64
	ttl                    time.Duration
	changed                bool
}

func storeDeposits(tx *sql.Tx, group []*MailboxDeposit, results []DepositResult) error {
	dup, err := tx.Prepare("SELECT count(*) FROM deposits WHERE inbox = ? AND digest = ?")
	if err != nil {
		return err
	}
	defer dup.Close()
	ins, err := tx.Prepare("INSERT INTO deposits (inbox, digest, received, expires, stranger, seal) VALUES (?, ?, ?, ?, ?, ?)")
	if err != nil {
		return err
	}
	defer ins.Close()
	uses := map[[InboxSize]byte]*inboxUse{}
	for i, d := range group {
		u, ok := uses[d.Inbox]
		if !ok {
			u = &inboxUse{}
			var ttl int64
			err := tx.QueryRow("SELECT quota, used, strangers_waiting, quota_bytes, used_bytes, ttl FROM owners WHERE inbox = ?", d.Inbox[:]).
				Scan(&u.quota, &u.used, &u.strangers, &u.quotaBytes, &u.usedBytes, &ttl)
			if errors.Is(err, sql.ErrNoRows) {
				u = nil
			} else if err != nil {
				return err
			} else {
				u.ttl = time.Duration(ttl) * time.Second
			}
			uses[d.Inbox] = u
		}
		if u == nil {
			results[i] = DepositUnknownInbox
			continue
		}
		digest := sha256.Sum256(d.Seal)
		var n int
		if err := dup.QueryRow(d.Inbox[:], digest[:]).Scan(&n); err != nil {
			return err
		}
		switch {
		case n > 0:
			results[i] = DepositDuplicate
			continue
		case u.used+1 > u.quota || u.usedBytes+int64(len(d.Seal)) > u.quotaBytes,
			d.Stranger && u.strangers+1 > d.MaxStrangers:
			results[i] = DepositQuota
			continue
		}
		ttl := u.ttl
		if d.TTL > 0 && d.TTL < ttl {
			ttl = d.TTL
		}
		if _, err := ins.Exec(d.Inbox[:], digest[:], millis(d.Now), millis(d.Now.Add(ttl)), d.Stranger, d.Seal); err != nil {
			return err
		}
		u.used++
		u.usedBytes += int64(len(d.Seal))
		if d.Stranger {
			u.strangers++
		}
		u.changed = true
		results[i] = DepositStored
	}
	for inbox, u := range uses {
		if u != nil && u.changed {
			if _, err := tx.Exec("UPDATE owners SET used = ?, used_bytes = ?, strangers_waiting = ? WHERE inbox = ?",
				u.used, u.usedBytes, u.strangers, inbox[:]); err != nil {
				return err
			}
		}
	}
	return nil
}

// HasDeposit reports whether the inbox holds a deposit whose seal has
// this SHA-256 digest.
func (m *Mailbox) HasDeposit(inbox [InboxSize]byte, digest [32]byte) (bool, error) {
	var n int
	err := m.rdb.QueryRow("SELECT count(*) FROM deposits WHERE inbox = ? AND digest = ?", inbox[:], digest[:]).Scan(&n)
	return n > 0, m.probe().classify("look for a deposit", err)
}

// MailboxStored is a deposit as paged out to its owner.
type MailboxStored struct {
	Seq      uint64
	Received time.Time
	Seal     []byte
}

// Page returns the inbox's deposits after seq, in order: at most
// maxItems, and as many as fit budget bytes when each costs perItem bytes
// besides its seal (at least one, whatever its size); and whether others
// follow.
func (m *Mailbox) Page(inbox [InboxSize]byte, after uint64, budget, perItem, maxItems int) ([]MailboxStored, bool, error) {
	if after > math.MaxInt64 {
		return nil, false, nil // SQLite's rowids stop there
	}
	rows, err := m.rdb.Query("SELECT seq, received, seal FROM deposits WHERE inbox = ? AND seq > ? ORDER BY seq", inbox[:], after)
	if err != nil {
		return nil, false, m.probe().classify("page deposits", err)
	}
	defer rows.Close()
	var out []MailboxStored
	size := 0
	for rows.Next() {
		var d MailboxStored
		var received int64
		if err := rows.Scan(&d.Seq, &received, &d.Seal); err != nil {
			return nil, false, m.probe().classify("page deposits", err)
		}
		if len(out) > 0 && (len(out) == maxItems || size+perItem+len(d.Seal) > budget) {
			return out, true, nil
		}
		d.Received = fromMillis(received)
		size += perItem + len(d.Seal)
		out = append(out, d)
	}
	return out, false, m.probe().classify("page deposits", rows.Err())
}

// Ack deletes the inbox's deposits of these sequence numbers (the owner
// has them), and reports how many there were.
func (m *Mailbox) Ack(inbox [InboxSize]byte, seqs []uint64) (int, error) {
	seqs = slices.DeleteFunc(slices.Clone(seqs), func(s uint64) bool { return s > math.MaxInt64 })
	total := 0
	err := m.write("acknowledge deposits", func(tx *sql.Tx) error {
		for len(seqs) > 0 {
			chunk := seqs[:min(len(seqs), 500)]
			seqs = seqs[len(chunk):]
			args := []any{inbox[:]}
			for _, s := range chunk {
				args = append(args, s)
			}
			n, err := deleteDeposits(tx, "inbox = ? AND seq IN (?"+strings.Repeat(", ?", len(chunk)-1)+")", args...)
			if err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	return total, err
}
