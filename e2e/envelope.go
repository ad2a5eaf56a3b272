package e2e

import (
	"encoding/hex"
	"fmt"
)

// Envelope layout; the package documentation has the table.
const (
	envelopeVersion = 1
	kindMessage     = 1
	kindPrekey      = 2

	idSize           = 16
	headerSize       = 32 + 4 + 4 // DH ratchet public key, PN, N
	headerNonceSize  = 24
	sealedHeaderSize = headerSize + 16
	bodyNonceSize    = 12
	tagSize          = 16

	envelopePrefix  = 2 + idSize                                         // version, kind, message id
	ratchetPrefix   = headerNonceSize + sealedHeaderSize + bodyNonceSize // before the body
	prekeyBlockSize = 32 + 32 + SignatureSize + 32 + 4 + 1 + 4 + 4 + PQCipherSize

	// MessageOverhead is what a normal envelope adds to its plaintext.
	MessageOverhead = envelopePrefix + ratchetPrefix + tagSize
	// PrekeyOverhead is what a prekey envelope adds to its plaintext.
	PrekeyOverhead = MessageOverhead + prekeyBlockSize

	// MaxEnvelopeSize is the hard limit on an envelope, and so on a frame
	// of /p2pmsg/msg/1.0.0, which carries one (docs/design.md §7).
	MaxEnvelopeSize = 64 << 10
	// MaxPlaintextSize is the largest plaintext that Encrypt accepts: its
	// envelope fits MaxEnvelopeSize even as a prekey message.
	MaxPlaintextSize = MaxEnvelopeSize - PrekeyOverhead
)

// MessageID identifies an envelope (random, 128 bits). Retransmissions of
// an envelope carry the same id, so a receiver can deduplicate before it
// decrypts.
type MessageID [idSize]byte

func (id MessageID) String() string { return hex.EncodeToString(id[:]) }

// envelope is a parsed envelope; its slices alias the input.
type envelope struct {
	kind      byte
	id        MessageID
	prekey    []byte // the prekey block, nil in a normal message
	hdrNonce  []byte
	sealedHdr []byte
	bodyNonce []byte
	prefix    []byte // version, kind, id, prekey block: in both ADs
	tail      []byte // body nonce and body: hashed into the header AD
	body      []byte // AES-256-GCM ciphertext and tag
}

func parseEnvelope(b []byte) (envelope, error) {
	var e envelope
	if len(b) > MaxEnvelopeSize {
		return e, ErrTooLarge
	}
	if len(b) < MessageOverhead || b[0] != envelopeVersion {
		return e, ErrMalformed
	}
	e.kind = b[1]
	copy(e.id[:], b[2:envelopePrefix])
	off := envelopePrefix
	switch e.kind {
	case kindMessage:
	case kindPrekey:
		if len(b) < PrekeyOverhead {
			return e, ErrMalformed
		}
		e.prekey = b[off : off+prekeyBlockSize]
		off += prekeyBlockSize
	default:
		return e, ErrMalformed
	}
	e.prefix = b[:off]
	e.hdrNonce = b[off : off+headerNonceSize]
	off += headerNonceSize
	e.sealedHdr = b[off : off+sealedHeaderSize]
	off += sealedHeaderSize
	e.tail = b[off:]
	e.bodyNonce = b[off : off+bodyNonceSize]
	e.body = b[off+bodyNonceSize:]
	return e, nil
}

// EnvelopeID returns the message id of an envelope after checking its
// framing, without decrypting anything.
func EnvelopeID(b []byte) (MessageID, error) {
	e, err := parseEnvelope(b)
	if err != nil {
		return MessageID{}, fmt.Errorf("envelope id: %w", err)
	}
	return e.id, nil
}

// IsPrekeyMessage reports whether b is framed as a prekey message, which
// the receiver must route to an existing session with the same base key or
// to Respond.
func IsPrekeyMessage(b []byte) bool {
	e, err := parseEnvelope(b)
	return err == nil && e.kind == kindPrekey
}

// header is the plaintext of an encrypted header.
type header struct {
	dh DHPublicKey
	pn uint32
	n  uint32
}

func (h *header) append(b []byte) []byte {
	b = append(b, h.dh[:]...)
	b = append(b, byte(h.pn>>24), byte(h.pn>>16), byte(h.pn>>8), byte(h.pn))
	return append(b, byte(h.n>>24), byte(h.n>>16), byte(h.n>>8), byte(h.n))
}

func parseHeader(b []byte) (h header, err error) {
	if len(b) != headerSize {
		return h, ErrMalformed
	}
	r := reader{b: b}
	copy(h.dh[:], r.next(32))
	h.pn, h.n = r.u32(), r.u32()
	return h, nil
}
