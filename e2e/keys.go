package e2e

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
)

// Key sizes of the wire formats.
const (
	KeySize        = 32                            // Ed25519 public, X25519 public and private
	SignatureSize  = ed25519.SignatureSize         // 64
	PQPublicSize   = mlkem.EncapsulationKeySize768 // 1184
	PQCipherSize   = mlkem.CiphertextSize768       // 1088
	PQSeedSize     = mlkem.SeedSize                // 64
	identityDomain = "p2pmsg/v1/ikdh"              // certificate of IKdh by IK
	identityBlob   = 1 + ed25519.SeedSize + KeySize + SignatureSize
)

// IdentityKey is a public Ed25519 identity key: the key of a libp2p peer ID.
type IdentityKey [32]byte

// DHPublicKey is a public X25519 key.
type DHPublicKey [32]byte

// Equal reports whether two identity keys are equal, in constant time.
func (k IdentityKey) Equal(o IdentityKey) bool { return subtle.ConstantTimeCompare(k[:], o[:]) == 1 }

// Equal reports whether two DH keys are equal, in constant time.
func (k DHPublicKey) Equal(o DHPublicKey) bool { return subtle.ConstantTimeCompare(k[:], o[:]) == 1 }

// PublicIdentity is what a peer presents of itself: the Ed25519 identity
// key, the X25519 identity DH key, and the certificate binding them.
type PublicIdentity struct {
	Key  IdentityKey
	DH   DHPublicKey
	Cert [SignatureSize]byte
}

// Verify checks that Key certified DH.
func (p *PublicIdentity) Verify() error {
	if !ed25519.Verify(p.Key[:], certMessage(&p.DH), p.Cert[:]) {
		return ErrInvalidIdentity
	}
	return nil
}

func certMessage(dh *DHPublicKey) []byte {
	m := make([]byte, 0, len(identityDomain)+KeySize)
	return append(append(m, identityDomain...), dh[:]...)
}

// Identity is a user's long-term secret: the Ed25519 identity key (also the
// libp2p host key) and the X25519 identity DH key it certifies.
type Identity struct {
	sign ed25519.PrivateKey
	dh   *ecdh.PrivateKey
	pub  PublicIdentity
}

// NewIdentity generates an identity from the system's secure random source.
func NewIdentity() *Identity {
	var sign, dh [32]byte
	rand.Read(sign[:])
	rand.Read(dh[:])
	id := NewIdentityFromSeeds(sign, dh)
	clear(sign[:])
	clear(dh[:])
	return id
}

// NewIdentityFromSeeds is the deterministic twin of NewIdentity: signSeed is
// the Ed25519 seed (RFC 8032), dhKey the X25519 private key.
func NewIdentityFromSeeds(signSeed, dhKey [32]byte) *Identity {
	id := &Identity{sign: ed25519.NewKeyFromSeed(signSeed[:]), dh: mustX25519(dhKey[:])}
	copy(id.pub.Key[:], id.sign.Public().(ed25519.PublicKey))
	copy(id.pub.DH[:], id.dh.PublicKey().Bytes())
	copy(id.pub.Cert[:], ed25519.Sign(id.sign, certMessage(&id.pub.DH)))
	return id
}

// Public returns the identity's public part.
func (id *Identity) Public() PublicIdentity { return id.pub }

// Ed25519Seed returns the 32-byte Ed25519 seed, the form in which libp2p and
// the store take the key. Treat it as the secret it is.
func (id *Identity) Ed25519Seed() [32]byte {
	var s [32]byte
	copy(s[:], id.sign.Seed())
	return s
}

// MarshalBinary encodes the identity for storage: version 1, the Ed25519
// seed, the X25519 private key and the certificate (kept so that loading
// need not sign).
func (id *Identity) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, identityBlob)
	b = append(b, 1)
	b = append(b, id.sign.Seed()...)
	b = append(b, id.dh.Bytes()...)
	return append(b, id.pub.Cert[:]...), nil
}

