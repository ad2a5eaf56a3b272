package e2e

import (
	"crypto/ecdh"
	"crypto/subtle"
	"fmt"
	"slices"
	"time"
)

// Limits on skipped message keys (docs/design.md §6). MaxSkip bounds the
// keys that one message can make the receiver derive; MaxSkippedKeys and
// SkippedKeyMaxAge bound what a session stores. MaxSkippedChains goes
// beyond the Signal specification: each chain with stored keys costs one
// header trial per unknown message, so bounding chains bounds the cost of
// rejecting a forgery (docs/e2e-decisions.md, 1).
const (
	MaxSkip          = 1000
	MaxSkippedKeys   = 2000
	MaxSkippedChains = 5
	SkippedKeyMaxAge = 30 * 24 * time.Hour
)

const adPrefix = "p2pmsg/v1"

// Session is one side of a Double Ratchet session with header encryption.
// It is a plain value: the caller persists it with MarshalBinary after each
// Encrypt or successful Decrypt. A Session is not safe for concurrent use.
type Session struct {
	initiator bool
	local     PublicIdentity // Cert unused
	remote    PublicIdentity // Cert unused
	ad        []byte         // adPrefix || IK_A || IKdh_A || IK_B || IKdh_B
	baseKey   [32]byte       // EK_A: names the handshake

	rk        [32]byte
	dhsPriv   [32]byte         // zero while the send step is pending
	dhsKey    *ecdh.PrivateKey // dhsPriv parsed; built lazily after UnmarshalBinary
	dhsPub    DHPublicKey
	dhr       DHPublicKey
	cks, ckr  [32]byte
	hks, hkr  [32]byte
	nhks      [32]byte
	nhkr      [32]byte
	hasCKs    bool
	hasCKr    bool
	hasHKs    bool
	hasHKr    bool
	ns, nr    uint32
	pn        uint32
	sendStep  bool   // the sending half of the last DH ratchet step is due
	prekeyMsg []byte // initiator only: prefixed to every envelope until the first reply

	skipped []skippedChain // oldest first

	// Reused buffers, so that decryption does not allocate them; they hold
	// no secrets.
	hdrScratch [headerSize + 32]byte // opened header, header AD
	scratch    []byte                // body AD
}

type skippedChain struct {
	hk   [32]byte
	keys []skippedKey // ascending n, oldest first
}

type skippedKey struct {
	n       uint32
	created int64 // unix seconds
	mk      [32]byte
}

// Initiator reports whether this side started the session.
func (s *Session) Initiator() bool { return s.initiator }

// Remote returns the peer's identity key and identity DH key.
func (s *Session) Remote() (IdentityKey, DHPublicKey) { return s.remote.Key, s.remote.DH }

// BaseKey returns the initiator's ephemeral key, which names the handshake
// that created the session.
func (s *Session) BaseKey() DHPublicKey { return s.baseKey }

// Confirmed reports whether the initiator has heard from the responder; until
// then every envelope it sends is a prekey message.
func (s *Session) Confirmed() bool { return s.prekeyMsg == nil }

// SkippedKeys returns how many skipped message keys the session holds.
func (s *Session) SkippedKeys() int {
	n := 0
	for i := range s.skipped {
		n += len(s.skipped[i].keys)
	}
	return n
}

// Format keeps the ratchet state out of logs, for values and pointers.
func (s Session) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "e2e.Session{remote: %x, ns: %d, nr: %d}", s.remote.Key[:8], s.ns, s.nr)
}

// setDHs makes k the sending ratchet key.
func (s *Session) setDHs(k *ecdh.PrivateKey) {
	copy(s.dhsPriv[:], k.Bytes())
	s.dhsKey = k
	s.dhsPub = dhPublic(k)
}

// dhs returns the sending ratchet key. Parsing a private key in crypto/ecdh
// computes its public key, a scalar multiplication, so a restored session
// pays it once, on its first DH ratchet step, not on every load.
func (s *Session) dhs() *ecdh.PrivateKey {
	if s.dhsKey == nil {
		s.dhsKey = mustX25519(s.dhsPriv[:])
	}
	return s.dhsKey
}

