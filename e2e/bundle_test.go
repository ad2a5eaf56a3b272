package e2e

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"
)

// Version 2 bundles carry a signed extension block: a verifier keeps
// the extensions whatever their types, and refuses a damaged block even
// when it is signed; without extensions a bundle stays version 1, which
// older nodes read.
func TestBundleVersion2Extensions(t *testing.T) {
	p := newParty("bob")
	ext := []Extension{{Type: 0x7777, Value: []byte("a mailbox of the future")}, {Type: 1, Value: nil}}
	v2, err := p.id.SignBundle(BundleParams{Seq: 1, Expires: t0.Add(time.Hour), SignedPrekey: p.spk, PQPrekey: p.pq, Extensions: ext})
	if err != nil {
		t.Fatal(err)
	}
	if v2[0] != bundleVersionExt {
		t.Fatalf("a bundle with extensions has version %d", v2[0])
	}
	b, err := VerifyBundle(v2, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Extensions) != 2 || b.Extensions[0].Type != 0x7777 || string(b.Extensions[0].Value) != "a mailbox of the future" ||
		b.Extensions[1].Type != 1 || len(b.Extensions[1].Value) != 0 {
		t.Fatalf("extensions read back: %+v", b.Extensions)
	}
	v1, _ := p.id.SignBundle(BundleParams{Seq: 1, Expires: t0.Add(time.Hour), SignedPrekey: p.spk, PQPrekey: p.pq})
	if v1[0] != bundleVersion {
		t.Fatalf("a bundle without extensions has version %d", v1[0])
	}

	if _, err := p.id.SignBundle(BundleParams{Seq: 1, Expires: t0.Add(time.Hour), SignedPrekey: p.spk, PQPrekey: p.pq,
		Extensions: []Extension{{Type: 5}, {Type: 5}}}); !errors.Is(err, ErrBundleMalformed) {
		t.Fatalf("a type twice was signed: %v", err)
	}
	// Damaged blocks, signed by the owner all the same: refused.
	body := v2[:len(v2)-SignatureSize]
	block := len(v1) - SignatureSize // where the extension block starts
	resign := func(body []byte) []byte {
		msg := append([]byte(bundleDomain), body...)
		return append(bytes.Clone(body), ed25519.Sign(p.id.sign, msg)...)
	}
	damaged := map[string][]byte{
		"count past the block":  resign(append(append(bytes.Clone(body[:block]), 3), body[block+1:]...)),
		"no extensions":         resign(append(bytes.Clone(body[:block]), 0)),
		"length past the block": resign(append(append(bytes.Clone(body[:block+3]), 0xff, 0xff), body[block+5:]...)),
		"bytes after the block": resign(append(bytes.Clone(body), 0)),
		"a type twice":          resign(append(bytes.Clone(body[:block]), 2, 0, 9, 0, 0, 0, 9, 0, 0)),
		"a block cut short":     resign(bytes.Clone(body[:len(body)-1])),
		"version 2 without one": resign(append([]byte{bundleVersionExt}, v1[1:len(v1)-SignatureSize]...)),
		"too many extensions":   resign(append(append(bytes.Clone(body[:block]), MaxExtensions+1), bytes.Repeat([]byte{0, 0, 0, 0}, MaxExtensions+1)...)),
	}
	for name, d := range damaged {
		if _, err := VerifyBundle(d, t0); !errors.Is(err, ErrBundleMalformed) {
			t.Errorf("%s: %v, want ErrBundleMalformed", name, err)
		}
	}
}

// A verifier whose clock lags behind the publisher's accepts a bundle
// that expires up to MaxBundleLifetime + BundleClockSkew ahead of it.
func TestBundleClockSkew(t *testing.T) {
	p := newParty("bob")
	b, _ := p.id.SignBundle(BundleParams{Seq: 1, Expires: t0.Add(MaxBundleLifetime), SignedPrekey: p.spk, PQPrekey: p.pq})
	if _, err := VerifyBundle(b, t0.Add(-BundleClockSkew+time.Second)); err != nil {
		t.Fatalf("a verifier just within the skew refused: %v", err)
	}
	if _, err := VerifyBundle(b, t0.Add(-BundleClockSkew-time.Second)); !errors.Is(err, ErrBundleMalformed) {
		t.Fatalf("a verifier beyond the skew accepted: %v", err)
	}
}
