package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/node/wire"
)

// What a conversation carries beyond text (docs/content.md): replies,
// edits, deletions for everyone, reactions, disappearing timers, read
// receipts and display names. Each change is applied to our store and
// queued to the peer in one transaction of the conversation, as a
// control message that lasts until the peer has it (through a mailbox,
// until its receipt), like a message.

// MaxProfileName is the longest display name, in bytes.
const MaxProfileName = wire.MaxProfileName

// ErrNotYours: only its sender edits or deletes a message.
var ErrNotYours = errors.New("node: only its sender can change a message")

// profileSetting is where the user's display name is kept.
const profileSetting = "profile_name"

// Draft is a message to send.
type Draft struct {
	Text    string
	ReplyTo MessageID // the message it quotes; zero: none
}

// timer is the disappearing timer of a message written now.
func (c *conv) timer(st *batchState) time.Duration {
	if st.contact == nil {
		return 0
	}
	return st.contact.Timer
}

// plaintext is the content of one of our messages as stored. It
// carries our display name while the peer was not sent the current one
// (a new contact learns it with our first message, which a stranger's
// limits count as one), and always under a session it starts (the peer
// may have lost what it knew). The caller records the name as sent
// (profileSent) once the message is queued.
func (c *conv) plaintext(tx *db.Tx, st *batchState, m db.Message, started bool) (pt []byte, profile *string, err error) {
	w := wire.Message{Text: m.Body, ReplyTo: e2e.MessageID(m.ReplyTo), Timer: uint32(m.Timer / time.Second)}
	name, err := profileName(tx.Read())
	if err != nil {
		return nil, nil, err
	}
	sent := ""
	if st.contact != nil {
		sent = st.contact.ProfileSent
	}
	if name != sent || started && name != "" {
		w.Profile, w.HasProfile, profile = name, true, &name
	}
	pt, err = wire.EncodeMessage(m.Sent.UnixMilli(), w)
	return pt, profile, err
}

// profileSent records that the peer was sent our display name.
func (c *conv) profileSent(tx *db.Tx, st *batchState, name *string) error {
	if name == nil || st.contact == nil || st.contact.ProfileSent == *name {
		return nil
	}
	st.contact.ProfileSent = *name
	return tx.SetProfileSent(c.key, *name)
}

func profileName(r *db.ReadTx) (string, error) {
	b, err := r.Setting(profileSetting)
	if errors.Is(err, db.ErrNotFound) {
		return "", nil
	}
	return string(b), err
}

// checkText is what every text we send must be.
func checkText(text string) error {
	switch {
	case strings.TrimSpace(text) == "":
		return fmt.Errorf("%w: the message is empty", ErrInvalid)
	case len(text) > MaxTextSize:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLong, len(text), MaxTextSize)
	case !utf8.ValidString(text):
		return fmt.Errorf("%w: the message text is not valid UTF-8", ErrInvalid)
	}
	return nil
}

// changeOp changes the conversation: its local effect, then (when
// change returns a plaintext encoder) a control message to the peer,
// in one transaction.
type changeOp struct {
	done
	change changeFunc
	// local: the change tells the peer nothing (marking read, whose
	// receipts change checks itself), so it applies to a blocked
	// contact or a request too.
	local bool
	err   error
}

// changeFunc makes a change in the batch's transaction and returns the
// control message's encoder (nil: nothing to send), or why it refused
// (nothing changed), or the store's error.
type changeFunc func(c *conv, tx *db.Tx, st *batchState, now time.Time) (encode func(sent int64) ([]byte, error), refused, err error)

func (o *changeOp) fail(err error) { o.err = err }

func (o *changeOp) apply(c *conv, tx *db.Tx, st *batchState, now time.Time) error {
	if st.contact == nil {
		o.err = fmt.Errorf("%w: %s is not a contact", ErrNotFound, c.key)
		return nil
	}
	if !o.local && st.contact.Blocked {
		o.err = fmt.Errorf("%w: %s", ErrBlocked, c.key)
		return nil
	}
	if !o.local && st.contact.State != db.ContactAccepted {
		// What we do tells a stranger that we read its request.
		o.err = fmt.Errorf("%w: %s is a contact request: accept it first (or write to it)", ErrInvalid, c.key)
		return nil
	}
	encode, refused, err := o.change(c, tx, st, now)
	if err != nil || refused != nil || encode == nil {
		o.err = refused
		return err
	}
	s := c.rec.current()
	if s == nil {
		return errors.New("node: a change with no session to send it under") // change checks first
	}
	pt, err := encode(now.UnixMilli())
	if err != nil {
		return err
	}
	id, env, err := s.Encrypt(pt)
	if err != nil {
		return fmt.Errorf("node: encrypt: %w", err)
	}
	st.dirty, st.kick = true, true
	return tx.Enqueue(db.OutboxEntry{MessageID: id, Peer: c.key, Envelope: env, NextAttempt: now, Created: now, Control: true, Lasting: true})
}

