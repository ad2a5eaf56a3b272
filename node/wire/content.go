package wire

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"

	"github.com/p2pmsg/p2pmsg/e2e"
)

// Content kind 3, a message with more than its text (docs/content.md):
//
//	flags (1) || reply-to (16, flag 1) || timer (4, flag 2) || profile (1 + n, flag 4) || text
//
// reply-to names the message it quotes, timer is its disappearing timer
// in seconds, profile is the sender's display name (length-prefixed),
// sent with the message that starts a session so that a new contact
// learns it with the first message. A message with none of them goes as
// kind 1, which every version reads. Flags this version does not know
// make the whole content unreadable (their fields' lengths are unknown):
// it is stored as a placeholder.
const (
	ContentMessage = 3

	flagReply   = 1
	flagTimer   = 2
	flagProfile = 4
	knownFlags  = flagReply | flagTimer | flagProfile

	// MaxProfileName is the longest display name, in bytes.
	MaxProfileName = 64
	// MaxEmoji is the longest reaction, in bytes (an emoji with its
	// modifiers and joiners).
	MaxEmoji = 32
	// MaxMessageExtra is the most that kind 3 adds to a text.
	MaxMessageExtra = 1 + 16 + 4 + 1 + MaxProfileName
)

// More control signals (after those of control.go):
//
//	profile (5)   name length (1) || name: the sender's display name
//	edit (6)      message id (16) || text: the sender's new text for its message
//	delete (7)    message id (16): the sender deleted its message for everyone
//	reaction (8)  message id (16) || emoji (0 to MaxEmoji bytes; none takes it back)
//	timer (9)     seconds (4): the conversation's disappearing timer, 0 for off
//
// Unlike receipts and grants, these last until the recipient's receipt
// when a mailbox carries them (db.OutboxEntry.Lasting).
const (
	ControlProfile  Control = 5
	ControlEdit     Control = 6
	ControlDelete   Control = 7
	ControlReaction Control = 8
	ControlTimer    Control = 9
)

// Lasting reports whether a control signal is content the user made,
// receipted like a message when it comes through a mailbox.
func (c Control) Lasting() bool { return c >= ControlProfile && c <= ControlTimer }

// Message is the content of a message.
type Message struct {
	Text    string
	ReplyTo e2e.MessageID // the message it quotes; zero: none
	Timer   uint32        // its disappearing timer in seconds; 0: none
	// Profile: the sender's display name, when HasProfile.
	Profile    string
	HasProfile bool
}

// EncodeMessage is the plaintext of a message: kind 1 when it is text
// alone, else kind 3.
func EncodeMessage(sentMillis int64, m Message) ([]byte, error) {
	if zeroID(m.ReplyTo) && m.Timer == 0 && !m.HasProfile {
		return EncodeContent(sentMillis, m.Text), nil
	}
	if len(m.Profile) > MaxProfileName {
		return nil, fmt.Errorf("wire: a display name of %d bytes, at most %d", len(m.Profile), MaxProfileName)
	}
	b := make([]byte, 0, ContentHeader+MaxMessageExtra+len(m.Text))
	b = append(b, ContentMessage)
	b = binary.BigEndian.AppendUint64(b, uint64(sentMillis))
	var flags byte
	if !zeroID(m.ReplyTo) {
		flags |= flagReply
	}
	if m.Timer != 0 {
		flags |= flagTimer
	}
	if m.HasProfile {
		flags |= flagProfile
	}
	b = append(b, flags)
	if flags&flagReply != 0 {
		b = append(b, m.ReplyTo[:]...)
	}
	if flags&flagTimer != 0 {
		b = binary.BigEndian.AppendUint32(b, m.Timer)
	}
	if flags&flagProfile != 0 {
		b = append(b, byte(len(m.Profile)))
		b = append(b, m.Profile...)
	}
	return append(b, m.Text...), nil
}

// decodeMessage reads kind 3 after its header; false for flags or
// lengths this version cannot read.
func decodeMessage(sent int64, p []byte) (Content, bool) {
	if len(p) < 1 || p[0]&^knownFlags != 0 {
		return Content{Text: Unreadable}, false
	}
	flags := p[0]
	p = p[1:]
	c := Content{Sent: sent, Kind: ContentMessage}
	if flags&flagReply != 0 {
		if len(p) < 16 {
			return Content{Text: Unreadable}, false
		}
		copy(c.ReplyTo[:], p)
		p = p[16:]
		if zeroID(c.ReplyTo) {
			return Content{Text: Unreadable}, false
		}
	}
	if flags&flagTimer != 0 {
		if len(p) < 4 {
			return Content{Text: Unreadable}, false
		}
		c.Timer = binary.BigEndian.Uint32(p)
		p = p[4:]
		if c.Timer == 0 {
			return Content{Text: Unreadable}, false
		}
	}
	if flags&flagProfile != 0 {
		if len(p) < 1 || int(p[0]) > MaxProfileName || len(p) < 1+int(p[0]) || !utf8.Valid(p[1:1+p[0]]) {
			return Content{Text: Unreadable}, false
		}
		c.Profile, c.HasProfile = string(p[1:1+p[0]]), true
		p = p[1+p[0]:]
	}
	c.Text = validText(p)
	return c, true
}

// Message returns a decoded text or kind 3 content as a Message.
func (c Content) Message() Message {
	return Message{Text: c.Text, ReplyTo: c.ReplyTo, Timer: c.Timer, Profile: c.Profile, HasProfile: c.HasProfile}
}

