package mailbox

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"math/bits"
	"time"

	"github.com/p2pmsg/p2pmsg/e2e"
)

// How a deposit is authorised (docs/mailbox.md, "Authorisation"): a
// contact shows a token the owner granted it; a stranger shows work.

const (
	tokenDomain = "p2pmsg/v1/mbox-token"
	workDomain  = "p2pmsg/v1/mbox-pow"
	// MaxPowBits bounds the work an owner may ask of strangers: 28 bits
	// is over a minute of hashing on a laptop core.
	MaxPowBits = 28
	// DefaultPowBits is the work asked by default: about half a second.
	DefaultPowBits = 22
)

// Token is the token of a contact's grant: HMAC-SHA256(key, domain ||
// inbox || index), cut to TokenSize. The owner makes it; the mailbox,
// holding the same key, checks it without keeping a row per contact.
func Token(key *[KeySize]byte, inbox [e2e.InboxIDSize]byte, index uint32) [TokenSize]byte {
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte(tokenDomain))
	m.Write(inbox[:])
	m.Write(binary.BigEndian.AppendUint32(nil, index))
	var t [TokenSize]byte
	copy(t[:], m.Sum(nil))
	return t
}

// TokenValid reports, in constant time, whether token is the one of
// index under key.
func TokenValid(key *[KeySize]byte, inbox [e2e.InboxIDSize]byte, index uint32, token [TokenSize]byte) bool {
	want := Token(key, inbox, index)
	return subtle.ConstantTimeCompare(want[:], token[:]) == 1
}

// workPrefix is the hashed input of a proof of work but its nonce.
func workPrefix(inbox [e2e.InboxIDSize]byte, seal []byte, hour uint32) []byte {
	digest := sha256.Sum256(seal)
	p := make([]byte, 0, len(workDomain)+e2e.InboxIDSize+32+4+8)
	p = append(p, workDomain...)
	p = append(p, inbox[:]...)
	p = append(p, digest[:]...)
	return binary.BigEndian.AppendUint32(p, hour)
}

// leadingZeros counts the leading zero bits of SHA-256(prefix || nonce).
// prefix must have room for the nonce (cap).
func leadingZeros(prefix []byte, nonce uint64) int {
	h := sha256.Sum256(binary.BigEndian.AppendUint64(prefix, nonce))
	n := 0
	for _, b := range h {
		if b != 0 {
			return n + bits.LeadingZeros8(b)
		}
		n += 8
	}
	return n
}

// Hour is the unix hour of t, as a proof of work names it.
func Hour(t time.Time) uint32 { return uint32(t.Unix() / 3600) }

// WorkValid reports whether nonce proves the work of powBits over the
// seal for the inbox, for the hour of now or one next to it (work done
// just before the hour turned, clocks an hour apart at most): work done
// once cannot be spent for ever, and the mailbox keeps no record of it.
func WorkValid(inbox [e2e.InboxIDSize]byte, seal []byte, hour uint32, nonce uint64, powBits uint8, now time.Time) bool {
	if h := Hour(now); hour+1 < h || hour > h+1 {
		return false
	}
	return leadingZeros(workPrefix(inbox, seal, hour), nonce) >= int(powBits)
}

// Solve finds a nonce proving the work of powBits over the seal for the
// inbox and hour, or stops with ctx's error.
func Solve(ctx context.Context, inbox [e2e.InboxIDSize]byte, seal []byte, hour uint32, powBits uint8) (uint64, error) {
	prefix := workPrefix(inbox, seal, hour)
	for nonce := uint64(0); ; nonce++ {
		if nonce&0xffff == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		if leadingZeros(prefix, nonce) >= int(powBits) {
			return nonce, nil
		}
	}
}
