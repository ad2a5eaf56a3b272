// Package node is where the libp2p host, the crypto of package e2e and the
// store of package db meet (docs/design.md §1, §7, §8): one user's node,
// its protocols, the send and receive pipelines, the outbox and the event
// log.
//
// # Where a message goes
//
// The files, in the order a message passes them.
//
// Sending:
//
//	send.go          Send checks the text, and fetches the peer's bundle
//	                 first when no session with it is stored (bundle.go)
//	conversation.go  queues a sendOp on the peer's conversation; a batch
//	                 of its ops runs in one store transaction
//	encrypt.go       the sendOp: encrypt (starting a session from the
//	                 bundle), the message, the outbox row, the event
//	conversation.go  commit, then Send returns; the worker is kicked
//	outbox.go        the peer's worker writes the outbox over one stream
//	dial.go          connect (a live connection, known addresses, the
//	                 DHT) and open the stream
//	wire/wire.go     frames out, acks back
//	outbox.go        acks committed: delivered, or failed with a reason
//	                 (then trust.go drops the sessions when the reason
//	                 calls for a new one); what failed waits with backoff
//
// Receiving:
//
//	inbound.go       the /p2pmsg/msg/1.0.0 handler reads frames (wire/wire.go)
//	                 and queues a recvOp per envelope on the sender's
//	                 conversation
//	conversation.go  a batch of ops in one store transaction
//	requests.go      the strangers' gates, before anything is decrypted
//	decrypt.go       the recvOp: decrypt under a session, or answer a
//	                 prekey message (PQXDH as responder, prekeys.go)
//	trust.go         the identity key on record, contact requests,
//	                 key changes
//	conversation.go  commit (session record, messages, events)
//	inbound.go       then the acks, in order
//
// Beside the message path:
//
//	identity.go      the identity key, which is the host key; peer IDs
//	prekeys.go       prekeys: rotation, one-time stock, loading
//	sessions.go      a peer's session record (up to five sessions)
//	bundle.go        signing, serving and fetching bundles
//	publish.go       publishing the bundle to the DHT
//	records.go       what the node keeps as a DHT server: dht.Store over
//	                 db.Records (dht-records.sqlite), or memory
//	contacts.go      the contact API (names, accept, block, verify)
//	requests.go      contact requests: the cap, listing and clearing
//	                 them, the acceptance notice
//	clock.go         peers' clocks as their messages show them
//	message.go       messages, history pages
//	events.go        the event log: Events, Watch
//	hostevents.go    the host-event loop: connections, reachability,
//	                 DCUtR coming up, hole punches, mDNS
//	nat.go           paths (direct, hole-punched, relayed, offline),
//	                 reachability, relayed connections made new for DCUtR
//	                 (the punch loop)
//	status.go        Status
//	node.go          New, Start, Close; the node's state and its locks
//	config.go        Config and its validation
//	limits.go        every tunable, with its reason
//
// # Using it
//
// New opens the store in Config.DataDir (creating the identity and the
// first prekeys on first use); Start builds the host, joins the DHT
// through Config.BootstrapPeers and starts serving; Close stops it all
// and waits for every goroutine it started. Send, History, Watch and the
// contact operations are the API; a node that is not started serves
// everything that only reads the store. The Example shows a whole
// conversation.
//
// # Protocols
//
// /p2pmsg/msg/1.0.0 carries envelopes one way: frames of a uvarint length
// and an e2e envelope (at most e2e.MaxEnvelopeSize; a longer length ends
// the stream before anything is allocated). The receiver answers every
// frame, in order, with 18 bytes: a status (1 stored, 2 rejected for good,
// 3 retry later), a reason for a rejection (1 malformed, 2 no session, 3
// unknown prekey, 4 changed identity, 5 not yours, 6 not accepted yet:
// the sender holds it, 7 too long for a stranger) and the envelope's
// message id. "Stored" is written only after the transaction holding the
// message committed. A stream that sends 64 refused frames in a row is
// reset; one stream holds at most 1,024 envelopes or 4 MiB unanswered.
//
// /p2pmsg/bundle/1.0.0 answers one frame: the node's signed bundle with
// one fresh one-time prekey of each kind, each handed out once (a peer
// gets fresh ones at most every 10 s, and all peers together 30 at once
// and one every 2 s after; otherwise the bundle carries the last-resort
// keys only, as in the DHT).
//
// The envelope's plaintext is a kind byte, the sender's clock in unix
// milliseconds and the UTF-8 text (kind 1) or a control signal (kind 2:
// 1, the sender accepted us as a contact).
//
// # Strangers
//
// A peer that is not an accepted contact gets one message through, of at
// most 8 KiB of text, which makes a contact request; what it sends next
// is refused unread (reason 6) and held by its node until the user
// accepts it (a reply, or the acceptance notice Accept sends). At most
// 500 requests are kept (the oldest deleted first, with an event), new
// sessions from strangers share one per 5 s (50 at once), their streams
// 64 at once (2 each);
// contacts pass all of these. Requests lists them, ClearRequests deletes
// them.
//
// # Sending
//
// Send queues the text for the peer's conversation. A conversation (type
// conv) runs its queued sends and receives as one batch in one store
// transaction: it encrypts in order, writes the session record once, the
// messages, the outbox rows (the exact envelope bytes) and the events,
// and commits. Send returns after that commit: the message is durable and
// "queued". A first message needs the peer's bundle: Send fetches it
// before it queues the message (from the peer when it is reachable, else
// from the DHT), so that a conversation never waits for the network.
//
// One worker per peer delivers the outbox over one stream, oldest first,
// up to 1024 envelopes unacknowledged, and records acks in batches
// (delivered, or failed with the reason when the peer refused an
// envelope; after "no session" or "unknown prekey" the sessions with the
// peer are dropped, so that the next message, or Resend, starts a new
// one). A peer is reached through a live connection, the addresses
// we know, or a DHT lookup. What cannot be delivered waits with
// exponential backoff (Config.RetryMin doubling to RetryMax); a worker
// starts at once when the peer connects, and a node that starts connects
// to its accepted contacts, so that what they queued for it arrives
// without waiting for their backoff. Retransmissions resend the same
// bytes, never a new encryption.
//
// # Receiving
//
// Envelopes from a stream go to the sender's conversation in order; a
// batch decrypts them, writes the session record, the messages and
// events, commits, and only then are they acknowledged. A message id
// already stored from that peer is acknowledged again and not stored
// twice; one stored for another peer is refused. A prekey message is
// accepted only on a stream from the identity it names, and the responder
// records its replay key, consumes its one-time prekeys and starts the
// session in the same transaction.
//
// # Sessions
//
// A peer's session record keeps up to five sessions, the current one
// first. When both sides start a session at once, each holds two;
// whatever was queued under either still decrypts, and decrypting under
// an older session makes it current again, so both sides settle on one.
// The record in memory is dropped whenever a commit fails, so it never
// runs ahead of the store.
//
// # Contacts and keys
//
// A peer ID names its user's Ed25519 identity key, so that key cannot
// change under it. Its X25519 identity key can: a contact that presents
// another one (its owner restored only the Ed25519 key, or someone holds
// it) is refused and raised as a key-change event until the user calls
// TrustIdentity. A stranger's first message makes a contact request;
// writing to a peer, or Accept, accepts it; a blocked peer's messages are
// decrypted, acknowledged and dropped, and what was queued for it fails.
//
// # Host events
//
// One goroutine follows the host: connections to contacts kick their
// workers and raise connectivity events when their path changes,
// AutoNAT's verdict is kept for Status, relayed connections made before
// DCUtR came up are dropped so that they are upgraded when dialled
// again, and hole punches and peers found on the LAN are acted on. It
// reads the store on its own goroutine, never on libp2p's.
//
// # Events
//
// Every stored message, state change, contact request, key change and
// change of a contact's path is a row of the store's event log, with an
// id that only grows. Watch reads from any id on, then follows new
// events; Events reads a page. No in-memory cap, and a client resumes
// after a restart.
package node
