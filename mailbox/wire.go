package mailbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/p2pmsg/p2pmsg/e2e"
)

// The frames of the two mailbox protocols. Each is a uvarint length and a
// body (node/wire's framing): type (1) || fields, integers big endian,
// nothing after the last field. Every decoder refuses a count over its
// limit before it allocates, and any byte left over.
//
//	owner → mailbox (/p2pmsg/mbox/owner/1.0.0)
//	0x01 STATUS      –
//	0x02 SET_POLICY  ttl (4, seconds) || strangers (1: 0 or 1) || pow bits (1) || strangers an hour (2) || token key (32) || n (2) || revoked index (4) × n
//	0x03 PUT_BUNDLE  the owner's signed bundle (the rest of the frame)
//	0x04 PUT_OTKS    n (2) || certificate × n (each as long as its kind says: e2e.OneTimeCertSize)
//	0x05 SUBSCRIBE   after (8, a sequence number) || page bytes (4)
//	0x06 ACK         n (2) || sequence number (8) × n
//	0x07 REDEEM      invitation secret (32)
//	0x08 UNREGISTER  –
//	sender → mailbox (/p2pmsg/mbox/deposit/1.0.0)
//	0x11 GET_PREKEYS inbox (16)
//	0x12 DEPOSIT     inbox (16) || auth (1) || token index (4) || token (16)    (auth 1: a contact's token)
//	                                       || hour (4) || nonce (8)            (auth 2: a stranger's proof of work)
//	                 || ttl (4, seconds) || the seal (the rest of the frame)
//	replies
//	0x80 OK          –
//	0x81 ERROR       code (1) || UTF-8 text (the rest, at most 256 bytes)
//	0x82 PAGE        more (1: 0 or 1) || n (2) || (sequence (8) || received (8, unix ms) || length (4) || seal) × n
//	0x83 STATUS      inbox (16) || stored (4) || stored bytes (8) || quota (4) || quota bytes (8) || ttl (4) || ttl max (4)
//	                 || strangers (1) || pow bits (1) || strangers an hour (2) || one-time keys left: X25519 (4) || ML-KEM (4)
//	0x91 PREKEYS     bundle length (2) || bundle || n (1, at most 2) || certificate × n
//	0x92 RESULT      status (1)

// Frame types.
const (
	TypeStatus     = 0x01
	TypeSetPolicy  = 0x02
	TypePutBundle  = 0x03
	TypePutOTKs    = 0x04
	TypeSubscribe  = 0x05
	TypeAck        = 0x06
	TypeRedeem     = 0x07
	TypeUnregister = 0x08
	TypeGetPrekeys = 0x11
	TypeDeposit    = 0x12

	TypeOK          = 0x80
	TypeError       = 0x81
	TypePage        = 0x82
	TypeStatusReply = 0x83
	TypePrekeys     = 0x91
	TypeResult      = 0x92
)

const (
	// MaxFrame bounds a frame of either protocol: a page of deposits,
	// which always has room for the largest seal.
	MaxFrame = 96 << 10
	// TokenSize is a contact token's size.
	TokenSize = 16
	// KeySize is the size of a token key and of an invitation secret.
	KeySize = 32
	// MaxStrangerSeal bounds a stranger's deposit: a prekey message and
	// a short text.
	MaxStrangerSeal = 8 << 10
	// MaxOTKsPerFrame bounds the certificates of one PUT_OTKS (ML-KEM
	// ones are 1,253 bytes: 64 fit a frame with room).
	MaxOTKsPerFrame = 64
	// MaxAcks bounds the sequence numbers of one ACK.
	MaxAcks = 4096
	// MaxRevoked bounds the revoked token indexes of one SET_POLICY.
	MaxRevoked = 4096
	// MaxErrorText bounds an ERROR's text.
	MaxErrorText = 256

	pageHead    = 1 + 1 + 2
	pageItem    = 8 + 8 + 4
	statusReply = 1 + 16 + 4 + 8 + 4 + 8 + 4 + 4 + 1 + 1 + 2 + 4 + 4
)

