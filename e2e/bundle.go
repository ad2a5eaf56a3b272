package e2e

import (
	"crypto/ed25519"
	"crypto/mlkem"
	"encoding/binary"
	"fmt"
	"time"
)

const (
	// MaxBundleSize is the hard limit on an encoded bundle; the DHT
	// validator refuses larger records (docs/design.md §4).
	MaxBundleSize = 8 << 10
	// MaxBundleLifetime is how far ahead a bundle may expire, by the
	// verifier's clock less BundleClockSkew. Publishers sign for half of
	// it or less, so that a verifier whose clock is days behind still
	// accepts a fresh bundle.
	MaxBundleLifetime = 14 * 24 * time.Hour
	// BundleClockSkew is how far a verifier's clock may lag behind the
	// publisher's beyond MaxBundleLifetime.
	BundleClockSkew = time.Hour
	// MaxExtensions bounds a bundle's extension block.
	MaxExtensions = 16

	bundleVersion    = 1 // no extensions
	bundleVersionExt = 2 // the fields of version 1, then an extension block
	bundleDomain     = "p2pmsg/v1/bundle"

	bundleFlagOPK   = 1 << 0
	bundleFlagPQOPK = 1 << 1

	bundleFixed = 1 + 32 + 32 + 8 + 8 + 4 + KeySize + 4 + PQPublicSize + 1 // up to the flags
)

// An Extension is a typed, signed addition to a bundle (version 2): a
// later feature (mailboxes, say) publishes what its peers need in one,
// and a verifier that does not know its type keeps it and ignores it.
type Extension struct {
	Type  uint16
	Value []byte
}

// Bundle is a verified prekey bundle: what an initiator needs to start a
// session with its owner. Obtain one with VerifyBundle.
type Bundle struct {
	Identity       IdentityKey
	IdentityDH     DHPublicKey
	Seq            uint64
	Expires        time.Time
	SignedPrekeyID uint32
	SignedPrekey   DHPublicKey
	PQPrekeyID     uint32
	pqPrekey       *mlkem.EncapsulationKey768

	// The one-time prekeys are present only in a bundle fetched directly
	// from its owner, never in the DHT.
	HasOneTimePrekey  bool
	OneTimePrekeyID   uint32
	OneTimePrekey     DHPublicKey
	HasPQOneTime      bool
	PQOneTimePrekeyID uint32
	pqOneTime         *mlkem.EncapsulationKey768

	// Extensions, in the order signed; none in a version 1 bundle.
	Extensions []Extension
}

// BundleParams are the keys and metadata that SignBundle puts in a bundle.
type BundleParams struct {
	Seq          uint64
	Expires      time.Time
	SignedPrekey *SignedPrekey
	PQPrekey     *PQPrekey // last resort: OneTime false
	// Optional; only for bundles served directly by their owner.
	OneTimePrekey   *OneTimePrekey
	PQOneTimePrekey *PQPrekey // OneTime true
	// Extensions make the bundle version 2; without any it is version 1,
	// which every version of p2pmsg reads. Types must be distinct.
	Extensions []Extension
}

// SignBundle encodes and signs a bundle. Ed25519 signing is deterministic,
// so this has no random twin.
func (id *Identity) SignBundle(p BundleParams) ([]byte, error) {
	if p.SignedPrekey == nil || p.PQPrekey == nil {
		return nil, fmt.Errorf("bundle: signed and PQ prekeys are required: %w", ErrBundleMalformed)
	}
	if p.PQPrekey.OneTime || (p.PQOneTimePrekey != nil && !p.PQOneTimePrekey.OneTime) {
		return nil, fmt.Errorf("bundle: PQ prekey kinds swapped: %w", ErrBundleMalformed)
	}
	version := byte(bundleVersion)
	if len(p.Extensions) > 0 {
		if err := checkExtensions(p.Extensions); err != nil {
			return nil, err
		}
		version = bundleVersionExt
	}
	b := make([]byte, 0, bundleFixed+36+4+PQPublicSize+SignatureSize+len(bundleDomain))
	b = append(b, bundleDomain...)
	b = append(b, version)
	b = append(b, id.pub.Key[:]...)
	b = append(b, id.pub.DH[:]...)
	b = binary.BigEndian.AppendUint64(b, p.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Expires.Unix()))
	b = binary.BigEndian.AppendUint32(b, p.SignedPrekey.ID)
	spk := p.SignedPrekey.Public()
	b = append(b, spk[:]...)
	b = binary.BigEndian.AppendUint32(b, p.PQPrekey.ID)
	b = append(b, p.PQPrekey.Public()...)
	var flags byte
	if p.OneTimePrekey != nil {
		flags |= bundleFlagOPK
	}
	if p.PQOneTimePrekey != nil {
		flags |= bundleFlagPQOPK
	}
	b = append(b, flags)
	if p.OneTimePrekey != nil {
		b = binary.BigEndian.AppendUint32(b, p.OneTimePrekey.ID)
		opk := p.OneTimePrekey.Public()
		b = append(b, opk[:]...)
	}
	if p.PQOneTimePrekey != nil {
		b = binary.BigEndian.AppendUint32(b, p.PQOneTimePrekey.ID)
		b = append(b, p.PQOneTimePrekey.Public()...)
	}
	if version == bundleVersionExt {
		b = append(b, byte(len(p.Extensions)))
		for _, e := range p.Extensions {
			b = binary.BigEndian.AppendUint16(b, e.Type)
			b = binary.BigEndian.AppendUint16(b, uint16(len(e.Value)))
			b = append(b, e.Value...)
		}
	}
	if len(b)-len(bundleDomain)+SignatureSize > MaxBundleSize {
		return nil, fmt.Errorf("bundle: %d bytes, at most %d: %w", len(b)-len(bundleDomain)+SignatureSize, MaxBundleSize, ErrBundleTooLarge)
	}
	b = append(b, ed25519.Sign(id.sign, b)...)
	return b[len(bundleDomain):], nil
}