// change runs f in p's conversation.
func (n *Node) change(p peer.ID, f changeFunc) error { return n.runChange(p, f, false) }

// runChange runs a change (local: one that tells the peer nothing).
func (n *Node) runChange(p peer.ID, f changeFunc, local bool) error {
	if err := n.running(); err != nil {
		return err
	}
	o := &changeOp{done: newDone(), change: f, local: local}
	if err := n.runOp(p, o); err != nil {
		return err
	}
	return o.err
}

// noSession is the refusal of a change that must reach the peer when
// there is no session to carry it.
func noSession(p string) error {
	return fmt.Errorf("%w: no session with %s yet (send a message first)", ErrInvalid, p)
}

// ownMessage checks that id is one of our messages of the conversation,
// not deleted, that an edit or a deletion may change, and reports
// whether it still waits for a session (the change is then local alone:
// it goes out as changed); else there must be a session to tell the peer
// under. refused says why not; err is the store's.
func ownMessage(c *conv, tx *db.Tx, id MessageID) (waiting bool, refused, err error) {
	r := tx.Read()
	m, err := r.Own(c.key, id)
	switch {
	case errors.Is(err, db.ErrNotFound):
		return false, fmt.Errorf("%w: no message %s in the conversation with %s", ErrNotFound, id, c.key), nil
	case errors.Is(err, db.ErrNotYours):
		return false, fmt.Errorf("%w: message %s is %s's", ErrNotYours, id, c.key), nil
	case err != nil:
		return false, nil, err
	case !m.Deleted.IsZero():
		return false, fmt.Errorf("%w: message %s was deleted", ErrInvalid, id), nil
	}
	if waiting, err = r.WaitsForSession(id); err != nil {
		return false, nil, err
	}
	if !waiting && c.rec.current() == nil {
		return false, noSession(c.key), nil
	}
	return waiting, nil, nil
}

// Edit replaces the text of one of our messages, here and at the peer,
// which keeps the latest text and marks it edited.
func (n *Node) Edit(p peer.ID, id MessageID, text string) error {
	if err := checkText(text); err != nil {
		return err
	}
	return n.change(p, func(c *conv, tx *db.Tx, st *batchState, now time.Time) (func(int64) ([]byte, error), error, error) {
		waiting, refused, err := ownMessage(c, tx, id)
		if refused != nil || err != nil {
			return nil, refused, err
		}
		if _, err := tx.EditMessage(c.key, id, db.Outgoing, text, now); err != nil {
			return nil, nil, err
		}
		if err := st.event(tx, EventEdit, payload{Peer: c.key, MessageID: id.String(), Direction: "out"}, now); err != nil {
			return nil, nil, err
		}
		if waiting {
			return nil, nil, nil
		}
		return func(sent int64) ([]byte, error) {
			return wire.EncodeEdit(sent, wire.Edit{ID: e2e.MessageID(id), Text: text})
		}, nil, nil
	})
}

// Delete deletes one of our messages for everyone: its text goes from
// both stores, a tombstone stays.
func (n *Node) Delete(p peer.ID, id MessageID) error {
	return n.change(p, func(c *conv, tx *db.Tx, st *batchState, now time.Time) (func(int64) ([]byte, error), error, error) {
		waiting, refused, err := ownMessage(c, tx, id)
		if refused != nil || err != nil {
			return nil, refused, err
		}
		if waiting {
			// Never encrypted: it never goes.
			if err := tx.Unqueue(c.key, id); err != nil {
				return nil, nil, err
			}
		}
		if _, err := tx.DeleteForEveryone(c.key, id, db.Outgoing, now); err != nil {
			return nil, nil, err
		}
		st.purge = true
		if err := st.event(tx, EventDelete, payload{Peer: c.key, MessageID: id.String(), Direction: "out"}, now); err != nil {
			return nil, nil, err
		}
		if waiting {
			return nil, nil, nil
		}
		return func(sent int64) ([]byte, error) { return wire.EncodeDelete(sent, e2e.MessageID(id)) }, nil, nil
	})
}