// ErrMalformed is every decoding failure.
var ErrMalformed = errors.New("mailbox: malformed frame")

func malformed(what string) error { return fmt.Errorf("%w: %s", ErrMalformed, what) }

// A Msg is a decoded frame of either protocol.
type Msg interface {
	// Append appends the frame's body (type and fields) to dst.
	Append(dst []byte) []byte
}

// Status asks for the owner's inbox figures.
type Status struct{}

// Policy is what the owner sets for its inbox.
type Policy struct {
	TTL              uint32 // seconds a deposit is kept, up to the operator's maximum
	Strangers        bool   // strangers may deposit, with proof of work
	PowBits          uint8
	StrangersPerHour uint16
	TokenKey         [KeySize]byte // the key of the contacts' tokens; a new one revokes them all
	Revoked          []uint32      // token indexes refused from now on
}

// SetPolicy sets the owner's policy.
type SetPolicy struct{ Policy }

// PutBundle stores the owner's signed bundle, served to first contacts.
type PutBundle struct{ Bundle []byte }

// PutOTKs adds one-time prekey certificates for the mailbox to hand out.
type PutOTKs struct{ Certs [][]byte }

// Subscribe asks for the deposits after a sequence number, in pages of
// at most PageBytes of seals, then for each new one as it comes.
type Subscribe struct {
	After     uint64
	PageBytes uint32
}

// Ack tells the mailbox that deposits are safely stored: it deletes them.
type Ack struct{ Seqs []uint64 }

// Redeem turns an invitation into an admission.
type Redeem struct{ Secret [KeySize]byte }

// Unregister deletes everything the mailbox keeps for the owner.
type Unregister struct{}

// GetPrekeys asks for an owner's bundle and one-time prekeys.
type GetPrekeys struct{ Inbox [e2e.InboxIDSize]byte }

// Auth kinds of a deposit.
const (
	AuthToken = 1
	AuthWork  = 2
)

// Deposit leaves a seal in an inbox.
type Deposit struct {
	Inbox [e2e.InboxIDSize]byte
	Auth  byte // AuthToken or AuthWork
	// AuthToken
	Index uint32
	Token [TokenSize]byte
	// AuthWork
	Hour  uint32 // unix hours
	Nonce uint64
	TTL   uint32 // seconds; the mailbox keeps it at most the owner's TTL
	Seal  []byte
}

// OK answers a request that has nothing more to say.
type OK struct{}

// Error codes.
const (
	ErrCodeInternal     = 1 // the mailbox failed; try again later
	ErrCodeNotAdmitted  = 2 // the peer is not an owner here
	ErrCodeBadRequest   = 3 // a frame the mailbox cannot act on
	ErrCodeLimit        = 4 // over a limit (owners, certificates, TTL)
	ErrCodeBadInvite    = 5 // an invitation unknown, used or expired
	ErrCodeUnknownInbox = 6
)

// Error refuses a request, with a code and a sentence for the user.
type Error struct {
	Code byte
	Text string
}

func (e *Error) Error() string { return fmt.Sprintf("mailbox: %s (code %d)", e.Text, e.Code) }

// Stored is a deposit as the owner receives it.
type Stored struct {
	Seq      uint64
	Received int64 // unix milliseconds, by the mailbox's clock
	Seal     []byte
}

// Page is a run of deposits in sequence order; More says that others
// wait after them.
type Page struct {
	More     bool
	Deposits []Stored
}

// StatusReply is the owner's inbox, as the mailbox sees it.
type StatusReply struct {
	Inbox            [e2e.InboxIDSize]byte
	Stored           uint32
	StoredBytes      uint64
	Quota            uint32
	QuotaBytes       uint64
	TTL, TTLMax      uint32
	Strangers        bool
	PowBits          uint8
	StrangersPerHour uint16
	OTKsX25519       uint32
	OTKsMLKEM        uint32
}

