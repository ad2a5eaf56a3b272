package e2e

import (
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"fmt"
)

// The deterministic twin of Initiate lives here, in the tests, not in the
// package: fixing the ML-KEM-768 encapsulation randomness takes
// crypto/mlkem/mlkemtest, which Go provides for known-answer tests only,
// and which would otherwise be linked into every binary that imports e2e.

// InitiatorRandom is the randomness that Initiate draws.
type InitiatorRandom struct {
	Ephemeral [32]byte // EK_A, an X25519 private key
	KEM       [32]byte // ML-KEM-768 encapsulation randomness (FIPS 203 m)
}

// Format keeps the ephemeral key out of logs.
func (r InitiatorRandom) Format(f fmt.State, _ rune) { fmt.Fprint(f, "e2e.InitiatorRandom{}") }

// InitiateWith is the deterministic twin of Initiate, for the known-answer
// tests: it encapsulates with crypto/mlkem/mlkemtest.
func InitiateWith(self *Identity, b *Bundle, r *InitiatorRandom) (*Session, error) {
	return initiate(self, b, &r.Ephemeral, func(k *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
		return mlkemtest.Encapsulate768(k, r.KEM[:])
	})
}
