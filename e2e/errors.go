package e2e

import "errors"

// Sentinel errors, exported where callers branch on them. Every failure to
// authenticate a message is ErrDecrypt, whatever the cause, so that nothing
// about the keys leaks through the error.
var (
	// ErrDecrypt: the message did not authenticate under any key the
	// session holds. The session is unchanged.
	ErrDecrypt = errors.New("e2e: message authentication failed")
	// ErrReplay: the message authenticated, but its key was already used
	// (or evicted), or an initial message was already seen.
	ErrReplay = errors.New("e2e: replayed message")
	// ErrTooManySkipped: the message would make the session skip more than
	// MaxSkip keys in all (at a DH ratchet step, the end of the old chain
	// and the start of the new one together). Rejected before any key
	// derivation; the session is unchanged.
	ErrTooManySkipped = errors.New("e2e: too many skipped messages")
	// ErrMalformed: the bytes are not a well-formed envelope or state.
	ErrMalformed = errors.New("e2e: malformed input")
	// ErrTooLarge: an envelope or plaintext over its hard size limit.
	ErrTooLarge = errors.New("e2e: too large")
	// ErrWrongSession: a prekey message that belongs to another handshake
	// than this session's; the caller should run Respond instead.
	ErrWrongSession = errors.New("e2e: prekey message for another session")
	// ErrUnknownPrekey: a prekey message names a prekey that the caller
	// could not supply (unknown, expired, or an already used one-time key).
	ErrUnknownPrekey = errors.New("e2e: unknown or used prekey")
	// ErrInvalidIdentity: an identity DH key whose certificate does not
	// verify under the identity key.
	ErrInvalidIdentity = errors.New("e2e: invalid identity certificate")
	// ErrCannotSend: the session has no sending chain yet (a responder
	// session before its first message; Respond never returns one).
	ErrCannotSend = errors.New("e2e: session cannot send yet")
	// ErrInvalidKey: a public key that is rejected, such as a low-order
	// X25519 point or an invalid ML-KEM encapsulation key.
	ErrInvalidKey = errors.New("e2e: invalid public key")

	// Bundle verification errors, distinct so that the DHT validator and
	// the user can tell them apart.
	ErrBundleMalformed = errors.New("e2e: malformed bundle")
	ErrBundleTooLarge  = errors.New("e2e: bundle too large")
	ErrBundleSignature = errors.New("e2e: bad bundle signature")
	ErrBundleExpired   = errors.New("e2e: bundle expired")
	// ErrOneTimeCert: a one-time prekey certificate not signed by the
	// bundle's owner for the mailbox that handed it out.
	ErrOneTimeCert = errors.New("e2e: bad one-time prekey certificate")
)
