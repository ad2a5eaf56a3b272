package e2e

import (
	"crypto/ed25519"
	"crypto/mlkem"
	"encoding/binary"
	"errors"
	"fmt"
)

// One-time prekey certificates: one-time prekeys that their owner signed
// one by one for a mailbox to hand out while the owner is offline (the
// package documentation, section One-time prekeys through a mailbox).

// OneTimeKind tells the two kinds of one-time prekey apart.
type OneTimeKind byte

const (
	OneTimeX25519 OneTimeKind = 1
	OneTimeMLKEM  OneTimeKind = 2
)

const (
	otkCertDomain = "p2pmsg/v1/otk"
	// MaxMailboxIDSize bounds the mailbox identifier a certificate binds
	// (a libp2p peer ID's bytes: 38 for an Ed25519 key).
	MaxMailboxIDSize = 64
)

// OneTimeCertSize is the size of a certificate of each kind.
func OneTimeCertSize(k OneTimeKind) int {
	switch k {
	case OneTimeX25519:
		return 1 + 4 + KeySize + SignatureSize
	case OneTimeMLKEM:
		return 1 + 4 + PQPublicSize + SignatureSize
	}
	return 0
}

// SignOneTimeCert certifies a one-time X25519 prekey for one mailbox:
// kind || id || public key || signature. The signature covers the
// mailbox's identifier, so a certificate a mailbox hands out shows which
// mailbox it was given to.
func (id *Identity) SignOneTimeCert(mailbox []byte, k *OneTimePrekey) ([]byte, error) {
	pub := k.Public()
	return id.signOTK(mailbox, OneTimeX25519, k.ID, pub[:])
}

// SignPQOneTimeCert certifies a one-time ML-KEM-768 prekey for one
// mailbox, as SignOneTimeCert does.
func (id *Identity) SignPQOneTimeCert(mailbox []byte, k *PQPrekey) ([]byte, error) {
	if !k.OneTime {
		return nil, errors.New("e2e: a last-resort PQ prekey is not one-time")
	}
	return id.signOTK(mailbox, OneTimeMLKEM, k.ID, k.Public())
}

func (id *Identity) signOTK(mailbox []byte, kind OneTimeKind, keyID uint32, pub []byte) ([]byte, error) {
	if len(mailbox) == 0 || len(mailbox) > MaxMailboxIDSize {
		return nil, fmt.Errorf("e2e: mailbox identifier of %d bytes: %w", len(mailbox), ErrMalformed)
	}
	cert := make([]byte, 0, OneTimeCertSize(kind))
	cert = append(cert, byte(kind))
	cert = binary.BigEndian.AppendUint32(cert, keyID)
	cert = append(cert, pub...)
	return append(cert, ed25519.Sign(id.sign, otkSigned(mailbox, cert))...), nil
}

// otkSigned is what a certificate's signature covers: the domain, the
// mailbox identifier (with its length) and the certificate's fields.
func otkSigned(mailbox, fields []byte) []byte {
	m := make([]byte, 0, len(otkCertDomain)+1+len(mailbox)+len(fields))
	m = append(m, otkCertDomain...)
	m = append(m, byte(len(mailbox)))
	m = append(m, mailbox...)
	return append(m, fields...)
}

// OneTimeCert is a verified one-time prekey certificate.
type OneTimeCert struct {
	Kind OneTimeKind
	ID   uint32
	x    DHPublicKey
	pq   *mlkem.EncapsulationKey768
}

// VerifyOneTimeCert decodes a certificate and checks that owner signed it
// for this mailbox. Errors: ErrMalformed, ErrOneTimeCert, ErrInvalidKey.
func VerifyOneTimeCert(owner IdentityKey, mailbox, cert []byte) (*OneTimeCert, error) {
	if len(cert) == 0 || len(cert) != OneTimeCertSize(OneTimeKind(cert[0])) || len(mailbox) == 0 || len(mailbox) > MaxMailboxIDSize {
		return nil, fmt.Errorf("one-time prekey certificate: %w", ErrMalformed)
	}
	fields, sig := cert[:len(cert)-SignatureSize], cert[len(cert)-SignatureSize:]
	if !ed25519.Verify(owner[:], otkSigned(mailbox, fields), sig) {
		return nil, ErrOneTimeCert
	}
	c := &OneTimeCert{Kind: OneTimeKind(cert[0]), ID: binary.BigEndian.Uint32(cert[1:5])}
	pub := fields[5:]
	if c.Kind == OneTimeX25519 {
		copy(c.x[:], pub)
		return c, nil
	}
	var err error
	if c.pq, err = mlkem.NewEncapsulationKey768(pub); err != nil {
		return nil, fmt.Errorf("one-time prekey certificate: %w", ErrInvalidKey)
	}
	return c, nil
}

// WithOneTimeCerts returns a copy of a verified bundle that carries the
// one-time prekeys of the certificates (at most one of each kind), for
// Initiate: a bundle from the DHT never has any, and a mailbox named in
// the bundle hands them out. Each certificate must be from the bundle's
// owner, for that mailbox.
func (b *Bundle) WithOneTimeCerts(mailbox []byte, certs ...[]byte) (*Bundle, error) {
	out := *b
	out.Extensions = append([]Extension(nil), b.Extensions...)
	var x, pq bool
	for _, raw := range certs {
		c, err := VerifyOneTimeCert(b.Identity, mailbox, raw)
		if err != nil {
			return nil, err
		}
		switch {
		case c.Kind == OneTimeX25519 && !x:
			x = true
			out.HasOneTimePrekey, out.OneTimePrekeyID, out.OneTimePrekey = true, c.ID, c.x
		case c.Kind == OneTimeMLKEM && !pq:
			pq = true
			out.HasPQOneTime, out.PQOneTimePrekeyID, out.pqOneTime = true, c.ID, c.pq
		default:
			return nil, fmt.Errorf("one-time prekey certificates: two of kind %d: %w", c.Kind, ErrMalformed)
		}
	}
	return &out, nil
}