// Prekeys answers GetPrekeys: the owner's bundle and at most one
// certificate of each kind.
type Prekeys struct {
	Bundle []byte
	Certs  [][]byte
}

// Result statuses of a deposit.
const (
	ResultStored       = 1
	ResultDuplicate    = 2 // already there: as good as stored
	ResultQuota        = 3
	ResultAuth         = 4
	ResultTooLarge     = 5
	ResultRetryLater   = 6
	ResultUnknownInbox = 7
)

// Result answers a deposit.
type Result struct{ Status byte }

func (Status) Append(dst []byte) []byte { return append(dst, TypeStatus) }

func (m SetPolicy) Append(dst []byte) []byte {
	dst = append(dst, TypeSetPolicy)
	dst = binary.BigEndian.AppendUint32(dst, m.TTL)
	dst = append(dst, boolByte(m.Strangers), m.PowBits)
	dst = binary.BigEndian.AppendUint16(dst, m.StrangersPerHour)
	dst = append(dst, m.TokenKey[:]...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Revoked)))
	for _, i := range m.Revoked {
		dst = binary.BigEndian.AppendUint32(dst, i)
	}
	return dst
}

func (m PutBundle) Append(dst []byte) []byte { return append(append(dst, TypePutBundle), m.Bundle...) }

func (m PutOTKs) Append(dst []byte) []byte {
	dst = append(dst, TypePutOTKs)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Certs)))
	for _, c := range m.Certs {
		dst = append(dst, c...)
	}
	return dst
}

func (m Subscribe) Append(dst []byte) []byte {
	dst = append(dst, TypeSubscribe)
	dst = binary.BigEndian.AppendUint64(dst, m.After)
	return binary.BigEndian.AppendUint32(dst, m.PageBytes)
}

func (m Ack) Append(dst []byte) []byte {
	dst = append(dst, TypeAck)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Seqs)))
	for _, s := range m.Seqs {
		dst = binary.BigEndian.AppendUint64(dst, s)
	}
	return dst
}

func (m Redeem) Append(dst []byte) []byte { return append(append(dst, TypeRedeem), m.Secret[:]...) }

func (Unregister) Append(dst []byte) []byte { return append(dst, TypeUnregister) }

func (m GetPrekeys) Append(dst []byte) []byte {
	return append(append(dst, TypeGetPrekeys), m.Inbox[:]...)
}

func (m Deposit) Append(dst []byte) []byte {
	dst = append(dst, TypeDeposit)
	dst = append(dst, m.Inbox[:]...)
	dst = append(dst, m.Auth)
	switch m.Auth {
	case AuthToken:
		dst = binary.BigEndian.AppendUint32(dst, m.Index)
		dst = append(dst, m.Token[:]...)
	case AuthWork:
		dst = binary.BigEndian.AppendUint32(dst, m.Hour)
		dst = binary.BigEndian.AppendUint64(dst, m.Nonce)
	}
	dst = binary.BigEndian.AppendUint32(dst, m.TTL)
	return append(dst, m.Seal...)
}

func (OK) Append(dst []byte) []byte { return append(dst, TypeOK) }

func (m *Error) Append(dst []byte) []byte {
	text := strings.ToValidUTF8(m.Text, "\uFFFD")
	for len(text) > MaxErrorText {
		_, size := utf8.DecodeLastRuneInString(text)
		text = text[:len(text)-size] // whole characters, or the decoder refuses it
	}
	return append(append(dst, TypeError, m.Code), text...)
}

func (m Page) Append(dst []byte) []byte {
	dst = append(dst, TypePage, boolByte(m.More))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Deposits)))
	for _, d := range m.Deposits {
		dst = binary.BigEndian.AppendUint64(dst, d.Seq)
		dst = binary.BigEndian.AppendUint64(dst, uint64(d.Received))
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(d.Seal)))
		dst = append(dst, d.Seal...)
	}
	return dst
}

