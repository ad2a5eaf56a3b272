// Package e2e is the cryptographic core of p2pmsg: identities, signed
// prekey bundles, the handshake (Signal's [PQXDH]: [X3DH] made hybrid with
// ML-KEM-768, [FIPS 203]) and the [Double Ratchet] with header encryption.
// This comment is the specification of what the package puts on the wire;
// docs/design.md places it in the whole system.
//
// It is pure: standard library and golang.org/x/crypto only, no I/O, no
// goroutines, no clock (times are parameters). It works on values that the
// caller persists: [Session.MarshalBinary] after every [Session.Encrypt]
// and every successful [Session.Decrypt], in the same transaction as the
// message. A Session is not safe for concurrent use.
//
// # Keys
//
// An [Identity] is an Ed25519 key (the libp2p peer key; the peer ID is the
// address) and an X25519 identity DH key that the Ed25519 key certifies by
// signing "p2pmsg/v1/ikdh" || IKdh. Go has no XEdDSA, with which [X3DH]
// signs using the X25519 identity key itself; a certified second key is
// the simple, standard alternative. Prekeys: a [SignedPrekey] (X25519,
// rotated weekly), a last-resort [PQPrekey] (ML-KEM-768), and one-time
// X25519 and ML-KEM-768 prekeys, handed out once by their owner. X25519
// keys go through crypto/ecdh, ML-KEM-768 keys through crypto/mlkem.
//
// Every function that draws randomness has a deterministic twin that takes
// it as input (NewIdentity / NewIdentityFromSeeds, NewSignedPrekey /
// NewSignedPrekeyFromKey, NewOneTimePrekey / NewOneTimePrekeyFromKey,
// NewPQPrekey / NewPQPrekeyFromSeed, Encrypt / EncryptWith), so that
// known-answer tests pin every output. The twin of [Initiate] must fix the
// ML-KEM encapsulation randomness, which only crypto/mlkem/mlkemtest can
// do, and Go provides that package for known-answer tests only: that twin
// is part of the package's tests, never of a binary.
//
// # Handshake
//
// Alice fetches Bob's bundle and checks it with [VerifyBundle]; [Initiate]
// computes, with EK_A a fresh X25519 key,
//
//	DH1 = DH(IKdh_A, SPK_B)  DH2 = DH(EK_A, IKdh_B)  DH3 = DH(EK_A, SPK_B)  [DH4 = DH(EK_A, OPK_B)]
//	(CT, SS) = ML-KEM-768.Encaps(PQOPK_B, or PQSPK_B without a one-time key)
//	SK || HKa || NHKb = HKDF-SHA256(salt = 32 zero bytes, F || DH1 || DH2 || DH3 [|| DH4] || SS, "p2pmsg/v1/pqxdh", 96)
//	AD = "p2pmsg/v1" || IK_A || IKdh_A || IK_B || IKdh_B
//
// with F 32 bytes of 0xFF. Alice's first ratchet step uses SPK_B as Bob's
// ratchet key, so SK itself never encrypts. Until Bob answers, every
// envelope Alice sends is a prekey message, so whichever arrives first can
// start Bob's session. Bob routes a prekey message to the session with the
// same base key (EK_A), or parses it with [ParsePrekeyMessage], looks up the
// private prekeys it names and calls [Respond], which checks, cheapest
// first: the prekeys were found (a used one-time key must not be), the
// replay key (SPK id, EK_A) was not seen, Alice's certificate, then the
// DHs, decapsulation and the first message. The caller then deletes the
// one-time keys and records the replay key until that SPK expires.
//
// # Ratchet
//
// The [Double Ratchet] of the Signal specification, in its variant with
// header encryption:
//
//	KDF_RK(rk, dh) = HKDF-SHA256(salt = rk, dh, "p2pmsg/v1/root", 96) -> rk, ck, nhk
//	KDF_CK(ck):  mk = HMAC-SHA256(ck, 0x01), next ck = HMAC-SHA256(ck, 0x02)
//	body key     = HKDF-SHA256(salt = none, mk, "p2pmsg/v1/message", 32), AES-256-GCM
//	header       = DHs (32) || PN (4) || N (4), XChaCha20-Poly1305 under HKs
//	body AD      = AD || version || kind || id || prekey block (if any)
//	header AD    = SHA-256(version || kind || id || prekey block || body nonce || body)
//
// Every envelope byte is authenticated, and the header AD binds the header
// to its body: a header captured from an undelivered envelope and put on a
// forged body fails the header check, before the receiver derives a single
// chain key for it (the body is sealed first). Nonces are random and carried
// in the envelope: a session rolled back by a crash never reuses a
// key/nonce pair. The header key is reused along a chain, hence
// XChaCha20-Poly1305 ([XChaCha20]) and its 192-bit random nonce.
//
// The sending half of a DH ratchet step (a fresh ratchet key, KDF_RK) runs
// at the next Encrypt rather than on receipt; the key schedule is the
// specification's, Decrypt draws no randomness, and a private ratchet key
// is deleted as soon as its last use is past.
//
// Decryption tries the current header key, then the next one, then those of
// the chains that still hold skipped keys. One message makes the receiver
// skip at most [MaxSkip] keys in all: at a DH ratchet step the rest of the
// old chain (up to PN) and the start of the new one (up to N) count
// together, where the Signal specification checks each chain against
// MAX_SKIP alone and so lets one message cost twice as much
// (docs/e2e-decisions.md, 11). The check is made before any key
// derivation ([ErrTooManySkipped]); at most [MaxSkippedKeys] are stored, in at most [MaxSkippedChains] chains
// (each chain costs a header trial per forgery, so this bounds the cost of
// rejecting one), oldest evicted first, each for [SkippedKeyMaxAge].
// Decryption computes everything first and commits only on success:
// whatever fails leaves the session exactly as it was.
//
// # Wire format
//
// An envelope, at most [MaxEnvelopeSize] bytes; integers big endian:
//
//	offset  size  field
//	0       1     version = 1
//	1       1     kind: 1 message, 2 prekey message
//	2       16    message id (random; the same in a retransmission)
//	              prekey messages only, 1261 bytes:
//	18      32      IK_A (Ed25519)
//	50      32      IKdh_A (X25519)
//	82      64      certificate of IKdh_A by IK_A
//	146     32      EK_A
//	178     4       signed prekey id
//	182     1       flags: bit 0 one-time X25519 prekey used, bit 1 one-time ML-KEM prekey used
//	183     4       one-time X25519 prekey id (0 when unused)
//	187     4       ML-KEM prekey id
//	191     1088    ML-KEM-768 ciphertext
//	then, at offset p = 18 (message) or 1279 (prekey message):
//	p       24    header nonce
//	p+24    56    sealed header (40 + 16)
//	p+80    12    body nonce
//	p+92    n+16  AES-256-GCM ciphertext of the n-byte plaintext
//
// A bundle, at most [MaxBundleSize] bytes, signed by IK over
// "p2pmsg/v1/bundle" || every byte before the signature:
//
//	0     1     version = 1, or 2 with an extension block
//	1     32    IK (Ed25519; the peer ID's key)
//	33    32    IKdh
//	65    8     seq (a newer bundle has a higher one)
//	73    8     expires (unix seconds; at most 14 days and 1 hour ahead)
//	81    4+32  signed prekey id, key
//	117   4+1184  ML-KEM-768 last-resort prekey id, key
//	1305  1     flags: bit 0 a one-time X25519 prekey follows, bit 1 a one-time ML-KEM prekey follows
//	      4+32    one-time X25519 prekey id, key (only in a bundle fetched from its owner)
//	      4+1184  one-time ML-KEM prekey id, key (likewise)
//	      1     version 2 only: the number of extensions, 1 to 16, then each:
//	      2+2+n   type, length n, value (types distinct)
//	      64    Ed25519 signature
//
// A verifier accepts a bundle that expires up to [MaxBundleLifetime] plus
// [BundleClockSkew] ahead of its own clock; publishers sign for much less
// (package node: 7 days), so that a verifier whose clock lags days behind
// still accepts a fresh one.
//
// The session state encoding is documented in state.go.
//
// # Sealed envelopes
//
// An envelope left at a recipient's mailbox must not tell the mailbox who
// wrote it nor how long it is, and the mailbox's owner must learn who
// did. [Seal] wraps it for the recipient's identity DH key and the
// mailbox inbox it goes to; [Identity.OpenSealed] unwraps it:
//
//	sealed = version = 1 || EK (32, fresh X25519) || nonce (24) || XChaCha20-Poly1305(k, inner, AD)
//	k      = HKDF-SHA256(salt = inbox id (16), DH(EK, IKdh_B) || EK || IKdh_B, "p2pmsg/v1/mbox-seal", 32)
//	AD     = "p2pmsg/v1/mbox" || inbox id
//	inner  = IK_A (32) || n (4) || the n-byte envelope || zeros
//
// The zeros pad inner to 1 KiB, 4 KiB, 16 KiB, then the next multiple of
// 16 KiB, and at most to 36 bytes past [MaxEnvelopeSize]; the opener
// checks that the padding is the one [Seal] makes and is zero. The seal
// hides; it does not authenticate the sender: IK_A is a claim, which
// holds only when the envelope decrypts under the session with IK_A's
// owner, or is a prekey message naming IK_A. The inbox id in the key and
// the AD means a deposit moved to another inbox does not open. X25519
// only: someone who records deposits today and breaks X25519 later
// learns who wrote to whom, not what (the envelope inside is PQXDH's).
//
// [Identity.SealOnce] draws EK and the nonce from the sender's identity
// secret instead of the random source:
//
//	EK || nonce = HKDF-SHA256(salt = inbox id, IKdh_A's private key, "p2pmsg/v1/mbox-seal-once" || IKdh_B || SHA-256(envelope), 56)
//
// so that a deposit sent again after its answer was lost is the same
// seal, which the mailbox stores once. Only the sender can derive them,
// and any other envelope, inbox or recipient gives unrelated ones.
//
// # One-time prekeys through a mailbox
//
// A bundle in the DHT has no one-time prekeys (anyone could take them).
// While its owner is offline, a mailbox hands them out instead, each
// signed by the owner for that mailbox:
//
//	certificate = kind (1: X25519, 2: ML-KEM-768) || id (4) || public key (32 or 1184) || signature (64)
//	signed      = "p2pmsg/v1/otk" || len(mailbox id) (1) || mailbox id || kind || id || public key
//
// The mailbox id is the mailbox's libp2p peer ID: a certificate shows
// which mailbox it was given to. [Bundle.WithOneTimeCerts] checks
// certificates against the bundle's owner and the mailbox that handed
// them out and returns a bundle carrying them, for [Initiate]; the owner
// answers with [Respond] as for any one-time prekey, and refuses a key
// used before ([ErrUnknownPrekey]), so a mailbox that hands one key to two
// senders breaks the second handshake, never the first.
//
// # Safety numbers
//
// [SafetyNumber] is Signal's numeric fingerprint (version 0 of its
// NumericFingerprintGenerator) computed over our keys. For each of the two
// identities, with IK its 32-byte Ed25519 public key and id its binary
// libp2p peer ID ([PeerIDBytes]: the 38 bytes 0x00 0x24 0x08 0x01 0x12 0x20
// || IK, an identity multihash of the protobuf-encoded public key):
//
//	h = 0x00 0x00 || IK || id            the version, 0, as two bytes
//	5200 times: h = SHA-512(h || IK)
//	for i = 0 .. 5: c_i = the 5 bytes h[5i : 5i+5] as a big-endian integer, mod 100000
//	half = c_0 || ... || c_5, each written as 5 decimal digits with leading zeros
//
// Each half is 30 digits, from the first 30 of the 64 bytes of h. The
// safety number is the two halves concatenated, the one that sorts first
// as a string (byte order; for digit strings of one length, numeric
// order) first, so both users see the same 60 digits. [FormatSafetyNumber]
// writes it as 12 groups of 5 digits separated by single spaces. Signal's
// keys carry a type byte (0x05) and its identifier is its own; ours are
// the raw Ed25519 key and the peer ID, so the numbers are not Signal's.
// The known-answer tests pin one.
//
// # Compatibility
//
// Envelopes, bundles, session states and identities start with a version
// byte; this version of the package writes and reads version 1 of each,
// and bundles of version 2 as well. It refuses any other version, and any flag bit or envelope kind it does not
// know, with an error and before any cryptography: it never guesses at a
// newer format. What a node (package node) does with what it refuses:
//
//   - Envelope, version 1 (kinds 1 and 2): another version or kind is
//     [ErrMalformed]. The node stores nothing, answers the frame "rejected:
//     malformed", and the sender marks the message failed.
//   - Bundle, versions 1 and 2: version 2 adds a signed block of typed
//     extensions; a verifier keeps every extension in [Bundle.Extensions],
//     acts on the types it knows and ignores the others, so that a later
//     version can publish what it needs (a mailbox, say) without older
//     nodes refusing its bundles. [Identity.SignBundle] writes version 1
//     when there are no extensions. A damaged block (a count or a length
//     past its end, a type twice, bytes after it) is [ErrBundleMalformed],
//     as is another version or an unknown flag. The DHT validator refuses such a record, a
//     bundle fetched from its owner is refused, and a first message to
//     that peer cannot start a session: Send fails, nothing is queued.
//   - Session state, version 1 ([Session.UnmarshalBinary]): another
//     version or an unknown flag is [ErrMalformed]. The node keeps a
//     peer's sessions in a record of its own, also of version 1; a record
//     it cannot read is logged and replaced by an empty one, so the
//     sessions with that peer are lost and both sides start a new session
//     from a fresh bundle (the peer's next envelope is answered "rejected:
//     no session", which makes it drop its sessions too).
//   - Identity, version 1 ([Identity.UnmarshalBinary]): another version
//     is [ErrMalformed], and the node does not start. Prekeys are stored
//     without a version byte, in fixed sizes.
//   - Content: the plaintext inside an envelope is the node's
//     (node/wire/wire.go): a version byte, 1, the sender's clock as 8 bytes big
//     endian (unix milliseconds) and the UTF-8 text. Content of another
//     version, or shorter than 9 bytes, still comes in an authenticated
//     envelope: the node stores the message with a placeholder text saying
//     that this version cannot show it, acknowledges it "stored", and the
//     sender sees it delivered. The original bytes are not kept, so a later
//     update does not bring the message back.
//
// The protocols are /p2pmsg/kad/1.0.0, /p2pmsg/msg/1.0.0 and
// /p2pmsg/bundle/1.0.0; a node speaks those versions only.
//
// # What the caller must do
//
//   - Save the session after every Encrypt and successful Decrypt, in the
//     transaction that stores the message; if that transaction fails, load
//     the session again rather than keep the in-memory one, which is ahead.
//     The saved state holds every secret of the session: store it sealed
//     (package db seals it with XChaCha20-Poly1305 under a key derived from
//     the user's passphrase with Argon2id, [RFC 9106]).
//   - Check that a bundle's Identity is the peer it was fetched for, and
//     refuse one-time prekeys in bundles from the DHT (they belong only in
//     bundles fetched from their owner).
//   - Delete used one-time prekeys and record replay keys atomically with the
//     new session, for as long as the signed prekey's private half is kept
//     (see Respond and ReplayKey).
//   - Call Prune on idle sessions now and then.
//
// # Security
//
//   - Forward secrecy and post-compromise security as the Double Ratchet
//     gives them; message keys are wiped once used, private ratchet keys
//     once their last DH is done. Go's garbage collector may leave copies
//     that clear() cannot reach: zeroing is best effort.
//   - First contact resists a future quantum adversary that records
//     traffic (ML-KEM-768), not an active one at the time.
//   - X25519 goes through crypto/ecdh, which rejects low-order points;
//     the deprecated curve25519.ScalarMult, which accepts them, is not used.
//   - Every authentication failure is the one opaque [ErrDecrypt]; a header
//     that authenticates under a chain whose key is gone is [ErrReplay].
//   - A forgery costs a hash and at most 2 + MaxSkippedChains header trials
//     on a session, even one made from a captured header; a prekey message
//     costs at most one responder handshake. Only the peer itself, who holds
//     the keys, can make a receiver skip: up to MaxSkip keys per message,
//     both chains of a DH ratchet step counted together.
//   - Identity keys are compared in constant time; secret-holding types
//     print only public parts.
//   - The safety number ([SafetyNumber]) lets two users check that neither
//     identity was substituted. It covers the Ed25519 identity keys; the
//     X25519 identity key is bound to them by its certificate.
//
// [X3DH]: https://signal.org/docs/specifications/x3dh/
// [PQXDH]: https://signal.org/docs/specifications/pqxdh/
// [Double Ratchet]: https://signal.org/docs/specifications/doubleratchet/
// [FIPS 203]: https://csrc.nist.gov/pubs/fips/203/final
// [RFC 9106]: https://www.rfc-editor.org/rfc/rfc9106
// [XChaCha20]: https://datatracker.ietf.org/doc/html/draft-irtf-cfrg-xchacha
package e2e
