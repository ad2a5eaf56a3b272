package e2e

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"time"
)

// Prekey block layout: the part of a prekey envelope between the message id
// and the ratchet message (see the package documentation).
const (
	prekeyBaseKeyOffset = 32 + 32 + SignatureSize
	prekeyFlagOPK       = 1 << 0
	prekeyFlagPQOneTime = 1 << 1
)

// filler is F of PQXDH: 32 0xFF bytes before the key material, so that it
// is never a valid X25519 output prefix.
var filler = [32]byte{
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
}

// encapsulator is ML-KEM-768 encapsulation: Initiate passes crypto/mlkem's
// randomised Encapsulate; the known-answer tests pass a deterministic one
// (initiate_test.go), which only crypto/mlkem/mlkemtest provides, so that
// it stays out of every binary.
type encapsulator func(*mlkem.EncapsulationKey768) (ss, ct []byte, err error)

// Initiate starts a session with the owner of a verified bundle (PQXDH, as
// the package documentation gives it), using the bundle's one-time prekeys
// when it has them. Every envelope the session encrypts is a prekey message
// until the peer answers.
func Initiate(self *Identity, b *Bundle) (*Session, error) {
	var ek [32]byte
	rand.Read(ek[:])
	defer clear(ek[:])
	return initiate(self, b, &ek, func(k *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
		ss, ct := k.Encapsulate()
		return ss, ct, nil
	})
}

func initiate(self *Identity, b *Bundle, ephemeral *[32]byte, encaps encapsulator) (*Session, error) {
	if self == nil || self.dh == nil || b == nil || b.pqPrekey == nil || (b.HasPQOneTime && b.pqOneTime == nil) {
		return nil, errors.New("e2e: Initiate needs a loaded identity and a bundle from VerifyBundle")
	}
	ek := mustX25519(ephemeral[:])
	ekPub := dhPublic(ek)
	spk, ikdh, opk := (*[32]byte)(&b.SignedPrekey), (*[32]byte)(&b.IdentityDH), (*[32]byte)(&b.OneTimePrekey)

	km := make([]byte, 0, 5*32+mlkem.SharedKeySize)
	km = append(km, filler[:]...)
	var err error
	km, err = appendDH(km, self.dh, spk) // DH1
	if err == nil {
		km, err = appendDH(km, ek, ikdh) // DH2
	}
	if err == nil {
		km, err = appendDH(km, ek, spk) // DH3
	}
	flags := byte(0)
	if err == nil && b.HasOneTimePrekey {
		km, err = appendDH(km, ek, opk) // DH4
		flags |= prekeyFlagOPK
	}
	if err != nil {
		clear(km)
		return nil, err
	}
	pqKey, pqID := b.pqPrekey, b.PQPrekeyID
	if b.HasPQOneTime {
		pqKey, pqID = b.pqOneTime, b.PQOneTimePrekeyID
		flags |= prekeyFlagPQOneTime
	}
	ss, ct, err := encaps(pqKey)
	if err != nil {
		clear(km)
		return nil, err
	}
	km = append(km, ss...)
	clear(ss)

	s := &Session{initiator: true, local: self.pub, baseKey: ekPub}
	s.remote = PublicIdentity{Key: b.Identity, DH: b.IdentityDH}
	s.setAD()
	s.deriveRoot(km)
	clear(km)
	// The initiator's first DH ratchet step runs at its first Encrypt,
	// against the signed prekey, which is the responder's first ratchet key.
	s.dhr = b.SignedPrekey
	s.sendStep = true

	pk := make([]byte, 0, prekeyBlockSize)
	pk = append(pk, self.pub.Key[:]...)
	pk = append(pk, self.pub.DH[:]...)
	pk = append(pk, self.pub.Cert[:]...)
	pk = append(pk, ekPub[:]...)
	pk = binary.BigEndian.AppendUint32(pk, b.SignedPrekeyID)
	pk = append(pk, flags)
	pk = binary.BigEndian.AppendUint32(pk, b.OneTimePrekeyID)
	pk = binary.BigEndian.AppendUint32(pk, pqID)
	s.prekeyMsg = append(pk, ct...)
	return s, nil
}

// deriveRoot derives SK, HKa and NHKb from the PQXDH key material and
// seeds the ratchet as in the header-encryption variant of the spec.
func (s *Session) deriveRoot(km []byte) {
	var salt [32]byte
	out, err := hkdf.Key(sha256.New, km, salt[:], infoPQXDH, 96)
	if err != nil {
		panic("e2e: hkdf: " + err.Error())
	}
	copy(s.rk[:], out[0:32])
	if s.initiator {
		copy(s.hks[:], out[32:64])
		s.hasHKs = true
		copy(s.nhkr[:], out[64:96])
	} else {
		copy(s.nhkr[:], out[32:64])
		copy(s.nhks[:], out[64:96])
	}
	clear(out)
}

func appendDH(dst []byte, priv *ecdh.PrivateKey, pub *[32]byte) ([]byte, error) {
	out, err := dh(priv, pub)
	if err != nil {
		return dst, err
	}
	dst = append(dst, out[:]...)
	clear(out[:])
	return dst, nil
}

// PrekeyMessage is a parsed, not yet authenticated, prekey envelope: what
// the responder needs to look up before it can call Respond.
type PrekeyMessage struct {
	ID               MessageID
	Sender           PublicIdentity // Cert not yet verified
	BaseKey          DHPublicKey    // EK_A
	SignedPrekeyID   uint32
	HasOneTimePrekey bool
	OneTimePrekeyID  uint32
	PQPrekeyID       uint32
	PQOneTime        bool

	env envelope
	ct  []byte
}