func (m StatusReply) Append(dst []byte) []byte {
	dst = append(dst, TypeStatusReply)
	dst = append(dst, m.Inbox[:]...)
	dst = binary.BigEndian.AppendUint32(dst, m.Stored)
	dst = binary.BigEndian.AppendUint64(dst, m.StoredBytes)
	dst = binary.BigEndian.AppendUint32(dst, m.Quota)
	dst = binary.BigEndian.AppendUint64(dst, m.QuotaBytes)
	dst = binary.BigEndian.AppendUint32(dst, m.TTL)
	dst = binary.BigEndian.AppendUint32(dst, m.TTLMax)
	dst = append(dst, boolByte(m.Strangers), m.PowBits)
	dst = binary.BigEndian.AppendUint16(dst, m.StrangersPerHour)
	dst = binary.BigEndian.AppendUint32(dst, m.OTKsX25519)
	return binary.BigEndian.AppendUint32(dst, m.OTKsMLKEM)
}

func (m Prekeys) Append(dst []byte) []byte {
	dst = append(dst, TypePrekeys)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Bundle)))
	dst = append(dst, m.Bundle...)
	dst = append(dst, byte(len(m.Certs)))
	for _, c := range m.Certs {
		dst = append(dst, c...)
	}
	return dst
}

func (m Result) Append(dst []byte) []byte { return append(dst, TypeResult, m.Status) }

