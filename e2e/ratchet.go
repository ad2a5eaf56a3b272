package e2e

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"time"
)

// EncryptRandom is the randomness one Encrypt draws. RatchetKey is used
// only when a DH ratchet step is due.
type EncryptRandom struct {
	ID          MessageID
	HeaderNonce [headerNonceSize]byte
	BodyNonce   [bodyNonceSize]byte
	RatchetKey  [32]byte
}

// Format keeps RatchetKey out of logs.
func (r EncryptRandom) Format(f fmt.State, _ rune) { fmt.Fprintf(f, "e2e.EncryptRandom{%s}", r.ID) }

// Encrypt seals plaintext as the next message of the session and returns
// the envelope and its id. The session advances: persist it before sending
// the envelope, or a crash could make the same chain key encrypt twice
// (the random nonce keeps even that safe for confidentiality).
func (s *Session) Encrypt(plaintext []byte) (MessageID, []byte, error) {
	// One read for all of it: each read is a system call.
	var buf [idSize + headerNonceSize + bodyNonceSize + 32]byte
	need := len(buf) - 32
	if s.sendStep {
		need = len(buf)
	}
	rand.Read(buf[:need])
	var r EncryptRandom
	copy(r.ID[:], buf[:])
	copy(r.HeaderNonce[:], buf[idSize:])
	copy(r.BodyNonce[:], buf[idSize+headerNonceSize:])
	copy(r.RatchetKey[:], buf[idSize+headerNonceSize+bodyNonceSize:])
	clear(buf[:])
	id, env, err := s.EncryptWith(plaintext, &r)
	clear(r.RatchetKey[:])
	return id, env, err
}

// EncryptWith is the deterministic twin of Encrypt.
func (s *Session) EncryptWith(plaintext []byte, r *EncryptRandom) (MessageID, []byte, error) {
	if len(plaintext) > MaxPlaintextSize {
		return MessageID{}, nil, ErrTooLarge
	}
	if !s.hasHKs || (!s.hasCKs && !s.sendStep) {
		return MessageID{}, nil, ErrCannotSend
	}
	if s.ns == math.MaxUint32 {
		return MessageID{}, nil, errors.New("e2e: sending chain exhausted")
	}

	// Compute everything first; the session changes only at the end.
	rk, nhks := s.rk, s.nhks
	cks := &s.cks
	dhsPub := s.dhsPub
	var dhs *ecdh.PrivateKey
	if s.sendStep {
		dhs = mustX25519(r.RatchetKey[:])
		dhsPub = dhPublic(dhs)
		shared, err := dh(dhs, (*[32]byte)(&s.dhr))
		if err != nil {
			return MessageID{}, nil, err
		}
		var ck [32]byte
		rk, ck, nhks = kdfRK(&s.rk, &shared)
		clear(shared[:])
		cks = &ck
	}
	k := kdfCK(cks)
	mk := (*[32]byte)(k[:32])

	kind := byte(kindMessage)
	size := MessageOverhead + len(plaintext)
	if s.prekeyMsg != nil {
		kind = kindPrekey
		size += prekeyBlockSize
	}
	// One allocation: the session AD (the start of the body's AD), then
	// the envelope. The body is sealed first, for the header's AD hashes it.
	buf := make([]byte, len(s.ad), len(s.ad)+size)
	copy(buf, s.ad)
	buf = append(buf, envelopeVersion, kind)
	buf = append(buf, r.ID[:]...)
	buf = append(buf, s.prekeyMsg...)
	pEnd := len(buf)
	buf = append(buf, r.HeaderNonce[:]...)
	hp := len(buf)
	buf = append(buf, make([]byte, sealedHeaderSize)...) // the header, sealed below
	bn := len(buf)
	buf = append(buf, r.BodyNonce[:]...)
	buf = sealBody(buf, mk, buf[bn:], plaintext, buf[:pEnd])
	nextCK := [32]byte(k[32:])
	clear(k[:])

	hdrAD := (*[32]byte)(s.hdrScratch[headerSize:])
	headerAD(buf[len(s.ad):pEnd], buf[bn:], hdrAD)
	h := header{dh: dhsPub, pn: s.pn, n: s.ns}
	hdr := h.append(buf[hp:hp])                              // plaintext in place,
	sealHeader(hdr[:0], &s.hks, buf[pEnd:hp], hdr, hdrAD[:]) // sealed over itself

	if s.sendStep {
		s.setDHs(dhs)
		s.rk, s.nhks = rk, nhks
		s.hasCKs = true
		s.sendStep = false
	}
	s.cks = nextCK
	s.ns++
	return r.ID, buf[len(s.ad):], nil
}

