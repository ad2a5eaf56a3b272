package node

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/p2pmsg/p2pmsg/e2e"
)

// Protocol IDs (DESIGN §7).
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
// receiver's transaction committed: a status byte and the envelope's
// message id (zero when the frame was not an envelope).
const ackSize = 1 + 16

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

type ack struct {
	status ackStatus
	id     e2e.MessageID
}

func (a ack) append(dst []byte) []byte {
	dst = append(dst, byte(a.status))
	return append(dst, a.id[:]...)
}

func readAck(r io.Reader) (ack, error) {
	var b [ackSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return ack{}, err
	}
	a := ack{status: ackStatus(b[0])}
	copy(a.id[:], b[1:])
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

func decodeContent(b []byte) (sentMillis int64, text string, err error) {
	if len(b) < contentHeader || b[0] != contentVersion {
		return 0, "", errors.New("node: unknown message content")
	}
	return int64(binary.BigEndian.Uint64(b[1:9])), string(b[contentHeader:]), nil
}
