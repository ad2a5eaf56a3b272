package e2e

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Known-answer tests. Each file in testdata holds fixed inputs and the
// outputs this implementation gave for them when the format was fixed;
// TestVectors recomputes every output. A change that alters any of them
// changes the wire protocol. Regenerate, deliberately, with
//
//	go test ./e2e -run TestVectors -update
var update = flag.Bool("update", false, "rewrite the known-answer files in testdata")

type vector map[string]string

// kat runs one named test per vector: gen fills the outputs from the
// inputs, which must then equal the stored ones.
func kat(t *testing.T, file string, inputs []vector, gen func(t *testing.T, in vector) vector) {
	path := filepath.Join("testdata", file)
	var want []vector
	if *update {
		for _, in := range inputs {
			out := vector{}
			for k, v := range in {
				out[k] = v
			}
			for k, v := range gen(t, in) {
				out[k] = v
			}
			want = append(want, out)
		}
		b, err := json.MarshalIndent(want, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate with -update)", err)
	}
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 {
		t.Fatalf("%s holds no vectors", path)
	}
	for _, v := range want {
		t.Run(v["name"], func(t *testing.T) {
			got := gen(t, v)
			if len(got) == 0 {
				t.Fatal("no outputs")
			}
			for k, g := range got {
				if v[k] != g {
					t.Errorf("%s:\n got %s\nwant %s", k, g, v[k])
				}
			}
		})
	}
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func key32(t *testing.T, s string) *[32]byte {
	t.Helper()
	b := unhex(t, s)
	if len(b) != 32 {
		t.Fatalf("want 32 bytes, got %d", len(b))
	}
	return (*[32]byte)(b)
}

// sb is seed32 as a slice.
func sb(label string) []byte { s := seed32(label); return s[:] }

func hx(b []byte) string { return hex.EncodeToString(b) }

func TestVectorsKDFRK(t *testing.T) {
	in := []vector{
		{"name": "zero", "rk": hx(make([]byte, 32)), "dh": hx(make([]byte, 32))},
		{"name": "labels", "rk": hx(sb("rk")[:]), "dh": hx(sb("dh")[:])},
		{"name": "ones", "rk": hx(bytes.Repeat([]byte{0xff}, 32)), "dh": hx(bytes.Repeat([]byte{0x01}, 32))},
	}
	kat(t, "kdf_rk.json", in, func(t *testing.T, v vector) vector {
		rk, ck, nhk := kdfRK(key32(t, v["rk"]), key32(t, v["dh"]))
		return vector{"root_key": hx(rk[:]), "chain_key": hx(ck[:]), "next_header_key": hx(nhk[:])}
	})
}

func TestVectorsKDFCK(t *testing.T) {
	in := []vector{
		{"name": "zero", "ck": hx(make([]byte, 32))},
		{"name": "label", "ck": hx(sb("ck")[:])},
	}
	kat(t, "kdf_ck.json", in, func(t *testing.T, v vector) vector {
		ck := key32(t, v["ck"])
		out := vector{}
		for _, step := range []string{"0", "1", "2"} {
			k := kdfCK(ck)
			out["message_key_"+step] = hx(k[:32])
			out["chain_key_"+step] = hx(k[32:])
			ck = (*[32]byte)(k[32:])
		}
		return out
	})
}

func TestVectorsMessage(t *testing.T) {
	in := []vector{
		{"name": "empty", "mk": hx(sb("mk0")[:]), "hk": hx(sb("hk0")[:]), "nonce": hx(make([]byte, 12)),
			"header_nonce": hx(make([]byte, 24)), "header": hx(make([]byte, headerSize)), "ad": "", "plaintext": ""},
		{"name": "text", "mk": hx(sb("mk1")[:]), "hk": hx(sb("hk1")[:]), "nonce": hx(sb("n")[:12]),
			"header_nonce": hx(sb("hn")[:24]), "header": hx(append(sb("dh")[:], 0, 0, 0, 7, 0, 0, 1, 2)),
			"ad": hx([]byte(adPrefix + "associated data")), "plaintext": hx([]byte("attack at dawn"))},
	}
	kat(t, "message.json", in, func(t *testing.T, v vector) vector {
		mk, hk := key32(t, v["mk"]), key32(t, v["hk"])
		nonce, ad, pt := unhex(t, v["nonce"]), unhex(t, v["ad"]), unhex(t, v["plaintext"])
		body := sealBody(nil, mk, nonce, pt, ad)
		if got, ok := openBody(nil, mk, nonce, body, ad); !ok || !bytes.Equal(got, pt) {
			t.Fatal("body does not open")
		}
		hn, h := unhex(t, v["header_nonce"]), unhex(t, v["header"])
		var hdrAD [32]byte
		headerAD(unhex(t, v["ad"]), body, &hdrAD)
		sealed := sealHeader(nil, hk, hn, h, hdrAD[:])
		if got, ok := openHeader(nil, hk, hn, sealed, hdrAD[:]); !ok || !bytes.Equal(got, h) {
			t.Fatal("header does not open")
		}
		aesKey := messageKey(mk)
		return vector{"aes_key": hx(aesKey[:]), "ciphertext": hx(body), "header_ad": hx(hdrAD[:]), "sealed_header": hx(sealed)}
	})
}

// TestVectorsPQXDH pins the whole handshake: identities, bundle, the first
// envelope and the keys both sides derive.
func TestVectorsPQXDH(t *testing.T) {
	in := []vector{
		{"name": "with one-time prekeys", "one_time": "true"},
		{"name": "last-resort prekeys only", "one_time": "false"},
	}
	for _, v := range in {
		v["alice_ed25519_seed"] = hx(sb("kat/alice/ik")[:])
		v["alice_x25519"] = hx(sb("kat/alice/ikdh")[:])
		v["bob_ed25519_seed"] = hx(sb("kat/bob/ik")[:])
		v["bob_x25519"] = hx(sb("kat/bob/ikdh")[:])
		v["bob_spk"] = hx(sb("kat/bob/spk")[:])
		s := seed64("kat/bob/pqspk")
		v["bob_pqspk_seed"] = hx(s[:])
		v["bob_opk"] = hx(sb("kat/bob/opk")[:])
		s = seed64("kat/bob/pqopk")
		v["bob_pqopk_seed"] = hx(s[:])
		v["ephemeral"] = hx(sb("kat/alice/ek")[:])
		v["kem_random"] = hx(sb("kat/alice/kem")[:])
		v["ratchet_key"] = hx(sb("kat/alice/ratchet")[:])
		v["message_id"] = hx(sb("kat/id")[:16])
		v["header_nonce"] = hx(sb("kat/hn")[:24])
		v["body_nonce"] = hx(sb("kat/bn")[:12])
		v["plaintext"] = hx([]byte("hello, bob"))
	}
	kat(t, "pqxdh.json", in, func(t *testing.T, v vector) vector {
		alice := NewIdentityFromSeeds(*key32(t, v["alice_ed25519_seed"]), *key32(t, v["alice_x25519"]))
		bob := NewIdentityFromSeeds(*key32(t, v["bob_ed25519_seed"]), *key32(t, v["bob_x25519"]))
		p := BundleParams{
			Seq:          7,
			Expires:      time.Unix(1800000000, 0),
			SignedPrekey: NewSignedPrekeyFromKey(1, *key32(t, v["bob_spk"])),
			PQPrekey:     NewPQPrekeyFromSeed(2, false, [64]byte(unhex(t, v["bob_pqspk_seed"]))),
		}
		if v["one_time"] == "true" {
			p.OneTimePrekey = NewOneTimePrekeyFromKey(3, *key32(t, v["bob_opk"]))
			p.PQOneTimePrekey = NewPQPrekeyFromSeed(4, true, [64]byte(unhex(t, v["bob_pqopk_seed"])))
		}
		bundle, err := bob.SignBundle(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := VerifyBundle(bundle, time.Unix(1800000000-3600, 0))
		if err != nil {
			t.Fatal(err)
		}
		r := InitiatorRandom{Ephemeral: *key32(t, v["ephemeral"]), KEM: *key32(t, v["kem_random"])}
		s, err := InitiateWith(alice, b, &r)
		if err != nil {
			t.Fatal(err)
		}
		sk, hka, nhkb := s.rk, s.hks, s.nhkr
		er := EncryptRandom{
			ID:          MessageID(unhex(t, v["message_id"])),
			HeaderNonce: [24]byte(unhex(t, v["header_nonce"])),
			BodyNonce:   [12]byte(unhex(t, v["body_nonce"])),
			RatchetKey:  *key32(t, v["ratchet_key"]),
		}
		_, env, err := s.EncryptWith(unhex(t, v["plaintext"]), &er)
		if err != nil {
			t.Fatal(err)
		}
		// The responder must reach the same keys and plaintext.
		m, err := ParsePrekeyMessage(env)
		if err != nil {
			t.Fatal(err)
		}
		keys := ResponderKeys{SignedPrekey: p.SignedPrekey, OneTimePrekey: p.OneTimePrekey, PQPrekey: p.PQPrekey}
		if p.PQOneTimePrekey != nil {
			keys.PQPrekey = p.PQOneTimePrekey
		}
		bs, pt, err := Respond(bob, m, keys, func(ReplayKey) bool { return false }, time.Unix(1800000000-3600, 0))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(pt, unhex(t, v["plaintext"])) {
			t.Fatalf("responder decrypted %q", pt)
		}
		if bs.hkr != hka || bs.nhks != nhkb {
			t.Fatal("responder derived other header keys")
		}
		return vector{
			"bundle":          hx(bundle),
			"root_key":        hx(sk[:]),
			"header_key_a":    hx(hka[:]),
			"next_header_b":   hx(nhkb[:]),
			"first_envelope":  hx(env),
			"safety_number":   SafetyNumber(alice.Public().Key, bob.Public().Key),
			"alice_identity":  hx(alice.pub.Key[:]),
			"alice_dh_public": hx(alice.pub.DH[:]),
		}
	})
}

// TestVectorsSeal pins the sealed envelope: key derivation, layout and
// padding.
func TestVectorsSeal(t *testing.T) {
	in := []vector{
		{"name": "short", "envelope": hx([]byte("an envelope"))},
		{"name": "one step up", "envelope": hx(bytes.Repeat([]byte{0x5a}, 1<<10))},
	}
	for _, v := range in {
		v["bob_ed25519_seed"] = hx(sb("kat/bob/ik"))
		v["bob_x25519"] = hx(sb("kat/bob/ikdh"))
		v["alice_ed25519_seed"] = hx(sb("kat/alice/ik"))
		v["inbox"] = hx(sb("kat/inbox")[:InboxIDSize])
		v["ephemeral"] = hx(sb("kat/seal/ek"))
		v["nonce"] = hx(sb("kat/seal/nonce")[:24])
	}
	kat(t, "seal.json", in, func(t *testing.T, v vector) vector {
		bob := NewIdentityFromSeeds(*key32(t, v["bob_ed25519_seed"]), *key32(t, v["bob_x25519"]))
		alice := NewIdentityFromSeeds(*key32(t, v["alice_ed25519_seed"]), *key32(t, v["bob_x25519"]))
		inbox := [InboxIDSize]byte(unhex(t, v["inbox"]))
		r := SealRandom{Ephemeral: *key32(t, v["ephemeral"]), Nonce: [24]byte(unhex(t, v["nonce"]))}
		sealed, err := SealWith(bob.Public().DH, inbox, alice.Public().Key, unhex(t, v["envelope"]), &r)
		if err != nil {
			t.Fatal(err)
		}
		from, env, err := bob.OpenSealed(inbox, sealed)
		if err != nil || from != alice.Public().Key || !bytes.Equal(env, unhex(t, v["envelope"])) {
			t.Fatalf("the vector does not open to its input: %v", err)
		}
		return vector{"sealed": hx(sealed)}
	})
}

// TestVectorsSealOnce pins SealOnce's derivation of the seal's
// randomness from the sender's secret and the envelope.
func TestVectorsSealOnce(t *testing.T) {
	in := []vector{{"name": "short", "envelope": hx([]byte("an envelope"))}}
	for _, v := range in {
		v["bob_ed25519_seed"] = hx(sb("kat/bob/ik"))
		v["bob_x25519"] = hx(sb("kat/bob/ikdh"))
		v["alice_ed25519_seed"] = hx(sb("kat/alice/ik"))
		v["alice_x25519"] = hx(sb("kat/alice/ikdh"))
		v["inbox"] = hx(sb("kat/inbox")[:InboxIDSize])
	}
	kat(t, "seal_once.json", in, func(t *testing.T, v vector) vector {
		bob := NewIdentityFromSeeds(*key32(t, v["bob_ed25519_seed"]), *key32(t, v["bob_x25519"]))
		alice := NewIdentityFromSeeds(*key32(t, v["alice_ed25519_seed"]), *key32(t, v["alice_x25519"]))
		inbox := [InboxIDSize]byte(unhex(t, v["inbox"]))
		sealed, err := alice.SealOnce(bob.Public().DH, inbox, unhex(t, v["envelope"]))
		if err != nil {
			t.Fatal(err)
		}
		from, env, err := bob.OpenSealed(inbox, sealed)
		if err != nil || from != alice.Public().Key || !bytes.Equal(env, unhex(t, v["envelope"])) {
			t.Fatalf("the vector does not open to its input: %v", err)
		}
		return vector{"sealed": hx(sealed)}
	})
}

// TestVectorsOneTimeCert pins the one-time prekey certificates of both
// kinds.
func TestVectorsOneTimeCert(t *testing.T) {
	in := []vector{{"name": "X25519", "kind": "1"}, {"name": "ML-KEM-768", "kind": "2"}}
	for _, v := range in {
		v["bob_ed25519_seed"] = hx(sb("kat/bob/ik"))
		v["bob_x25519"] = hx(sb("kat/bob/ikdh"))
		v["mailbox"] = hx([]byte("kat mailbox peer id"))
		v["key_id"] = "16777217"
		v["x25519"] = hx(sb("kat/otk/x"))
		s := seed64("kat/otk/pq")
		v["mlkem_seed"] = hx(s[:])
	}
	kat(t, "otkcert.json", in, func(t *testing.T, v vector) vector {
		bob := NewIdentityFromSeeds(*key32(t, v["bob_ed25519_seed"]), *key32(t, v["bob_x25519"]))
		mailbox := unhex(t, v["mailbox"])
		var cert []byte
		var err error
		if v["kind"] == "1" {
			cert, err = bob.SignOneTimeCert(mailbox, NewOneTimePrekeyFromKey(16777217, *key32(t, v["x25519"])))
		} else {
			cert, err = bob.SignPQOneTimeCert(mailbox, NewPQPrekeyFromSeed(16777217, true, [64]byte(unhex(t, v["mlkem_seed"]))))
		}
		if err != nil {
			t.Fatal(err)
		}
		c, err := VerifyOneTimeCert(bob.Public().Key, mailbox, cert)
		if err != nil || c.ID != 16777217 || fmt.Sprint(int(c.Kind)) != v["kind"] {
			t.Fatalf("the vector does not verify to its input: %+v, %v", c, err)
		}
		return vector{"cert": hx(cert)}
	})
}