// UnmarshalBinary decodes an identity written by MarshalBinary.
func (id *Identity) UnmarshalBinary(b []byte) error {
	if len(b) != identityBlob || b[0] != 1 {
		return fmt.Errorf("identity: %w", ErrMalformed)
	}
	var seed, dh [32]byte
	copy(seed[:], b[1:33])
	copy(dh[:], b[33:65])
	loaded := NewIdentityFromSeeds(seed, dh)
	clear(seed[:])
	clear(dh[:])
	if subtle.ConstantTimeCompare(loaded.pub.Cert[:], b[65:]) != 1 {
		return fmt.Errorf("identity: certificate does not match the keys: %w", ErrMalformed)
	}
	*id = *loaded
	return nil
}

// Format keeps secrets out of logs and error strings: only the public key
// is ever printed. Its receiver is a value, so that values print safely too.
func (id Identity) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "e2e.Identity{%x}", id.pub.Key[:8])
}

// SignedPrekey is a medium-term X25519 prekey, signed inside the bundle.
type SignedPrekey struct {
	ID   uint32
	priv *ecdh.PrivateKey
}

// OneTimePrekey is an X25519 prekey handed out once.
type OneTimePrekey struct {
	ID   uint32
	priv *ecdh.PrivateKey
}

// PQPrekey is an ML-KEM-768 prekey, either the last-resort one in the
// bundle or a one-time one.
type PQPrekey struct {
	ID      uint32
	OneTime bool
	dk      *mlkem.DecapsulationKey768
}

// NewSignedPrekey generates a signed prekey with the given id.
func NewSignedPrekey(id uint32) *SignedPrekey {
	var k [32]byte
	rand.Read(k[:])
	defer clear(k[:])
	return NewSignedPrekeyFromKey(id, k)
}

// NewSignedPrekeyFromKey is the deterministic twin of NewSignedPrekey.
func NewSignedPrekeyFromKey(id uint32, key [32]byte) *SignedPrekey {
	return &SignedPrekey{ID: id, priv: mustX25519(key[:])}
}

// NewOneTimePrekey generates a one-time prekey with the given id.
func NewOneTimePrekey(id uint32) *OneTimePrekey {
	var k [32]byte
	rand.Read(k[:])
	defer clear(k[:])
	return NewOneTimePrekeyFromKey(id, k)
}

// NewOneTimePrekeyFromKey is the deterministic twin of NewOneTimePrekey.
func NewOneTimePrekeyFromKey(id uint32, key [32]byte) *OneTimePrekey {
	return &OneTimePrekey{ID: id, priv: mustX25519(key[:])}
}

// NewPQPrekey generates an ML-KEM-768 prekey.
func NewPQPrekey(id uint32, oneTime bool) *PQPrekey {
	var s [PQSeedSize]byte
	rand.Read(s[:])
	defer clear(s[:])
	return NewPQPrekeyFromSeed(id, oneTime, s)
}

// NewPQPrekeyFromSeed is the deterministic twin of NewPQPrekey (FIPS 203
// seed d || z).
func NewPQPrekeyFromSeed(id uint32, oneTime bool, seed [PQSeedSize]byte) *PQPrekey {
	dk, err := mlkem.NewDecapsulationKey768(seed[:])
	if err != nil {
		panic("e2e: mlkem: " + err.Error()) // only for a wrong seed length
	}
	return &PQPrekey{ID: id, OneTime: oneTime, dk: dk}
}

// Public returns the public half.
func (k *SignedPrekey) Public() DHPublicKey { return dhPublic(k.priv) }

// Public returns the public half.
func (k *OneTimePrekey) Public() DHPublicKey { return dhPublic(k.priv) }

// Public returns the encapsulation key.
func (k *PQPrekey) Public() []byte { return k.dk.EncapsulationKey().Bytes() }