// checkEmoji: a reaction is one emoji, not text: at most 32 bytes and
// 10 code points, each a symbol (So), a skin tone (Sk), a combining mark
// (Mn, Me: the keycap), the zero-width joiner, a variation selector or a
// tag character (subdivision flags); a digit, # or * only before a keycap
// or an emoji presentation selector, as in 5️⃣; and at least one symbol.
// So "ok", "5", "lol😂" and a direction override are refused.
func checkEmoji(e string) error {
	bad := fmt.Errorf("%w: a reaction is one emoji, not %q", ErrInvalid, e)
	if len(e) > wire.MaxEmoji || !utf8.ValidString(e) || utf8.RuneCountInString(e) > 10 {
		return bad
	}
	rs := []rune(e)
	symbol := false
	for i, r := range rs {
		next := rune(0)
		if i+1 < len(rs) {
			next = rs[i+1]
		}
		switch {
		case unicode.Is(unicode.So, r):
			symbol = true
		case unicode.In(r, unicode.Sk, unicode.Mn, unicode.Me),
			r == '\u200d', r == '\ufe0e', r == '\ufe0f', r >= 0xe0020 && r <= 0xe007f:
		case (r >= '0' && r <= '9' || r == '#' || r == '*' || unicode.IsLetter(r)) && (next == '\ufe0f' || next == '\u20e3'):
			symbol = true // a keycap, or a letter-like symbol shown as an emoji (ℹ️)
		default:
			return bad
		}
	}
	if !symbol {
		return bad
	}
	return nil
}

// React sets our reaction to a message of the conversation (ours or
// theirs); an empty emoji takes it back.
func (n *Node) React(p peer.ID, id MessageID, emoji string) error {
	if emoji != "" {
		if err := checkEmoji(emoji); err != nil {
			return err
		}
	}
	return n.change(p, func(c *conv, tx *db.Tx, st *batchState, now time.Time) (func(int64) ([]byte, error), error, error) {
		if c.rec.current() == nil {
			return nil, noSession(c.key), nil
		}
		ok, err := tx.SetReaction(c.key, id, "", emoji, now)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: no message %s in the conversation with %s (or it was deleted)", ErrNotFound, id, c.key), nil
		}
		if err := st.event(tx, EventReaction, payload{Peer: c.key, MessageID: id.String(), Emoji: emoji}, now); err != nil {
			return nil, nil, err
		}
		return func(sent int64) ([]byte, error) {
			return wire.EncodeReaction(sent, wire.Reaction{ID: e2e.MessageID(id), Emoji: emoji})
		}, nil, nil
	})
}

// MaxTimer is the longest disappearing timer.
const MaxTimer = 365 * 24 * time.Hour

// SetTimer sets the conversation's disappearing timer (zero: off): the
// messages written from now on are deleted from both stores that long
// after the peer read them (ours: after delivery; theirs: after our user
// read them). The peer is told when there is a session to tell it under;
// each message carries its own timer in any case.
func (n *Node) SetTimer(p peer.ID, d time.Duration) error {
	if d < 0 || d > MaxTimer || d%time.Second != 0 || (d > 0 && d < time.Second) {
		return fmt.Errorf("%w: a timer is whole seconds up to %v, or off", ErrInvalid, MaxTimer)
	}
	return n.change(p, func(c *conv, tx *db.Tx, st *batchState, now time.Time) (func(int64) ([]byte, error), error, error) {
		changed, err := tx.SetTimer(c.key, d)
		if err != nil || !changed {
			return nil, nil, err
		}
		st.contact.Timer = d
		if err := st.event(tx, EventTimer, payload{Peer: c.key, Timer: int64(d / time.Second), Direction: "out"}, now); err != nil {
			return nil, nil, err
		}
		if c.rec.current() == nil {
			return nil, nil, nil
		}
		return func(sent int64) ([]byte, error) { return wire.EncodeTimer(sent, uint32(d/time.Second)), nil }, nil, nil
	})
}

// Profile returns the user's display name ("" for none).
func (n *Node) Profile() (string, error) {
	var name string
	err := n.store.View(func(r *db.ReadTx) (err error) {
		name, err = profileName(r)
		return err
	})
	return name, err
}