// clearDHs forgets the sending ratchet key once its last use is past.
func (s *Session) clearDHs() {
	clear(s.dhsPriv[:])
	s.dhsKey = nil
}

func buildAD(initiator, responder *PublicIdentity) []byte {
	ad := make([]byte, 0, len(adPrefix)+4*32)
	ad = append(ad, adPrefix...)
	ad = append(ad, initiator.Key[:]...)
	ad = append(ad, initiator.DH[:]...)
	ad = append(ad, responder.Key[:]...)
	return append(ad, responder.DH[:]...)
}

func (s *Session) setAD() {
	if s.initiator {
		s.ad = buildAD(&s.local, &s.remote)
	} else {
		s.ad = buildAD(&s.remote, &s.local)
	}
}

// chainIndex returns the index of the skipped chain under hk, or -1.
func (s *Session) chainIndex(hk *[32]byte) int {
	for i := range s.skipped {
		if subtle.ConstantTimeCompare(s.skipped[i].hk[:], hk[:]) == 1 {
			return i
		}
	}
	return -1
}

// findSkipped looks up the key for message n in chain ci, ignoring keys that
// have expired at now.
func (s *Session) findSkipped(ci int, n uint32, now time.Time) (int, bool) {
	keys := s.skipped[ci].keys
	j, ok := slices.BinarySearchFunc(keys, n, func(k skippedKey, n uint32) int {
		return cmpU32(k.n, n)
	})
	if !ok || expired(keys[j].created, now) {
		return 0, false
	}
	return j, true
}

func expired(created int64, now time.Time) bool {
	return now.Unix()-created >= int64(SkippedKeyMaxAge/time.Second)
}

// removeSkipped deletes a used key and wipes it.
func (s *Session) removeSkipped(ci, j int) {
	c := &s.skipped[ci]
	clear(c.keys[j].mk[:])
	c.keys = slices.Delete(c.keys, j, j+1)
	if len(c.keys) == 0 {
		s.skipped = slices.Delete(s.skipped, ci, ci+1)
	}
}

// addSkipped stores keys under hk, then enforces the limits and the age
// bound, evicting the oldest first.
func (s *Session) addSkipped(hk *[32]byte, keys []skippedKey) {
	if len(keys) == 0 {
		return
	}
	last := len(s.skipped) - 1
	if last >= 0 && subtle.ConstantTimeCompare(s.skipped[last].hk[:], hk[:]) == 1 {
		s.skipped[last].keys = append(s.skipped[last].keys, keys...)
	} else {
		s.skipped = append(s.skipped, skippedChain{hk: *hk, keys: slices.Clone(keys)})
	}
	for len(s.skipped) > MaxSkippedChains {
		s.dropChain()
	}
	for total := s.SkippedKeys(); total > MaxSkippedKeys; total-- {
		s.dropOldest()
	}
}

func (s *Session) dropChain() {
	for i := range s.skipped[0].keys {
		clear(s.skipped[0].keys[i].mk[:])
	}
	s.skipped = slices.Delete(s.skipped, 0, 1)
}

func (s *Session) dropOldest() {
	c := &s.skipped[0]
	clear(c.keys[0].mk[:])
	c.keys = slices.Delete(c.keys, 0, 1)
	if len(c.keys) == 0 {
		s.skipped = slices.Delete(s.skipped, 0, 1)
	}
}

// Prune deletes the skipped message keys that have expired at now and
// reports how many it deleted. Decrypt prunes on success; a caller should
// also prune idle sessions (say daily), so that expired keys for messages
// that never came do not linger in storage. Keys are stored in the order
// they were created, so only the front needs looking at (a clock set back
// only delays expiry).
func (s *Session) Prune(now time.Time) int {
	n := 0
	for len(s.skipped) > 0 && expired(s.skipped[0].keys[0].created, now) {
		s.dropOldest()
		n++
	}
	return n
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
