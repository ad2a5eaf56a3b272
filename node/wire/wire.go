// Package wire is the bytes of /p2pmsg/msg/1.0.0 (docs/design.md §7.1,
// §7.2): the frames that carry envelopes, the acks that answer them, and
// the content inside an envelope. It has no state and no I/O beyond the
// reader and writer it is given, so that its decoders are fuzzed without
// building the store (package node, which uses it, links SQLite).
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/p2pmsg/p2pmsg/e2e"
)

// MaxFrame bounds a frame on /p2pmsg/msg/1.0.0: one envelope.
const MaxFrame = e2e.MaxEnvelopeSize

// Errors of the decoders.
var (
	ErrFrameTooLarge  = errors.New("wire: frame too large")
	ErrMalformedFrame = errors.New("wire: malformed frame")
	ErrMalformedAck   = errors.New("wire: malformed ack")
)

// ReadFrame reads one uvarint-length-prefixed frame of at most max bytes.
// A length over max is refused before anything is allocated: the stream
// cannot be resynchronised after it, so the caller resets it.
func ReadFrame(r *bufio.Reader, max int) ([]byte, error) {
	n, err := ReadLength(r, max)
	if err != nil {
		return nil, err
	}
	return ReadBody(r, n)
}

// ReadLength reads a frame's length prefix, refused over max (before
// anything is allocated) and in any but its shortest form, so that frames
// and their bytes correspond. The body follows: ReadBody.
func ReadLength(r *bufio.Reader, max int) (int, error) {
	cr := countingReader{r: r}
	n, err := binary.ReadUvarint(&cr)
	if err != nil {
		return 0, err
	}
	if n > uint64(max) {
		return 0, fmt.Errorf("%w: %d bytes, at most %d", ErrFrameTooLarge, n, max)
	}
	if cr.n != len(binary.AppendUvarint(nil, n)) {
		return 0, fmt.Errorf("%w: the length is not in its shortest form", ErrMalformedFrame)
	}
	return int(n), nil
}

// ReadBody reads the n bytes of a frame's body.
func ReadBody(r *bufio.Reader, n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// countingReader counts the bytes of a length prefix.
type countingReader struct {
	r *bufio.Reader
	n int
}

func (c *countingReader) ReadByte() (byte, error) {
	c.n++
	return c.r.ReadByte()
}

// AppendFrame appends frame to dst with its length prefix.
func AppendFrame(dst, frame []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(frame)))
	return append(dst, frame...)
}

// An ack answers one frame, in the order the frames came, after the
// receiver's transaction committed: a status byte, a reason byte (why a
// frame was rejected) and the envelope's message id (zero when the frame
// was not an envelope).
const AckSize = 1 + 1 + 16

// Status is an ack's verdict on a frame.
type Status byte

const (
	// Stored: the message is durably stored (or was already).
	Stored Status = 1
	// Rejected: the receiver will never accept this envelope (it does
	// not decrypt, names an unknown prekey, ...); resending cannot help.
	Rejected Status = 2
	// Retry: the receiver could not store it now (its disk failed, it
	// is shutting down); resend later.
	Retry Status = 3
)

// Reason says why an envelope was rejected, so that the sender can
// tell its user, and start a new session where that helps.
type Reason byte

const (
	ReasonNone Reason = iota
	// ReasonMalformed: not an envelope.
	ReasonMalformed
	// ReasonNoSession: it decrypts under no session the receiver holds
	// (the receiver lost its state, or reset it): a new session helps.
	ReasonNoSession
	// ReasonUnknownPrekey: a prekey message naming a prekey the receiver
	// no longer has (rotated out, one-time key used): a new session with
	// a fresh bundle helps.
	ReasonUnknownPrekey
	// ReasonIdentity: the receiver holds another identity key for the
	// sender and refuses until its user trusts the new one.
	ReasonIdentity
	// ReasonForeign: the message id belongs to another conversation, or
	// the prekey message names another identity than the stream's.
	ReasonForeign
	// ReasonNotAccepted: the receiver has not accepted the sender as a
	// contact, and keeps one message of a stranger until its user does.
	// Not a failure: the sender holds the envelope (it was not
	// decrypted, so it stays valid) and sends it again once the receiver
	// has accepted (a reply, or an acceptance notice, tells it).
	ReasonNotAccepted
	// ReasonTooLarge: a message to someone who has not accepted the
	// sender is limited in size (the receiver stores it for a stranger).
	ReasonTooLarge
)

// String is the reason as the sender's user reads it.
func (r Reason) String() string {
	switch r {
	case ReasonMalformed:
		return "the recipient could not parse it"
	case ReasonNoSession:
		return "the recipient could not decrypt it (it has no session for it); send it again to start a new session"
	case ReasonUnknownPrekey:
		return "the recipient no longer has the keys it names; send it again to start a new session"
	case ReasonIdentity:
		return "the recipient holds another identity key for you and refuses your messages until its user trusts the new one"
	case ReasonForeign:
		return "the recipient refused it as not yours"
	case ReasonNotAccepted:
		return "waiting for the contact to accept"
	case ReasonTooLarge:
		return "too long for a first message: until the recipient accepts you, one message of at most 8 KiB is let through"
	}
	return "the recipient refused it"
}