// MarshalBinary encodes the prekey for storage: id (big endian) || private key.
func (k *SignedPrekey) MarshalBinary() ([]byte, error) { return marshalDHPrekey(k.ID, k.priv), nil }

// MarshalBinary encodes the prekey for storage: id (big endian) || private key.
func (k *OneTimePrekey) MarshalBinary() ([]byte, error) { return marshalDHPrekey(k.ID, k.priv), nil }

// UnmarshalBinary decodes a prekey written by MarshalBinary.
func (k *SignedPrekey) UnmarshalBinary(b []byte) (err error) {
	k.ID, k.priv, err = unmarshalDHPrekey(b)
	return err
}

// UnmarshalBinary decodes a prekey written by MarshalBinary.
func (k *OneTimePrekey) UnmarshalBinary(b []byte) (err error) {
	k.ID, k.priv, err = unmarshalDHPrekey(b)
	return err
}

// MarshalBinary encodes the prekey for storage: id || one-time flag || seed.
func (k *PQPrekey) MarshalBinary() ([]byte, error) {
	b := binary.BigEndian.AppendUint32(nil, k.ID)
	b = append(b, boolByte(k.OneTime))
	return append(b, k.dk.Bytes()...), nil
}

// UnmarshalBinary decodes a prekey written by MarshalBinary.
func (k *PQPrekey) UnmarshalBinary(b []byte) error {
	if len(b) != 5+PQSeedSize || b[4] > 1 {
		return fmt.Errorf("pq prekey: %w", ErrMalformed)
	}
	dk, err := mlkem.NewDecapsulationKey768(b[5:])
	if err != nil {
		return fmt.Errorf("pq prekey: %w", ErrMalformed)
	}
	*k = PQPrekey{ID: binary.BigEndian.Uint32(b), OneTime: b[4] == 1, dk: dk}
	return nil
}

// Format prints only the id.
func (k SignedPrekey) Format(f fmt.State, _ rune) { fmt.Fprintf(f, "e2e.SignedPrekey{%d}", k.ID) }

// Format prints only the id.
func (k OneTimePrekey) Format(f fmt.State, _ rune) { fmt.Fprintf(f, "e2e.OneTimePrekey{%d}", k.ID) }

// Format prints only the id.
func (k PQPrekey) Format(f fmt.State, _ rune) { fmt.Fprintf(f, "e2e.PQPrekey{%d}", k.ID) }

func marshalDHPrekey(id uint32, priv *ecdh.PrivateKey) []byte {
	return append(binary.BigEndian.AppendUint32(make([]byte, 0, 36), id), priv.Bytes()...)
}

func unmarshalDHPrekey(b []byte) (uint32, *ecdh.PrivateKey, error) {
	if len(b) != 4+KeySize {
		return 0, nil, fmt.Errorf("prekey: %w", ErrMalformed)
	}
	return binary.BigEndian.Uint32(b), mustX25519(b[4:]), nil
}

// mustX25519 makes an X25519 private key; every 32-byte string is one.
func mustX25519(k []byte) *ecdh.PrivateKey {
	p, err := ecdh.X25519().NewPrivateKey(k)
	if err != nil {
		panic("e2e: x25519: " + err.Error())
	}
	return p
}

func dhPublic(p *ecdh.PrivateKey) (k DHPublicKey) {
	copy(k[:], p.PublicKey().Bytes())
	return k
}

// dh computes X25519(priv, pub). crypto/ecdh rejects low-order points (an
// all-zero result), which the deprecated curve25519.ScalarMult accepted.
func dh(priv *ecdh.PrivateKey, pub *[32]byte) ([32]byte, error) {
	var out [32]byte
	p, err := ecdh.X25519().NewPublicKey(pub[:])
	if err != nil {
		return out, ErrInvalidKey
	}
	s, err := priv.ECDH(p)
	if err != nil {
		return out, ErrInvalidKey
	}
	copy(out[:], s)
	clear(s)
	return out, nil
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}