// SetProfile sets the user's display name and tells every accepted
// contact with a session (the others learn it with the first message of
// their next session). Contacts show it unless they named us themselves.
func (n *Node) SetProfile(ctx context.Context, name string) error {
	if err := n.running(); err != nil {
		return err
	}
	name = strings.TrimSpace(name)
	if len(name) > MaxProfileName || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
		return fmt.Errorf("%w: a display name is at most %d bytes of text", ErrInvalid, MaxProfileName)
	}
	var changed bool
	var contacts []db.Contact
	err := n.store.Update(func(tx *db.Tx) error {
		r := tx.Read()
		old, err := profileName(r)
		if err != nil || old == name {
			return err
		}
		changed = true
		if contacts, err = r.Contacts(); err != nil {
			return err
		}
		return tx.PutSetting(profileSetting, []byte(name))
	})
	if err != nil || !changed {
		return err
	}
	for _, ct := range contacts {
		if ct.State != db.ContactAccepted || ct.Blocked || ctx.Err() != nil {
			continue
		}
		p, err := peer.Decode(ct.PeerID)
		if err != nil {
			continue
		}
		err = n.change(p, func(c *conv, tx *db.Tx, st *batchState, now time.Time) (func(int64) ([]byte, error), error, error) {
			if c.rec.current() == nil {
				return nil, nil, nil // its next message carries it
			}
			if err := c.profileSent(tx, st, &name); err != nil {
				return nil, nil, err
			}
			return func(sent int64) ([]byte, error) { return wire.EncodeProfile(sent, name) }, nil, nil
		})
		if err != nil && !errors.Is(err, ErrBlocked) {
			n.log.Warn("tell a contact our display name", "peer", p, "err", err)
		}
	}
	return nil
}

// MarkRead marks the conversation with p read up to and including m,
// and tells the peer (read receipts) unless Config.NoReadReceipts. It
// returns how many messages became read.
func (n *Node) MarkRead(p peer.ID, m Message) (int, error) {
	var read int
	err := n.runChange(p, func(c *conv, tx *db.Tx, st *batchState, now time.Time) (func(int64) ([]byte, error), error, error) {
		ids, err := tx.MarkReadIDs(c.key, m.cursor, now)
		if err != nil || len(ids) == 0 {
			return nil, nil, err
		}
		read = len(ids)
		st.expiry = true
		for _, id := range ids {
			if err := st.event(tx, EventState, payload{Peer: c.key, MessageID: msgIDString(id), Direction: "in", State: string(db.Read)}, now); err != nil {
				return nil, nil, err
			}
		}
		s := c.rec.current()
		if n.cfg.NoReadReceipts || st.contact.State != db.ContactAccepted || st.contact.Blocked || s == nil {
			return nil, nil, nil
		}
		for len(ids) > 0 {
			k := min(len(ids), wire.MaxReceiptIDs)
			chunk := make([]e2e.MessageID, k)
			for i := range chunk {
				chunk[i] = e2e.MessageID(ids[i])
			}
			ids = ids[k:]
			pt, err := wire.EncodeReceipt(now.UnixMilli(), wire.Receipt{Kind: wire.ReceiptRead, IDs: chunk})
			if err != nil {
				return nil, nil, err
			}
			if encErr, err := c.enqueueControl(tx, st, s, pt, now); err != nil || encErr != nil {
				return nil, nil, errors.Join(err, encErr)
			}
		}
		return nil, nil, nil
	}, true)
	return read, err
}

// ReadUntil marks the conversation with p read up to and including the
// message id (zero: all of it), as MarkRead.
func (n *Node) ReadUntil(p peer.ID, id MessageID) (int, error) {
	var m Message
	if id.IsZero() {
		ms, err := n.History(p, Page{Limit: 1})
		if err != nil || len(ms) == 0 {
			return 0, err
		}
		m = ms[0]
	} else {
		var err error
		if m, err = n.Message(id); err != nil {
			return 0, err
		}
		if m.Peer != p {
			return 0, fmt.Errorf("%w: message %s is not in the conversation with %s", ErrInvalid, id, p)
		}
	}
	return n.MarkRead(p, m)
}