// Decode reads a frame body of either protocol. The caller checks that
// the type is one its side of its protocol may receive. The result does
// not alias b.
func Decode(b []byte) (Msg, error) {
	if len(b) == 0 {
		return nil, malformed("empty frame")
	}
	if len(b) > MaxFrame {
		return nil, malformed("frame too large")
	}
	r := reader{b: b[1:]}
	var m Msg
	switch b[0] {
	case TypeStatus:
		m = Status{}
	case TypeSetPolicy:
		var p Policy
		p.TTL = r.u32()
		p.Strangers = r.flag()
		p.PowBits = r.u8()
		p.StrangersPerHour = r.u16()
		copy(p.TokenKey[:], r.next(KeySize))
		n := int(r.u16())
		if n > MaxRevoked {
			return nil, malformed("too many revoked indexes")
		}
		if n > 0 {
			p.Revoked = make([]uint32, 0, min(n, len(r.b)/4))
		}
		for range n {
			p.Revoked = append(p.Revoked, r.u32())
		}
		m = SetPolicy{p}
	case TypePutBundle:
		if len(r.b) == 0 || len(r.b) > e2e.MaxBundleSize {
			return nil, malformed("bundle size")
		}
		m = PutBundle{Bundle: r.rest()}
	case TypePutOTKs:
		n := int(r.u16())
		if n == 0 || n > MaxOTKsPerFrame {
			return nil, malformed("certificate count")
		}
		certs, ok := r.certs(n)
		if !ok {
			return nil, malformed("certificates")
		}
		m = PutOTKs{Certs: certs}
	case TypeSubscribe:
		m = Subscribe{After: r.u64(), PageBytes: r.u32()}
	case TypeAck:
		n := int(r.u16())
		if n == 0 || n > MaxAcks || n*8 != len(r.b) {
			return nil, malformed("ack count")
		}
		a := Ack{Seqs: make([]uint64, n)}
		for i := range a.Seqs {
			a.Seqs[i] = r.u64()
		}
		m = a
	case TypeRedeem:
		var s Redeem
		copy(s.Secret[:], r.next(KeySize))
		m = s
	case TypeUnregister:
		m = Unregister{}
	case TypeGetPrekeys:
		var g GetPrekeys
		copy(g.Inbox[:], r.next(e2e.InboxIDSize))
		m = g
	case TypeDeposit:
		var d Deposit
		copy(d.Inbox[:], r.next(e2e.InboxIDSize))
		d.Auth = r.u8()
		switch d.Auth {
		case AuthToken:
			d.Index = r.u32()
			copy(d.Token[:], r.next(TokenSize))
		case AuthWork:
			d.Hour = r.u32()
			d.Nonce = r.u64()
		default:
			return nil, malformed("auth kind")
		}
		d.TTL = r.u32()
		if r.bad || len(r.b) == 0 || len(r.b) > e2e.MaxSealedSize {
			return nil, malformed("seal size")
		}
		d.Seal = r.rest()
		m = d
	case TypeOK:
		m = OK{}
	case TypeError:
		code := r.u8()
		text := r.rest()
		if code == 0 || len(text) > MaxErrorText || !utf8.Valid(text) {
			return nil, malformed("error")
		}
		m = &Error{Code: code, Text: string(text)}
	case TypePage:
		p := Page{More: r.flag()}
		n := int(r.u16())
		if n*pageItem > len(r.b) {
			return nil, malformed("page count")
		}
		for range n {
			s := Stored{Seq: r.u64(), Received: int64(r.u64())}
			l := int(r.u32())
			if l == 0 || l > e2e.MaxSealedSize {
				return nil, malformed("seal size")
			}
			s.Seal = clone(r.next(l))
			p.Deposits = append(p.Deposits, s)
		}
		m = p
	case TypeStatusReply:
		var s StatusReply
		copy(s.Inbox[:], r.next(e2e.InboxIDSize))
		s.Stored, s.StoredBytes = r.u32(), r.u64()
		s.Quota, s.QuotaBytes = r.u32(), r.u64()
		s.TTL, s.TTLMax = r.u32(), r.u32()
		s.Strangers, s.PowBits, s.StrangersPerHour = r.flag(), r.u8(), r.u16()
		s.OTKsX25519, s.OTKsMLKEM = r.u32(), r.u32()
		m = s
	case TypePrekeys:
		var p Prekeys
		l := int(r.u16())
		if l == 0 || l > e2e.MaxBundleSize {
			return nil, malformed("bundle size")
		}
		p.Bundle = clone(r.next(l))
		n := int(r.u8())
		if n > 2 {
			return nil, malformed("certificate count")
		}
		certs, ok := r.certs(n)
		if !ok {
			return nil, malformed("certificates")
		}
		p.Certs = certs
		m = p
	case TypeResult:
		st := r.u8()
		if st < ResultStored || st > ResultUnknownInbox {
			return nil, malformed("result status")
		}
		m = Result{Status: st}
	default:
		return nil, malformed(fmt.Sprintf("type 0x%02x", b[0]))
	}
	if r.bad {
		return nil, malformed("cut short")
	}
	if len(r.b) != 0 {
		return nil, malformed("bytes after the last field")
	}
	return m, nil
}

// reader consumes a frame; a read past the end sets bad and yields zero
// values, so the decoder checks once.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) next(n int) []byte {
	if r.bad || n < 0 || len(r.b) < n {
		r.bad = true
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) rest() []byte {
	out := clone(r.b)
	r.b = nil
	return out
}

func (r *reader) u8() byte {
	if b := r.next(1); b != nil {
		return b[0]
	}
	return 0
}

// flag reads a boolean byte: anything but 0 or 1 is malformed.
func (r *reader) flag() bool {
	v := r.u8()
	if v > 1 {
		r.bad = true
	}
	return v == 1
}

func (r *reader) u16() uint16 {
	if b := r.next(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.next(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if b := r.next(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// certs reads n one-time prekey certificates, each as long as its kind
// byte says; false for an unknown kind or a cut one.
func (r *reader) certs(n int) ([][]byte, bool) {
	var out [][]byte
	for range n {
		if r.bad || len(r.b) == 0 {
			return nil, false
		}
		size := e2e.OneTimeCertSize(e2e.OneTimeKind(r.b[0]))
		if size == 0 {
			return nil, false
		}
		c := r.next(size)
		if c == nil {
			return nil, false
		}
		out = append(out, clone(c))
	}
	return out, true
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}