// Decrypt opens an envelope at time now (used to age skipped keys). On any
// error the session is exactly as it was: a forged, tampered or replayed
// envelope cannot damage it. A prekey envelope is accepted only by the
// responder session of the same handshake (ErrWrongSession otherwise).
func (s *Session) Decrypt(data []byte, now time.Time) ([]byte, error) {
	e, err := parseEnvelope(data)
	if err != nil {
		return nil, err
	}
	if e.kind == kindPrekey {
		if s.initiator || subtle.ConstantTimeCompare(e.prekey[prekeyBaseKeyOffset:prekeyBaseKeyOffset+32], s.baseKey[:]) != 1 {
			return nil, ErrWrongSession
		}
	}
	return s.decrypt(&e, now)
}

func (s *Session) decrypt(e *envelope, now time.Time) ([]byte, error) {
	buf := s.hdrScratch[:0:headerSize]
	ad := (*[32]byte)(s.hdrScratch[headerSize:])
	headerAD(e.prefix, e.tail, ad)
	if s.hasHKr {
		if h, ok := openHeader(buf, &s.hkr, e.hdrNonce, e.sealedHdr, ad[:]); ok {
			return s.decryptCurrent(e, h, now)
		}
	}
	if h, ok := openHeader(buf, &s.nhkr, e.hdrNonce, e.sealedHdr, ad[:]); ok {
		return s.decryptNext(e, h, now)
	}
	for ci := range s.skipped {
		c := &s.skipped[ci]
		if s.hasHKr && subtle.ConstantTimeCompare(c.hk[:], s.hkr[:]) == 1 {
			continue // tried above
		}
		if h, ok := openHeader(buf, &c.hk, e.hdrNonce, e.sealedHdr, ad[:]); ok {
			hd, err := parseHeader(h)
			if err != nil {
				return nil, err
			}
			return s.decryptSkipped(e, ci, hd.n, now)
		}
	}
	return nil, ErrDecrypt
}

// decryptCurrent handles a message of the current receiving chain.
func (s *Session) decryptCurrent(e *envelope, raw []byte, now time.Time) ([]byte, error) {
	h, err := parseHeader(raw)
	if err != nil {
		return nil, err
	}
	if !h.dh.Equal(s.dhr) {
		return nil, ErrDecrypt
	}
	if h.n < s.nr {
		ci := s.chainIndex(&s.hkr)
		if ci < 0 {
			return nil, ErrReplay
		}
		return s.decryptSkipped(e, ci, h.n, now)
	}
	if h.n-s.nr > MaxSkip {
		return nil, tooManySkipped(uint64(h.n - s.nr))
	}
	if h.n == math.MaxUint32 { // Encrypt never uses it; Nr would wrap
		return nil, ErrDecrypt
	}
	ck := &s.ckr // only read: the session changes only on success
	var skipped []skippedKey
	if h.n > s.nr {
		local := s.ckr
		skipped = skipKeys(&local, s.nr, h.n, now)
		ck = &local
		defer clear(local[:])
	}
	k := kdfCK(ck)
	pt, ok := s.openBody(e, (*[32]byte)(k[:32]))
	if !ok {
		clear(k[:])
		wipeKeys(skipped)
		return nil, ErrDecrypt
	}
	s.addSkipped(&s.hkr, skipped)
	wipeKeys(skipped)
	s.ckr = [32]byte(k[32:])
	clear(k[:])
	s.nr = h.n + 1
	s.Prune(now)
	return pt, nil
}

