package node

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/p2pmsg/p2pmsg/e2e"
)

// Protocol IDs (docs/design.md §4, §7.1).
const (
	MsgProtocol    = "/p2pmsg/msg/1.0.0"
	BundleProtocol = "/p2pmsg/bundle/1.0.0"
)

// maxFrame bounds a frame on /p2pmsg/msg/1.0.0: one envelope.
const maxFrame = e2e.MaxEnvelopeSize

var errFrameTooLarge = errors.New("node: frame too large")

// readFrame reads one uvarint-length-prefixed frame of at most max bytes.
// A length over max is refused before anything is allocated: the stream
// cannot be resynchronised after it, so the caller resets it.
func readFrame(r *bufio.Reader, max int) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", errFrameTooLarge, n, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

func appendFrame(dst, frame []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(frame)))
	return append(dst, frame...)
}

// An ack answers one frame, in the order the frames came, after the
// receiver's transaction committed: a status byte, a reason byte (why a
// frame was rejected) and the envelope's message id (zero when the frame
// was not an envelope).
const ackSize = 1 + 1 + 16

type ackStatus byte

const (
	// ackStored: the message is durably stored (or was already).
	ackStored ackStatus = 1
	// ackRejected: the receiver will never accept this envelope (it does
	// not decrypt, names an unknown prekey, ...); resending cannot help.
	ackRejected ackStatus = 2
	// ackRetry: the receiver could not store it now (its disk failed, it
	// is shutting down); resend later.
	ackRetry ackStatus = 3
)

// rejectReason says why an envelope was rejected, so that the sender can
// tell its user, and start a new session where that helps.
type rejectReason byte

const (
	reasonNone rejectReason = iota
	// reasonMalformed: not an envelope.
	reasonMalformed
	// reasonNoSession: it decrypts under no session the receiver holds
	// (the receiver lost its state, or reset it): a new session helps.
	reasonNoSession
	// reasonUnknownPrekey: a prekey message naming a prekey the receiver
	// no longer has (rotated out, one-time key used): a new session with
	// a fresh bundle helps.
	reasonUnknownPrekey
	// reasonIdentity: the receiver holds another identity key for the
	// sender and refuses until its user trusts the new one.
	reasonIdentity
	// reasonForeign: the message id belongs to another conversation, or
	// the prekey message names another identity than the stream's.
	reasonForeign
)

func (r rejectReason) String() string {
	switch r {
	case reasonMalformed:
		return "the recipient could not parse it"
	case reasonNoSession:
		return "the recipient could not decrypt it (it has no session for it); send it again to start a new session"
	case reasonUnknownPrekey:
		return "the recipient no longer has the keys it names; send it again to start a new session"
	case reasonIdentity:
		return "the recipient holds another identity key for you and refuses your messages until its user trusts the new one"
	case reasonForeign:
		return "the recipient refused it as not yours"
	}
	return "the recipient refused it"
}

// renewsSession: after this rejection the sender drops its sessions with
// the peer, so that the next message starts a new one.
func (r rejectReason) renewsSession() bool {
	return r == reasonNoSession || r == reasonUnknownPrekey
}

type ack struct {
	status ackStatus
	reason rejectReason
	id     e2e.MessageID
}

func (a ack) append(dst []byte) []byte {
	dst = append(dst, byte(a.status), byte(a.reason))
	return append(dst, a.id[:]...)
}

func readAck(r io.Reader) (ack, error) {
	var b [ackSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return ack{}, err
	}
	a := ack{status: ackStatus(b[0]), reason: rejectReason(b[1])}
	copy(a.id[:], b[2:])
	if a.status < ackStored || a.status > ackRetry {
		return ack{}, fmt.Errorf("node: malformed ack (status %d)", b[0])
	}
	return a, nil
}

// The plaintext inside an envelope: a version byte, the sender's clock
// (unix milliseconds) and the UTF-8 text. Versioned so that attachments
// and receipts can come later without a new protocol.
const (
	contentVersion = 1
	contentHeader  = 1 + 8
	// MaxTextSize is the longest message text, in bytes.
	MaxTextSize = e2e.MaxPlaintextSize - contentHeader
)

func encodeContent(sentMillis int64, text string) []byte {
	b := make([]byte, 0, contentHeader+len(text))
	b = append(b, contentVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(sentMillis))
	return append(b, text...)
}

// unreadable is what history shows for content this version cannot
// read (a newer client's): stored and acknowledged, not refused, so that
// the sender does not see a failure and the message is not lost.
const unreadable = "[a message this version of p2pmsg cannot show: update p2pmsg to read it]"

func decodeContent(b []byte) (sentMillis int64, text string, ok bool) {
	if len(b) < contentHeader || b[0] != contentVersion {
		return 0, unreadable, false
	}
	return int64(binary.BigEndian.Uint64(b[1:9])), strings.ToValidUTF8(string(b[contentHeader:]), "\uFFFD"), true
}