// receiveChange acts on a change from an accepted contact: the
// content control signals (content.go of package wire). A change that
// does not apply (an edit of a message we do not have, or of one the
// peer did not write) is dropped and logged: the peer cannot make it
// apply by sending it again.
func (c *conv) receiveChange(tx *db.Tx, st *batchState, pt []byte, signal wire.Control, sent int64, now time.Time) error {
	drop := func(what string, err error) error {
		c.n.log.Debug("a change that does not apply", "peer", c.key, "what", what, "err", err)
		return nil
	}
	switch signal {
	case wire.ControlProfile:
		name, err := wire.DecodeProfile(pt)
		if err != nil {
			return drop("profile", err)
		}
		return c.setProfileName(tx, st, name, now)
	case wire.ControlEdit:
		e, err := wire.DecodeEdit(pt)
		if err != nil {
			return drop("edit", err)
		}
		ok, err := tx.EditMessage(c.key, e.ID, db.Incoming, e.Text, time.UnixMilli(sent))
		if err != nil || !ok {
			return errOr(err, drop("edit", errors.New("no such message of theirs, deleted, or a later edit is stored")))
		}
		return st.event(tx, EventEdit, payload{Peer: c.key, MessageID: msgIDString(e.ID), Direction: "in"}, now)
	case wire.ControlDelete:
		id, err := wire.DecodeDelete(pt)
		if err != nil {
			return drop("delete", err)
		}
		ok, err := tx.DeleteForEveryone(c.key, id, db.Incoming, now)
		if err != nil || !ok {
			return errOr(err, drop("delete", errors.New("no such message of theirs, or deleted already")))
		}
		st.purge = true
		return st.event(tx, EventDelete, payload{Peer: c.key, MessageID: msgIDString(id), Direction: "in"}, now)
	case wire.ControlReaction:
		r, err := wire.DecodeReaction(pt)
		if err != nil {
			return drop("reaction", err)
		}
		if r.Emoji != "" && checkEmoji(r.Emoji) != nil {
			return drop("reaction", checkEmoji(r.Emoji))
		}
		ok, err := tx.SetReaction(c.key, r.ID, c.key, r.Emoji, time.UnixMilli(sent))
		if err != nil || !ok {
			return errOr(err, drop("reaction", errors.New("no such message")))
		}
		return st.event(tx, EventReaction, payload{Peer: c.key, MessageID: msgIDString(r.ID), Emoji: r.Emoji, Reactor: c.key}, now)
	case wire.ControlTimer:
		secs, err := wire.DecodeTimer(pt)
		if err != nil {
			return drop("timer", err)
		}
		d := time.Duration(secs) * time.Second
		if d > MaxTimer {
			return drop("timer", errors.New("too long"))
		}
		changed, err := tx.SetTimer(c.key, d)
		if err != nil || !changed {
			return err
		}
		st.contact.Timer = d
		return st.event(tx, EventTimer, payload{Peer: c.key, Timer: int64(secs), Direction: "in"}, now)
	}
	return nil
}

func errOr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// setProfileName records the name the peer gave itself, and tells our
// user when it changed.
func (c *conv) setProfileName(tx *db.Tx, st *batchState, name string, now time.Time) error {
	name = strings.TrimSpace(name)
	if strings.ContainsFunc(name, unicode.IsControl) || st.contact == nil || st.contact.ProfileName == name {
		return nil
	}
	if err := tx.SetProfileName(c.key, name); err != nil {
		return err
	}
	st.contact.ProfileName = name
	return st.event(tx, EventProfile, payload{Peer: c.key, Reason: name}, now)
}

// receiveRead records the peer's read receipts for our messages.
func (c *conv) receiveRead(tx *db.Tx, st *batchState, ids []e2e.MessageID, now time.Time) error {
	for _, id := range ids {
		ok, err := tx.PeerRead(c.key, id, now)
		if err != nil {
			return err
		}
		if ok {
			st.expiry = true
			if err := st.event(tx, EventState, payload{Peer: c.key, MessageID: msgIDString(id), Direction: "out", State: string(db.Read)}, now); err != nil {
				return err
			}
		}
	}
	return nil
}

// MaxSearch is the most results a search returns.
const MaxSearch = 1000

// Search returns up to limit messages, the most recent first, whose text
// holds every word of query (case and diacritics ignored; a word ending
// in * is a prefix), in the conversation with p or, when p is empty, in
// all of them. Deleted and disappeared messages are not found.
func (n *Node) Search(query string, p peer.ID, limit int) ([]Message, error) {
	if limit <= 0 || limit > MaxSearch {
		return nil, fmt.Errorf("%w: a search returns 1 to %d messages, not %d", ErrInvalid, MaxSearch, limit)
	}
	if strings.TrimSpace(query) == "" {
		return nil, fmt.Errorf("%w: nothing to search for", ErrInvalid)
	}
	key := ""
	if p != "" {
		key = p.String()
	}
	var out []Message
	err := n.store.View(func(r *db.ReadTx) error {
		ms, err := r.SearchIn(key, query, limit)
		if err != nil {
			return err
		}
		out, err = withReactions(r, ms)
		return err
	})
	return out, err
}