// decryptNext handles the first message of the peer's next sending chain:
// the receiving half of a DH ratchet step.
func (s *Session) decryptNext(e *envelope, raw []byte, now time.Time) ([]byte, error) {
	h, err := parseHeader(raw)
	if err != nil {
		return nil, err
	}
	// The peer moves to a new chain only after it has seen our new ratchet
	// key, which we have not yet made: only a misbehaving peer gets here.
	if s.sendStep {
		return nil, ErrDecrypt
	}
	// MaxSkip bounds the keys this one envelope makes us derive, across
	// the end of the old chain and the start of the new one; the Signal
	// specification checks each chain alone, which lets one envelope cost
	// twice MaxSkip (docs/e2e-decisions.md, 11). In uint64: both are
	// attacker-chosen uint32s.
	var oldGap uint64
	if s.hasCKr && h.pn > s.nr {
		oldGap = uint64(h.pn - s.nr)
	}
	if oldGap+uint64(h.n) > MaxSkip {
		return nil, tooManySkipped(oldGap + uint64(h.n))
	}
	shared, err := dh(s.dhs(), (*[32]byte)(&h.dh))
	if err != nil {
		return nil, ErrDecrypt
	}
	var oldSkipped []skippedKey
	if s.hasCKr && h.pn > s.nr {
		ck := s.ckr
		oldSkipped = skipKeys(&ck, s.nr, h.pn, now)
		clear(ck[:])
	}
	rk, ck, nhkr := kdfRK(&s.rk, &shared)
	clear(shared[:])
	newSkipped := skipKeys(&ck, 0, h.n, now)
	k := kdfCK(&ck)
	clear(ck[:])
	pt, ok := s.openBody(e, (*[32]byte)(k[:32]))
	next := [32]byte(k[32:])
	clear(k[:])
	if !ok {
		wipeKeys(oldSkipped)
		wipeKeys(newSkipped)
		return nil, ErrDecrypt
	}

	if s.hasHKr {
		s.addSkipped(&s.hkr, oldSkipped)
	}
	wipeKeys(oldSkipped)
	s.pn, s.ns, s.nr = s.ns, 0, h.n+1
	s.hks, s.hasHKs = s.nhks, true
	s.hkr, s.hasHKr = s.nhkr, true
	s.nhkr = nhkr
	s.dhr = h.dh
	s.rk = rk
	s.ckr, s.hasCKr = next, true
	clear(s.cks[:])
	s.hasCKs = false
	s.clearDHs() // needed no more: forward secrecy
	s.sendStep = true
	s.addSkipped(&s.hkr, newSkipped)
	wipeKeys(newSkipped)
	s.prekeyMsg = nil // the responder has answered
	s.Prune(now)
	return pt, nil
}

// decryptSkipped opens a message with a stored skipped key.
func (s *Session) decryptSkipped(e *envelope, ci int, n uint32, now time.Time) ([]byte, error) {
	j, ok := s.findSkipped(ci, n, now)
	if !ok {
		return nil, ErrReplay
	}
	mk := s.skipped[ci].keys[j].mk
	pt, ok := s.openBody(e, &mk)
	clear(mk[:])
	if !ok {
		return nil, ErrDecrypt
	}
	s.removeSkipped(ci, j)
	s.prekeyMsg = nil
	s.Prune(now)
	return pt, nil
}

// openBody opens the AES-256-GCM body; the AD is the session AD followed by
// the envelope's version, kind, id and prekey block.
func (s *Session) openBody(e *envelope, mk *[32]byte) ([]byte, bool) {
	if cap(s.scratch) < 256 {
		s.scratch = make([]byte, 0, 256)
	}
	ad := append(append(s.scratch[:0], s.ad...), e.prefix...)
	s.scratch = ad[:0]
	if len(e.body) < tagSize {
		return nil, false
	}
	return openBody(make([]byte, 0, len(e.body)-tagSize), mk, e.bodyNonce, e.body, ad)
}

// tooManySkipped says how far over the bound a message was. The count
// reveals nothing: only a header that authenticated gets this far.
func tooManySkipped(n uint64) error {
	return fmt.Errorf("%w: %d keys to derive for one message, at most %d", ErrTooManySkipped, n, MaxSkip)
}

// skipKeys derives the message keys from..to-1 of the chain ck, advancing
// ck. The callers have bounded to-from by MaxSkip.
func skipKeys(ck *[32]byte, from, to uint32, now time.Time) []skippedKey {
	if to <= from {
		return nil
	}
	dst := make([]skippedKey, 0, to-from)
	for n := from; n < to; n++ {
		k := kdfCK(ck)
		*ck = [32]byte(k[32:])
		dst = append(dst, skippedKey{n: n, created: now.Unix(), mk: [32]byte(k[:32])})
		clear(k[:])
	}
	return dst
}

func wipeKeys(keys []skippedKey) {
	for i := range keys {
		clear(keys[i].mk[:])
	}
}