// ParsePrekeyMessage parses a prekey envelope. It checks only the framing.
// The message keeps a copy of data, so the caller may reuse its buffer.
func ParsePrekeyMessage(data []byte) (*PrekeyMessage, error) {
	if len(data) > MaxEnvelopeSize {
		return nil, ErrTooLarge
	}
	e, err := parseEnvelope(bytes.Clone(data))
	if err != nil {
		return nil, err
	}
	if e.kind != kindPrekey {
		return nil, ErrMalformed
	}
	r := reader{b: e.prekey}
	m := &PrekeyMessage{ID: e.id, env: e}
	copy(m.Sender.Key[:], r.next(32))
	copy(m.Sender.DH[:], r.next(32))
	copy(m.Sender.Cert[:], r.next(SignatureSize))
	copy(m.BaseKey[:], r.next(32))
	m.SignedPrekeyID = r.u32()
	flags := r.next(1)[0]
	m.OneTimePrekeyID = r.u32()
	m.PQPrekeyID = r.u32()
	m.ct = r.next(PQCipherSize)
	if r.bad || flags&^(prekeyFlagOPK|prekeyFlagPQOneTime) != 0 {
		return nil, ErrMalformed
	}
	m.HasOneTimePrekey = flags&prekeyFlagOPK != 0
	m.PQOneTime = flags&prekeyFlagPQOneTime != 0
	if !m.HasOneTimePrekey && m.OneTimePrekeyID != 0 {
		return nil, ErrMalformed
	}
	return m, nil
}

// ReplayKey names an initial message for replay protection: the signed
// prekey id and EK_A. The responder must remember it for as long as it
// keeps that signed prekey's private half (rotations included), or a
// replayed prekey message without one-time keys would start a second
// session and deliver its first message twice.
type ReplayKey [4 + 32]byte

// ReplayKey returns the message's replay key.
func (m *PrekeyMessage) ReplayKey() ReplayKey {
	var k ReplayKey
	binary.BigEndian.PutUint32(k[:4], m.SignedPrekeyID)
	copy(k[4:], m.BaseKey[:])
	return k
}

// ResponderKeys are the private prekeys that a prekey message names, as
// the caller found them. A one-time key that was already used must not be
// supplied: Respond then fails with ErrUnknownPrekey.
type ResponderKeys struct {
	SignedPrekey  *SignedPrekey
	OneTimePrekey *OneTimePrekey // nil unless the message names one
	PQPrekey      *PQPrekey
}

// Respond runs the responder side of PQXDH and decrypts the first message.
// seen reports whether the message's ReplayKey was accepted before. The
// caller records the replay key, deletes the used one-time prekeys and
// stores the new session in one transaction, and serialises Respond per
// base key (a unique constraint on the replay key will do), so that two
// copies of one prekey message arriving at once cannot both start a
// session. Respond costs at most one handshake, whatever the input (the
// first message may skip up to MaxSkip keys of its chain), and makes the
// cheap checks first.
func Respond(self *Identity, m *PrekeyMessage, keys ResponderKeys, seen func(ReplayKey) bool, now time.Time) (*Session, []byte, error) {
	if seen == nil {
		return nil, nil, errors.New("e2e: Respond needs a seen check")
	}
	if self == nil || self.dh == nil || m == nil {
		return nil, nil, errors.New("e2e: Respond needs a loaded identity and a parsed message")
	}
	if keys.SignedPrekey == nil || keys.SignedPrekey.ID != m.SignedPrekeyID ||
		keys.PQPrekey == nil || keys.PQPrekey.ID != m.PQPrekeyID || keys.PQPrekey.OneTime != m.PQOneTime ||
		(m.HasOneTimePrekey && (keys.OneTimePrekey == nil || keys.OneTimePrekey.ID != m.OneTimePrekeyID)) ||
		keys.SignedPrekey.priv == nil || keys.PQPrekey.dk == nil || (m.HasOneTimePrekey && keys.OneTimePrekey.priv == nil) {
		return nil, nil, ErrUnknownPrekey
	}
	if seen(m.ReplayKey()) {
		return nil, nil, ErrReplay
	}
	if err := m.Sender.Verify(); err != nil {
		return nil, nil, err
	}
	ikdh, ek := (*[32]byte)(&m.Sender.DH), (*[32]byte)(&m.BaseKey)
	km := make([]byte, 0, 5*32+mlkem.SharedKeySize)
	km = append(km, filler[:]...)
	var err error
	km, err = appendDH(km, keys.SignedPrekey.priv, ikdh) // DH1
	if err == nil {
		km, err = appendDH(km, self.dh, ek) // DH2
	}
	if err == nil {
		km, err = appendDH(km, keys.SignedPrekey.priv, ek) // DH3
	}
	if err == nil && m.HasOneTimePrekey {
		km, err = appendDH(km, keys.OneTimePrekey.priv, ek) // DH4
	}
	if err != nil {
		clear(km)
		return nil, nil, err
	}
	ss, err := keys.PQPrekey.dk.Decapsulate(m.ct)
	if err != nil {
		clear(km)
		return nil, nil, ErrMalformed
	}
	km = append(km, ss...)
	clear(ss)

	s := &Session{local: self.pub, remote: m.Sender, baseKey: m.BaseKey}
	s.remote.Cert = [SignatureSize]byte{}
	s.setAD()
	s.deriveRoot(km)
	clear(km)
	s.setDHs(keys.SignedPrekey.priv)
	pt, err := s.decrypt(&m.env, now)
	if err != nil {
		return nil, nil, err
	}
	return s, pt, nil
}