// EncodeProfile is the plaintext of a display name.
func EncodeProfile(sent int64, name string) ([]byte, error) {
	if len(name) > MaxProfileName || !utf8.ValidString(name) {
		return nil, fmt.Errorf("wire: a display name is valid UTF-8 of at most %d bytes", MaxProfileName)
	}
	b := controlHeader(sent, ControlProfile, 1+len(name))
	b = append(b, byte(len(name)))
	return append(b, name...), nil
}

// DecodeProfile reads a display name.
func DecodeProfile(b []byte) (string, error) {
	p, err := controlPayload(b, ControlProfile)
	if err != nil {
		return "", err
	}
	if len(p) < 1 || int(p[0]) > MaxProfileName || len(p) != 1+int(p[0]) || !utf8.Valid(p[1:]) {
		return "", fmt.Errorf("%w: profile of %d bytes", ErrMalformedControl, len(p))
	}
	return string(p[1:]), nil
}

// Edit is a new text for a message.
type Edit struct {
	ID   e2e.MessageID
	Text string
}

// MaxEditText is the longest text an edit carries.
const MaxEditText = e2e.MaxPlaintextSize - ContentHeader - 1 - 16

// EncodeEdit is the plaintext of an edit.
func EncodeEdit(sent int64, e Edit) ([]byte, error) {
	if zeroID(e.ID) || e.Text == "" || len(e.Text) > MaxEditText || !utf8.ValidString(e.Text) {
		return nil, fmt.Errorf("wire: an edit names a message and carries 1 to %d bytes of UTF-8", MaxEditText)
	}
	b := controlHeader(sent, ControlEdit, 16+len(e.Text))
	b = append(b, e.ID[:]...)
	return append(b, e.Text...), nil
}

// DecodeEdit reads an edit.
func DecodeEdit(b []byte) (Edit, error) {
	p, err := controlPayload(b, ControlEdit)
	if err != nil {
		return Edit{}, err
	}
	if len(p) <= 16 || !utf8.Valid(p[16:]) {
		return Edit{}, fmt.Errorf("%w: edit of %d bytes", ErrMalformedControl, len(p))
	}
	var e Edit
	copy(e.ID[:], p)
	if zeroID(e.ID) {
		return Edit{}, fmt.Errorf("%w: edit of no message", ErrMalformedControl)
	}
	e.Text = string(p[16:])
	return e, nil
}

// EncodeDelete is the plaintext of a deletion for everyone.
func EncodeDelete(sent int64, id e2e.MessageID) ([]byte, error) {
	if zeroID(id) {
		return nil, fmt.Errorf("wire: a deletion names a message")
	}
	return append(controlHeader(sent, ControlDelete, 16), id[:]...), nil
}

// DecodeDelete reads a deletion.
func DecodeDelete(b []byte) (e2e.MessageID, error) {
	p, err := controlPayload(b, ControlDelete)
	if err != nil {
		return e2e.MessageID{}, err
	}
	var id e2e.MessageID
	if len(p) != 16 {
		return id, fmt.Errorf("%w: deletion of %d bytes", ErrMalformedControl, len(p))
	}
	copy(id[:], p)
	if zeroID(id) {
		return id, fmt.Errorf("%w: deletion of no message", ErrMalformedControl)
	}
	return id, nil
}

// Reaction is a reaction to a message; no Emoji takes it back.
type Reaction struct {
	ID    e2e.MessageID
	Emoji string
}

// EncodeReaction is the plaintext of a reaction.
func EncodeReaction(sent int64, r Reaction) ([]byte, error) {
	if zeroID(r.ID) || len(r.Emoji) > MaxEmoji || !utf8.ValidString(r.Emoji) {
		return nil, fmt.Errorf("wire: a reaction names a message and carries at most %d bytes of UTF-8", MaxEmoji)
	}
	b := controlHeader(sent, ControlReaction, 16+len(r.Emoji))
	b = append(b, r.ID[:]...)
	return append(b, r.Emoji...), nil
}

// DecodeReaction reads a reaction.
func DecodeReaction(b []byte) (Reaction, error) {
	p, err := controlPayload(b, ControlReaction)
	if err != nil {
		return Reaction{}, err
	}
	if len(p) < 16 || len(p) > 16+MaxEmoji || !utf8.Valid(p[16:]) {
		return Reaction{}, fmt.Errorf("%w: reaction of %d bytes", ErrMalformedControl, len(p))
	}
	var r Reaction
	copy(r.ID[:], p)
	if zeroID(r.ID) {
		return Reaction{}, fmt.Errorf("%w: reaction to no message", ErrMalformedControl)
	}
	r.Emoji = string(p[16:])
	return r, nil
}

// EncodeTimer is the plaintext of a conversation's disappearing timer.
func EncodeTimer(sent int64, seconds uint32) []byte {
	return binary.BigEndian.AppendUint32(controlHeader(sent, ControlTimer, 4), seconds)
}

// DecodeTimer reads a disappearing timer, in seconds (0: off).
func DecodeTimer(b []byte) (uint32, error) {
	p, err := controlPayload(b, ControlTimer)
	if err != nil {
		return 0, err
	}
	if len(p) != 4 {
		return 0, fmt.Errorf("%w: timer of %d bytes", ErrMalformedControl, len(p))
	}
	return binary.BigEndian.Uint32(p), nil
}

func zeroID(id e2e.MessageID) bool { return id == e2e.MessageID{} }
