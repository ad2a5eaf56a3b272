package wire

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/p2pmsg/p2pmsg/e2e"
)

// Control signals that carry more than the signal (docs/mailbox.md,
// "Content kinds"): after the control content's signal byte,
//
//	receipt (2)        kind (1: delivered, 2: read) || n (2) || message id (16) × n
//	mailbox grant (3)  peer ID length (1) || the mailbox's peer ID || inbox (16) || token index (4) || token (16)
//	retry request (4)  n (2) || message id (16) × n
//
// None of them is shown as a message, and none is itself receipted (a
// receipt for a receipt would never end).
const (
	// ControlReceipt: the receiver stored (or read) the messages named.
	ControlReceipt Control = 2
	// ControlGrant: the sender's mailbox accepts deposits from the
	// receiver with this token.
	ControlGrant Control = 3
	// ControlRetry: the messages named failed to decrypt at the sender of
	// the request; send them again, in a new session.
	ControlRetry Control = 4
)

// ReceiptKind tells a delivery receipt from a read receipt.
type ReceiptKind byte

const (
	ReceiptDelivered ReceiptKind = 1
	ReceiptRead      ReceiptKind = 2
)

// MaxReceiptIDs is the most message ids one receipt or retry request
// names: all fit one envelope.
const MaxReceiptIDs = (e2e.MaxPlaintextSize - ContentHeader - 1 - 1 - 2) / 16

// ErrMalformedControl is every failure to read a control payload.
var ErrMalformedControl = errors.New("wire: malformed control content")

// Receipt is a decoded receipt.
type Receipt struct {
	Kind ReceiptKind
	IDs  []e2e.MessageID
}

// Grant is a decoded mailbox grant.
type Grant struct {
	Mailbox []byte // the mailbox's peer ID, as bytes
	Inbox   [e2e.InboxIDSize]byte
	Index   uint32
	Token   [16]byte
}

func controlHeader(sent int64, c Control, size int) []byte {
	b := make([]byte, 0, ContentHeader+1+size)
	b = append(b, ContentControl)
	b = binary.BigEndian.AppendUint64(b, uint64(sent))
	return append(b, byte(c))
}

func appendIDs(b []byte, ids []e2e.MessageID) ([]byte, error) {
	if len(ids) == 0 || len(ids) > MaxReceiptIDs {
		return nil, fmt.Errorf("wire: %d message ids, 1 to %d", len(ids), MaxReceiptIDs)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(ids)))
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b, nil
}

// EncodeReceipt is the plaintext of a receipt.
func EncodeReceipt(sent int64, r Receipt) ([]byte, error) {
	if r.Kind != ReceiptDelivered && r.Kind != ReceiptRead {
		return nil, fmt.Errorf("wire: receipt kind %d", r.Kind)
	}
	return appendIDs(append(controlHeader(sent, ControlReceipt, 1+2+16*len(r.IDs)), byte(r.Kind)), r.IDs)
}

// EncodeRetry is the plaintext of a retry request.
func EncodeRetry(sent int64, ids []e2e.MessageID) ([]byte, error) {
	return appendIDs(controlHeader(sent, ControlRetry, 2+16*len(ids)), ids)
}

// EncodeGrant is the plaintext of a mailbox grant.
func EncodeGrant(sent int64, g Grant) ([]byte, error) {
	if len(g.Mailbox) == 0 || len(g.Mailbox) > 255 {
		return nil, fmt.Errorf("wire: a mailbox peer ID of %d bytes", len(g.Mailbox))
	}
	b := controlHeader(sent, ControlGrant, 1+len(g.Mailbox)+16+4+16)
	b = append(b, byte(len(g.Mailbox)))
	b = append(b, g.Mailbox...)
	b = append(b, g.Inbox[:]...)
	b = binary.BigEndian.AppendUint32(b, g.Index)
	return append(b, g.Token[:]...), nil
}

// controlPayload is what follows signal c in plaintext b, or an error
// when b is not control content carrying c.
func controlPayload(b []byte, c Control) ([]byte, error) {
	if len(b) < ContentHeader+1 || b[0] != ContentControl || Control(b[ContentHeader]) != c {
		return nil, fmt.Errorf("%w: not control content %d", ErrMalformedControl, c)
	}
	return b[ContentHeader+1:], nil
}

func readIDs(p []byte) ([]e2e.MessageID, error) {
	if len(p) < 2 {
		return nil, fmt.Errorf("%w: no id count", ErrMalformedControl)
	}
	n := int(binary.BigEndian.Uint16(p))
	if n == 0 || n > MaxReceiptIDs || len(p) != 2+16*n {
		return nil, fmt.Errorf("%w: %d ids in %d bytes", ErrMalformedControl, n, len(p)-2)
	}
	ids := make([]e2e.MessageID, n)
	for i := range ids {
		copy(ids[i][:], p[2+16*i:])
	}
	return ids, nil
}

// DecodeReceipt reads a receipt's plaintext.
func DecodeReceipt(b []byte) (Receipt, error) {
	p, err := controlPayload(b, ControlReceipt)
	if err != nil {
		return Receipt{}, err
	}
	if len(p) < 1 || (ReceiptKind(p[0]) != ReceiptDelivered && ReceiptKind(p[0]) != ReceiptRead) {
		return Receipt{}, fmt.Errorf("%w: receipt kind", ErrMalformedControl)
	}
	ids, err := readIDs(p[1:])
	return Receipt{Kind: ReceiptKind(p[0]), IDs: ids}, err
}

// DecodeRetry reads a retry request's plaintext.
func DecodeRetry(b []byte) ([]e2e.MessageID, error) {
	p, err := controlPayload(b, ControlRetry)
	if err != nil {
		return nil, err
	}
	return readIDs(p)
}

// DecodeGrant reads a mailbox grant's plaintext.
func DecodeGrant(b []byte) (Grant, error) {
	p, err := controlPayload(b, ControlGrant)
	if err != nil {
		return Grant{}, err
	}
	if len(p) < 1 || p[0] == 0 || len(p) != 1+int(p[0])+16+4+16 {
		return Grant{}, fmt.Errorf("%w: grant of %d bytes", ErrMalformedControl, len(p))
	}
	n := int(p[0])
	g := Grant{Mailbox: append([]byte(nil), p[1:1+n]...)}
	p = p[1+n:]
	copy(g.Inbox[:], p)
	g.Index = binary.BigEndian.Uint32(p[16:])
	copy(g.Token[:], p[20:])
	return g, nil
}