// VerifyBundle decodes a bundle and checks its signature and expiry at now.
// The errors are distinct: ErrBundleTooLarge, ErrBundleMalformed,
// ErrBundleSignature, ErrBundleExpired.
func VerifyBundle(data []byte, now time.Time) (*Bundle, error) {
	if len(data) > MaxBundleSize {
		return nil, ErrBundleTooLarge
	}
	b, signed, err := parseBundle(data)
	if err != nil {
		return nil, err
	}
	msg := make([]byte, 0, len(bundleDomain)+len(signed))
	msg = append(append(msg, bundleDomain...), signed...)
	if !ed25519.Verify(b.Identity[:], msg, data[len(signed):]) {
		return nil, ErrBundleSignature
	}
	if !now.Before(b.Expires) {
		return nil, ErrBundleExpired
	}
	if b.Expires.Sub(now) > MaxBundleLifetime+BundleClockSkew {
		return nil, fmt.Errorf("%w: expires more than %v ahead", ErrBundleMalformed, MaxBundleLifetime+BundleClockSkew)
	}
	return b, nil
}

// parseBundle decodes the layout and returns the signed part.
func parseBundle(data []byte) (*Bundle, []byte, error) {
	if len(data) < bundleFixed+SignatureSize || data[0] != bundleVersion && data[0] != bundleVersionExt {
		return nil, nil, ErrBundleMalformed
	}
	r := reader{b: data[1:]}
	b := &Bundle{}
	copy(b.Identity[:], r.next(32))
	copy(b.IdentityDH[:], r.next(32))
	b.Seq = r.u64()
	exp := r.u64()
	if exp > 1<<62 {
		return nil, nil, ErrBundleMalformed
	}
	b.Expires = time.Unix(int64(exp), 0)
	b.SignedPrekeyID = r.u32()
	copy(b.SignedPrekey[:], r.next(KeySize))
	b.PQPrekeyID = r.u32()
	var err error
	if b.pqPrekey, err = mlkem.NewEncapsulationKey768(r.next(PQPublicSize)); err != nil {
		return nil, nil, ErrBundleMalformed
	}
	flags := r.next(1)[0]
	if flags&^(bundleFlagOPK|bundleFlagPQOPK) != 0 {
		return nil, nil, ErrBundleMalformed
	}
	if flags&bundleFlagOPK != 0 {
		b.HasOneTimePrekey = true
		b.OneTimePrekeyID = r.u32()
		copy(b.OneTimePrekey[:], r.next(KeySize))
	}
	if flags&bundleFlagPQOPK != 0 {
		b.HasPQOneTime = true
		b.PQOneTimePrekeyID = r.u32()
		if k := r.next(PQPublicSize); k != nil {
			if b.pqOneTime, err = mlkem.NewEncapsulationKey768(k); err != nil {
				return nil, nil, ErrBundleMalformed
			}
		}
	}
	if data[0] == bundleVersionExt {
		count := r.next(1)
		if count == nil || count[0] == 0 {
			return nil, nil, ErrBundleMalformed // version 2 has extensions
		}
		for range int(count[0]) {
			e := Extension{Type: r.u16()}
			e.Value = append([]byte{}, r.next(int(r.u16()))...) // the caller's buffer may be reused
			if r.bad {
				return nil, nil, ErrBundleMalformed
			}
			b.Extensions = append(b.Extensions, e)
		}
		if checkExtensions(b.Extensions) != nil {
			return nil, nil, ErrBundleMalformed
		}
	}
	if r.bad || len(r.b) != SignatureSize {
		return nil, nil, ErrBundleMalformed
	}
	return b, data[:len(data)-SignatureSize], nil
}

// checkExtensions refuses what a bundle cannot carry: too many, types
// twice (a reader could not tell which counts), values over 64 KiB.
func checkExtensions(es []Extension) error {
	if len(es) > MaxExtensions {
		return fmt.Errorf("bundle: %d extensions, at most %d: %w", len(es), MaxExtensions, ErrBundleMalformed)
	}
	seen := make(map[uint16]bool, len(es))
	for _, e := range es {
		if seen[e.Type] || len(e.Value) > 0xffff {
			return fmt.Errorf("bundle: extension %d twice or too long: %w", e.Type, ErrBundleMalformed)
		}
		seen[e.Type] = true
	}
	return nil
}

// reader consumes a byte slice; any read past the end sets bad and yields
// zero values, so that parsers check once at the end.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) next(n int) []byte {
	if r.bad || len(r.b) < n {
		r.bad = true
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
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
