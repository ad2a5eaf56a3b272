package e2e

import (
	"encoding/binary"
	"fmt"
)

// Session state encoding, version 1. All integers big endian.
//
//	version       1   = 1
//	flags         2   initiator, hasCKs, hasCKr, hasHKs, hasHKr, sendStep, prekey (bits 0-6)
//	identities  128   local IK, local IKdh, remote IK, remote IKdh
//	base key     32   EK_A
//	RK           32
//	DHs        2x32   private (zero while sendStep), public
//	DHr          32
//	chain keys 2x32   CKs, CKr
//	header keys 4x32  HKs, HKr, NHKs, NHKr
//	Ns, Nr, PN  3x4
//	prekey     1261   only with the prekey flag: the initiator's pending prekey block
//	chains        1   number of skipped-key chains, then per chain:
//	  HK         32
//	  count       2   >= 1, then per key, in ascending N:
//	    N         4
//	    created   8   unix seconds
//	    MK       32
const (
	stateVersion = 1
	stateFixed   = 1 + 2 + 128 + 32 + 32 + 64 + 32 + 64 + 128 + 12
)

// State flags, in the bit order MarshalBinary writes them.
const (
	stInitiator = 1 << iota
	stHasCKs
	stHasCKr
	stHasHKs
	stHasHKr
	stSendStep
	stPrekey
	stAll = 1<<iota - 1
)

// MarshalBinary encodes the session for storage. The encoding holds every
// secret of the session: store it sealed.
func (s *Session) MarshalBinary() ([]byte, error) {
	n := stateFixed + 1 + len(s.prekeyMsg)
	for i := range s.skipped {
		n += 32 + 2 + 44*len(s.skipped[i].keys)
	}
	b := make([]byte, 0, n)
	b = append(b, stateVersion)
	var flags uint16
	for i, set := range []bool{s.initiator, s.hasCKs, s.hasCKr, s.hasHKs, s.hasHKr, s.sendStep, s.prekeyMsg != nil} {
		if set {
			flags |= 1 << i
		}
	}
	b = binary.BigEndian.AppendUint16(b, flags)
	for _, k := range [][]byte{
		s.local.Key[:], s.local.DH[:], s.remote.Key[:], s.remote.DH[:], s.baseKey[:], s.rk[:],
		s.dhsPriv[:], s.dhsPub[:], s.dhr[:], s.cks[:], s.ckr[:], s.hks[:], s.hkr[:], s.nhks[:], s.nhkr[:],
	} {
		b = append(b, k...)
	}
	b = binary.BigEndian.AppendUint32(b, s.ns)
	b = binary.BigEndian.AppendUint32(b, s.nr)
	b = binary.BigEndian.AppendUint32(b, s.pn)
	b = append(b, s.prekeyMsg...)
	b = append(b, byte(len(s.skipped)))
	for i := range s.skipped {
		c := &s.skipped[i]
		b = append(b, c.hk[:]...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(c.keys)))
		for _, k := range c.keys {
			b = binary.BigEndian.AppendUint32(b, k.n)
			b = binary.BigEndian.AppendUint64(b, uint64(k.created))
			b = append(b, k.mk[:]...)
		}
	}
	return b, nil
}

// UnmarshalBinary decodes a session written by MarshalBinary. It checks the
// limits and invariants, so a corrupted blob is an error, never a session
// that misbehaves later.
func (s *Session) UnmarshalBinary(data []byte) error {
	if len(data) < stateFixed+1 || data[0] != stateVersion {
		return fmt.Errorf("session state: %w", ErrMalformed)
	}
	r := reader{b: data[1:]}
	flags := binary.BigEndian.Uint16(r.next(2))
	if flags&^stAll != 0 {
		return fmt.Errorf("session state: unknown flags: %w", ErrMalformed)
	}
	var t Session
	t.initiator, t.hasCKs, t.hasCKr = flags&stInitiator != 0, flags&stHasCKs != 0, flags&stHasCKr != 0
	t.hasHKs, t.hasHKr, t.sendStep = flags&stHasHKs != 0, flags&stHasHKr != 0, flags&stSendStep != 0
	for _, k := range [][]byte{
		t.local.Key[:], t.local.DH[:], t.remote.Key[:], t.remote.DH[:], t.baseKey[:], t.rk[:],
		t.dhsPriv[:], t.dhsPub[:], t.dhr[:], t.cks[:], t.ckr[:], t.hks[:], t.hkr[:], t.nhks[:], t.nhkr[:],
	} {
		copy(k, r.next(32))
	}
	t.ns, t.nr, t.pn = r.u32(), r.u32(), r.u32()
	if t.sendStep != (t.dhsPriv == [32]byte{}) {
		return fmt.Errorf("session state: ratchet key and pending step disagree: %w", ErrMalformed)
	}
	if flags&stPrekey != 0 {
		if !t.initiator {
			return fmt.Errorf("session state: prekey block in a responder: %w", ErrMalformed)
		}
		t.prekeyMsg = append([]byte(nil), r.next(prekeyBlockSize)...)
	}
	chains := r.next(1)
	if r.bad || int(chains[0]) > MaxSkippedChains {
		return fmt.Errorf("session state: %w", ErrMalformed)
	}
	total := 0
	for range chains[0] {
		var c skippedChain
		copy(c.hk[:], r.next(32))
		count := r.next(2)
		if r.bad {
			break
		}
		if t.chainIndex(&c.hk) >= 0 {
			return fmt.Errorf("session state: two chains under one header key: %w", ErrMalformed)
		}
		n := int(binary.BigEndian.Uint16(count))
		total += n
		if n == 0 || total > MaxSkippedKeys {
			return fmt.Errorf("session state: skipped keys: %w", ErrMalformed)
		}
		c.keys = make([]skippedKey, n)
		for j := range c.keys {
			k := &c.keys[j]
			k.n = r.u32()
			k.created = int64(r.u64())
			copy(k.mk[:], r.next(32))
			if j > 0 && k.n <= c.keys[j-1].n {
				return fmt.Errorf("session state: skipped keys out of order: %w", ErrMalformed)
			}
			if k.created < 0 {
				return fmt.Errorf("session state: skipped key time: %w", ErrMalformed)
			}
		}
		t.skipped = append(t.skipped, c)
	}
	if r.bad || len(r.b) != 0 {
		return fmt.Errorf("session state: %w", ErrMalformed)
	}
	t.setAD()
	*s = t
	return nil
}
