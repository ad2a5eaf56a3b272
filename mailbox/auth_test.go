package mailbox

import (
	"context"
	"testing"
	"time"
)

func TestTokens(t *testing.T) {
	key, other := [KeySize]byte{1}, [KeySize]byte{2}
	inbox := [16]byte{7}
	tok := Token(&key, inbox, 5)
	if !TokenValid(&key, inbox, 5, tok) {
		t.Fatal("a token made with the key does not check")
	}
	flipped := tok
	flipped[15] ^= 1
	for name, ok := range map[string]bool{
		"another index":  TokenValid(&key, inbox, 6, tok),
		"another inbox":  TokenValid(&key, [16]byte{8}, 5, tok),
		"another key":    TokenValid(&other, inbox, 5, tok),
		"a byte flipped": TokenValid(&key, inbox, 5, flipped),
	} {
		if ok {
			t.Errorf("%s: the token checks", name)
		}
	}
}

// Work found by Solve checks for its seal, inbox and hour (and the hours
// next to it), and for nothing else.
func TestWork(t *testing.T) {
	inbox, seal := [16]byte{3}, []byte("a sealed first message")
	now := time.Unix(1_800_000_000, 0)
	h := Hour(now)
	const bits = 12
	nonce, err := Solve(context.Background(), inbox, seal, h, bits)
	if err != nil {
		t.Fatal(err)
	}
	if !WorkValid(inbox, seal, h, nonce, bits, now) {
		t.Fatal("solved work does not check")
	}
	if leadingZeros(workPrefix(inbox, seal, h), nonce) < bits {
		t.Fatal("too little work")
	}
	for name, ok := range map[string]bool{
		"an hour later":     WorkValid(inbox, seal, h, nonce, bits, now.Add(time.Hour)),
		"an hour earlier":   WorkValid(inbox, seal, h, nonce, bits, now.Add(-time.Hour)),
		"two hours later":   !WorkValid(inbox, seal, h, nonce, bits, now.Add(2*time.Hour)),
		"two hours earlier": !WorkValid(inbox, seal, h, nonce, bits, now.Add(-2*time.Hour)),
		"another seal":      !WorkValid(inbox, []byte("another"), h, nonce, bits, now) || leadingZeros(workPrefix(inbox, []byte("another"), h), nonce) >= bits,
		"another inbox":     !WorkValid([16]byte{4}, seal, h, nonce, bits, now) || leadingZeros(workPrefix([16]byte{4}, seal, h), nonce) >= bits,
	} {
		if !ok {
			t.Errorf("%s: wrong verdict", name)
		}
	}
	// A bound on the search: an impossible amount of work stops with
	// the context.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := Solve(ctx, inbox, seal, h, 255); err == nil {
		t.Fatal("solved 255 bits")
	}
}
