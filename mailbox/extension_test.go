package mailbox

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pmsg/p2pmsg/e2e"
)

func testPeer(t testing.TB) peer.ID {
	_, pub, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func sampleEntries(t testing.TB) []Entry {
	return []Entry{
		{Peer: testPeer(t), Inbox: [16]byte{1}, Strangers: true, PowBits: 22,
			Addrs: []ma.Multiaddr{ma.StringCast("/ip4/203.0.113.7/tcp/4001"), ma.StringCast("/ip4/203.0.113.7/udp/4001/quic-v1")}},
		{Peer: testPeer(t), Inbox: [16]byte{2}},
	}
}

// The mailboxes an owner names come back from its signed bundle, as they
// went in.
func TestExtensionInBundle(t *testing.T) {
	entries := sampleEntries(t)
	ext, err := EncodeExtension(entries)
	if err != nil {
		t.Fatal(err)
	}
	id := e2e.NewIdentity()
	now := time.Now()
	signed, err := id.SignBundle(e2e.BundleParams{Seq: 1, Expires: now.Add(time.Hour),
		SignedPrekey: e2e.NewSignedPrekey(1), PQPrekey: e2e.NewPQPrekey(2, false), Extensions: []e2e.Extension{ext}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := e2e.VerifyBundle(signed, now)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Mailboxes(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, entries) {
		t.Fatalf("mailboxes %+v, want %+v", got, entries)
	}
	plain, err := id.SignBundle(e2e.BundleParams{Seq: 1, Expires: now.Add(time.Hour),
		SignedPrekey: e2e.NewSignedPrekey(1), PQPrekey: e2e.NewPQPrekey(2, false)})
	if err != nil {
		t.Fatal(err)
	}
	if b, err = e2e.VerifyBundle(plain, now); err != nil {
		t.Fatal(err)
	}
	if got, err := Mailboxes(b); got != nil || err != nil {
		t.Fatalf("a bundle without mailboxes: %v, %v", got, err)
	}
}

// What cannot be encoded is refused with a reason, and damaged values
// are ErrMalformed.
func TestExtensionRefused(t *testing.T) {
	e := sampleEntries(t)
	for name, entries := range map[string][]Entry{
		"none":       nil,
		"four":       {e[0], e[1], {Peer: testPeer(t)}, {Peer: testPeer(t)}},
		"twice":      {e[0], e[0]},
		"no peer":    {{}},
		"nine addrs": {{Peer: testPeer(t), Addrs: make([]ma.Multiaddr, MaxAddrs+1)}},
	} {
		if _, err := EncodeExtension(entries); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
	ext, err := EncodeExtension(e)
	if err != nil {
		t.Fatal(err)
	}
	v := ext.Value
	twice := append([]byte{2}, bytes.Repeat(v[1:1+1+len(e[0].Peer)+16+3+2+len(e[0].Addrs[0].Bytes())+2+len(e[0].Addrs[1].Bytes())], 2)...)
	badFlags := bytes.Clone(v)
	badFlags[1+1+len(e[0].Peer)+16] = 2
	for name, b := range map[string][]byte{
		"empty":          nil,
		"zero count":     {0},
		"count past end": {3},
		"byte more":      append(bytes.Clone(v), 0),
		"byte less":      v[:len(v)-1],
		"unknown flag":   badFlags,
		"twice":          twice,
		"bad peer ID":    {1, 2, 0xff, 0xff},
	} {
		if _, err := DecodeExtension(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzExtension: DecodeExtension never panics, and what it accepts
// encodes back to the same bytes.
func FuzzExtension(f *testing.F) {
	ext, err := EncodeExtension(sampleEntries(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ext.Value)
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := DecodeExtension(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		again, err := EncodeExtension(entries)
		if err != nil || !bytes.Equal(again.Value, b) {
			t.Fatalf("decoded %x, encodes to %x (%v)", b, again.Value, err)
		}
	})
}