// Holds: after this rejection the sender keeps the envelope, to send it
// again once the receiver accepts, instead of failing the message.
func (r Reason) Holds() bool { return r == ReasonNotAccepted }

// RenewsSession: after this rejection the sender drops its sessions with
// the peer, so that the next message starts a new one.
func (r Reason) RenewsSession() bool {
	return r == ReasonNoSession || r == ReasonUnknownPrekey
}

type Ack struct {
	Status Status
	Reason Reason
	ID     e2e.MessageID
}

// Append appends the ack's 18 bytes to dst.
func (a Ack) Append(dst []byte) []byte {
	dst = append(dst, byte(a.Status), byte(a.Reason))
	return append(dst, a.ID[:]...)
}

// ReadAck reads one ack; a status it does not know is an error.
func ReadAck(r io.Reader) (Ack, error) {
	var b [AckSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return Ack{}, err
	}
	a := Ack{Status: Status(b[0]), Reason: Reason(b[1])}
	copy(a.ID[:], b[2:])
	if a.Status < Stored || a.Status > Retry {
		return Ack{}, fmt.Errorf("%w (status %d)", ErrMalformedAck, b[0])
	}
	return a, nil
}

// The plaintext inside an envelope: a kind byte, the sender's clock (unix
// milliseconds) and what the kind carries. Text (kind 1) carries UTF-8;
// control (kind 2) one byte naming what it signals, and is never shown
// as a message (control.go and content.go: the signals that carry more
// than the byte); kind 3 is a message with a reply, a timer or a
// display name (content.go). Versions before control content show a
// control message as Unreadable: the cost of adding it without a new
// protocol.
const (
	ContentText    = 1
	ContentControl = 2
	ContentHeader  = 1 + 8
	// MaxTextSize is the longest message text, in bytes: what fits one
	// envelope with the most that kind 3 adds to it.
	MaxTextSize = e2e.MaxPlaintextSize - ContentHeader - MaxMessageExtra
)

// Control is what a control content signals.
type Control byte

const (
	// ControlAccepted: the sender accepted the receiver as a contact;
	// what the receiver held for it may come now.
	ControlAccepted Control = 1
)

// Content is a decoded plaintext.
type Content struct {
	Kind    byte    // ContentText, ContentControl or ContentMessage; 0 when unreadable
	Sent    int64   // the sender's clock, unix milliseconds
	Text    string  // text content; Unreadable for content this version cannot read
	Control Control // control content: what it signals (zero for text)

	// Kind 3 only (content.go).
	ReplyTo    e2e.MessageID
	Timer      uint32
	Profile    string
	HasProfile bool
}

// EncodeContent is the plaintext of a text message.
func EncodeContent(sentMillis int64, text string) []byte {
	b := make([]byte, 0, ContentHeader+len(text))
	b = append(b, ContentText)
	b = binary.BigEndian.AppendUint64(b, uint64(sentMillis))
	return append(b, text...)
}

// EncodeControl is the plaintext of a control message.
func EncodeControl(sentMillis int64, c Control) []byte {
	b := make([]byte, 0, ContentHeader+1)
	b = append(b, ContentControl)
	b = binary.BigEndian.AppendUint64(b, uint64(sentMillis))
	return append(b, byte(c))
}

// Unreadable is what history shows for content this version cannot
// read (a newer client's): stored and acknowledged, not refused, so that
// the sender does not see a failure and the message is not lost.
const Unreadable = "[a message this version of p2pmsg cannot show: update p2pmsg to read it]"

// DecodeContent reads a plaintext. Content of a kind it does not know (or
// too short) gives Text Unreadable and false; a control content of a
// kind it does not know gives that kind, for the caller to ignore.
// Invalid UTF-8 is replaced.
func DecodeContent(b []byte) (Content, bool) {
	if len(b) < ContentHeader {
		return Content{Text: Unreadable}, false
	}
	sent := int64(binary.BigEndian.Uint64(b[1:9]))
	switch {
	case b[0] == ContentText:
		return Content{Kind: ContentText, Sent: sent, Text: validText(b[ContentHeader:])}, true
	case b[0] == ContentControl && len(b) > ContentHeader && b[ContentHeader] != 0:
		// What follows the signal is for the kinds that carry more
		// (receipts, a profile): a version that knows none of it
		// ignores it, as it does the signal itself.
		return Content{Kind: ContentControl, Sent: sent, Control: Control(b[ContentHeader])}, true
	case b[0] == ContentMessage:
		return decodeMessage(sent, b[ContentHeader:])
	}
	return Content{Text: Unreadable}, false
}

// validText is a text as stored: invalid UTF-8 replaced.
func validText(b []byte) string { return strings.ToValidUTF8(string(b), "\uFFFD") }
