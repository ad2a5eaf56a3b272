package e2e

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"strings"
)

// Safety numbers follow Signal's NumericFingerprintGenerator (version 0):
// for each party, h = 0x0000 || IK || id, then 5200 times
// h = SHA-512(h || IK); the first 30 bytes of h, in six 5-byte big-endian
// chunks, each taken mod 100000, give 30 digits. Signal's keys carry a
// type byte (0x05); ours are the raw 32-byte Ed25519 keys. Our id is the binary
// libp2p peer ID of IK (the identity multihash 0x00 0x24 of the protobuf
// key 0x08 0x01 0x12 0x20 || IK), what the user knows the peer by. The
// number is both halves, the smaller first, so both sides show the same 60
// digits.
const safetyIterations = 5200

// SafetyNumber returns the 60-digit safety number of two identities.
func SafetyNumber(a, b IdentityKey) string {
	fa, fb := fingerprint(a), fingerprint(b)
	if bytes.Compare([]byte(fa), []byte(fb)) > 0 {
		fa, fb = fb, fa
	}
	return fa + fb
}

// FormatSafetyNumber splits a safety number into the 12 groups of 5 digits
// that people compare.
func FormatSafetyNumber(n string) string {
	var sb strings.Builder
	for i := 0; i < len(n); i += 5 {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(n[i:min(i+5, len(n))])
	}
	return sb.String()
}

// PeerIDBytes returns the binary libp2p peer ID of an Ed25519 identity key.
func PeerIDBytes(k IdentityKey) []byte {
	return append([]byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}, k[:]...)
}

func fingerprint(k IdentityKey) string {
	h := sha512.New()
	sum := append([]byte{0, 0}, k[:]...)
	sum = append(sum, PeerIDBytes(k)...)
	for range safetyIterations {
		h.Reset()
		h.Write(sum)
		h.Write(k[:])
		sum = h.Sum(sum[:0])
	}
	var out [30]byte
	for i := range 6 {
		var c [8]byte
		copy(c[3:], sum[i*5:i*5+5])
		v := binary.BigEndian.Uint64(c[:]) % 100000
		d := byte('0')
		for j := 4; j >= 0; j-- {
			out[i*5+j] = d + byte(v%10)
			v /= 10
		}
	}
	return string(out[:])
}
