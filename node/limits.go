package node

import (
	"time"

	"github.com/p2pmsg/p2pmsg/e2e"
)

// Every tunable of the node, with its reason (docs/design.md §11). What a
// user may change is in Config (intervals, backoff, lookup timeout,
// connection watermarks); the wire format's own bounds are in package e2e
// (e2e.MaxEnvelopeSize, e2e.MaxBundleSize, ...) and in wire/wire.go (the frame
// is one envelope; MaxTextSize follows from the content header).
//
// The first three groups bound what a stranger can make us hold or do:
// peer IDs cost nothing, so none of them may grow with what a peer sends.

// What a peer can make us hold on /p2pmsg/msg/1.0.0 (inbound.go).
const (
	// recvWindow bounds the envelopes of one stream that are read but not
	// yet acknowledged, and recvWindowKiB their size: beyond either the
	// reader waits for the store, and the sender for its acks. 1024 keeps
	// a fast link busy for a whole store commit; 4 MiB bounds the memory
	// of a stream that sends envelopes of the largest size.
	recvWindow    = 1024
	recvWindowKiB = 4096
	// maxRejects: a stream that sends this many refused frames in a row
	// is reset; its peer may open another, but each costs it a round
	// trip, and ours stays cheap. An honest sender sees a refusal now and
	// then (a lost session), never 64 in a row.
	maxRejects = 64
	// streamIdle: a stream that sends nothing for this long is closed, so
	// that idle streams do not pile up (the sender opens another).
	streamIdle = 2 * time.Minute
	// frameTimeout: a stream's first frame, and every frame once begun,
	// must arrive whole within this: a sender opens a stream when it has
	// something to send, and writes a frame in one go. A stream that
	// idles before its first frame, or trickles, holds a goroutine, a
	// buffer and a stream slot for nothing (20 peers' idle streams used
	// to exhaust the host's stream limits and cut the node off).
	frameTimeout = 5 * time.Second
	// minFrameRate: after frameTimeout, a frame's body must keep coming at
	// this many bytes a second on average (inbound.go's readBody), so that
	// a slow link (a loaded relay, a poor mobile connection) finishes a
	// long message instead of being cut off in the middle, and again at
	// each resend, while a stream that trickles is still closed.
	minFrameRate = 1024
	// msgStreamsPerPeer and bundleStreamsPerPeer bound the streams one
	// peer may have open with us on each of our protocols, in the
	// resource manager: a delivery needs one message stream (a few while
	// one is replaced) and a bundle fetch one short stream, while the
	// defaults allow 64 and more per peer per protocol, enough for a
	// handful of peers to take every stream the host allows.
	msgStreamsPerPeer    = 8
	bundleStreamsPerPeer = 2
	// ackWriteTimeout: a peer that reads no acks for this long loses its
	// stream: acks must not pile up in our buffers.
	ackWriteTimeout = 30 * time.Second
	// recvBufSize is the read buffer of an inbound stream: one largest
	// envelope.
	recvBufSize = 64 << 10
)

// What a peer can make us give or remember on /p2pmsg/bundle/1.0.0
// (bundle.go). One-time prekeys are handed out at most once per
// issueEvery to one peer and issueBurst at once (issueRate a second on
// average) to all: peer IDs cost nothing, so a per-peer limit alone would
// let anyone drain them. Beyond the limits a fetch gets the bundle with
// the last-resort keys only, as the DHT has it, served from memory
// without a write.
const (
	issueEvery = 10 * time.Second
	issueBurst = 30
	issueRate  = 0.5
	// issueReserve: strangers get one-time prekeys only while this many
	// are left in the bucket; the rest is for contacts (a contact that
	// reinstalled, or whose session broke, while someone drains).
	issueReserve = 10
	// maxIssueMemory bounds the map of when each peer last got one-time
	// prekeys: past it, each new issue drops the entries older than
	// issueEvery (they no longer limit anything). The bucket lets at most
	// issueBurst + issueRate × issueEvery entries be younger, so the map
	// never holds more than maxIssueMemory + 1.
	maxIssueMemory = 4096
	// bundleIOTimeout bounds writing a bundle to a requester, and reading
	// one from a peer: a frame of at most 8 KiB.
	bundleIOTimeout = 10 * time.Second
)

// What a stranger (a peer who is not an accepted contact) can make us
// store or do (decrypt.go, requests.go; docs/design.md §11). Peer IDs cost
// nothing: every bound here is on all strangers together, or on what one
// stranger costs times a total cap.
const (
	// maxRequests bounds the pending contact requests: past it the oldest
	// are deleted, with their message, and an event says so. 500 is more
	// than anyone reads through, and with maxRequestText bounds what
	// strangers can make us store to about 4 MiB.
	maxRequests = 500
	// maxRequestText: a stranger's one message (until our user accepts)
	// holds at most this many bytes of text; longer ones are refused
	// (wire.ReasonTooLarge). A first message says who one is, not a
	// whole document; 8 KiB is a long letter.
	maxRequestText = 8 << 10
	// handshakeRate and handshakeBurst: the new sessions strangers may
	// start with us, a second on average and at once. A handshake costs
	// an ML-KEM decapsulation, five X25519 and a store write, and what a
	// stranger leaves behind outlives its request: the replay key of its
	// handshake (kept 3 weeks, as the signed prekey it names) and its
	// events (a request, a message, maybe a drop: the log is never
	// pruned), some 400 bytes in all. One every 5 s bounds that to about
	// 7 MB a day under a sustained flood, while 50 at once is more first
	// contacts than a person gets in a day. Past the bucket a stranger's
	// first message is answered "retry later" and waits in its sender's
	// outbox. Contacts are never counted: their new sessions (after a
	// reinstall) pass at once.
	handshakeRate  = 0.2
	handshakeBurst = 50
	// maxStrangerStreams bounds the message streams all strangers hold
	// open with us together, and strangerStreamsPerPeer one stranger's:
	// past either a stranger's new stream is reset at once, while a
	// contact's is always served. A stranger's stream is closed once it
	// idles for frameTimeout between frames (a contact's after
	// streamIdle): a stranger needs one stream for the seconds of one
	// delivery, and eight peer IDs must not hold every slot by sending a
	// frame now and then.
	maxStrangerStreams     = 64
	strangerStreamsPerPeer = 2
	// holdRetry: a message held at the sender (the recipient has not
	// accepted it yet, wire.ReasonNotAccepted) is offered again this
	// often, in case the acceptance notice was lost; a reply or the
	// notice releases it at once. The recipient refuses an offer without
	// decrypting it, so the probe costs it almost nothing.
	holdRetry = 10 * time.Minute
)

// Peers' clocks as their messages show them (clock.go).
const (
	// clockWarn: status warns about a peer whose clock differs from ours
	// by more than this.
	clockWarn = time.Minute
	// clockWindow: a peer's estimate is built from its messages of this
	// long; an older estimate starts again, so that a clock that was
	// corrected stops being reported.
	clockWindow = time.Hour
	// clockBatches and clockSpread: a peer's clock behind ours is
	// reported only when that many batches of its messages, this far
	// apart, all showed it (late delivery looks the same once).
	clockBatches = 3
	clockSpread  = 2 * time.Minute
	// clockStale: a peer silent this long is no longer warned about.
	clockStale = 24 * time.Hour
	// maxClockPeers bounds the peers whose clocks we remember: past it
	// the oldest estimate goes.
	maxClockPeers = 256
)

// What a peer can make one batch hold (conversation.go), and the sessions
// it can make us keep (sessions.go).
const (
	// maxBatch bounds one transaction, so that a flood from one peer
	// cannot hold the writer for long.
	maxBatch = 512
	// maxSessions is how many sessions a record keeps per peer: the
	// current one and the ones it replaced. When both sides start a
	// session at once, each ends up with two; envelopes already queued
	// under either must still decrypt, and a successful decryption under
	// an older session makes it current again, so both sides converge on
	// one (Signal's session records). It bounds what a peer that keeps
	// starting sessions costs us, and it is part of the record's format:
	// a record claiming more is refused.
	maxSessions = 5
	// pruneEvery: a conversation drops its sessions' expired skipped
	// message keys at most this often (e2e.SkippedKeyMaxAge is 30 days:
	// an hour late is nothing).
	pruneEvery = time.Hour
)

// Prekeys (prekeys.go; docs/design.md §3).
const (
	// oneTimeLow: below this many unissued one-time prekeys of a kind, a
	// node makes oneTimeBatch more: enough for the issuing rate above
	// between two top-ups, which run at every issue.
	oneTimeLow   = 20
	oneTimeBatch = 100
	// oneTimeUnusedLife: a one-time prekey handed out and never used (its
	// fetcher did not write) is deleted this long after, private half and
	// all: anyone can fetch them, and the store must not grow with every
	// fetch. A first message normally follows its fetch within seconds;
	// one sent later than this is refused as naming an unknown prekey, and
	// its sender starts again from a fresh bundle.
	oneTimeUnusedLife = 30 * 24 * time.Hour
	// graceRotations: a replaced signed prekey keeps its private half for
	// this many more rotations, for the prekey messages still under way.
	graceRotations = 2
	// bundleLifetime: a node signs bundles that expire this far ahead
	// (earlier if a prekey's private half goes earlier), and republishes
	// every 12 h, long before. Half of e2e.MaxBundleLifetime, which
	// verifiers allow (plus e2e.BundleClockSkew): a verifier whose clock
	// is up to 7 days behind ours still accepts a fresh bundle (it was a
	// minute when bundles were signed for the whole 14 days).
	bundleLifetime = e2e.MaxBundleLifetime / 2
	// bundleCacheMinLife: the bundle without one-time prekeys is served
	// from memory while it has at least this long to live; then it is
	// signed again.
	bundleCacheMinLife = 24 * time.Hour
)

// Delivery (outbox.go).
const (
	// maxInflight bounds the envelopes on the wire without an ack: a
	// window the receiver's recvWindow matches.
	maxInflight = 1024
	// idleStream: an outgoing stream with nothing to send is closed after
	// this.
	idleStream = 30 * time.Second
	// ackTimeout: envelopes on the wire with no ack for 10 s (plus their
	// bytes at minFrameRate) mean a connection that died without a word (a NAT that forgot the hole
	// punched through it, a cable pulled): it is closed, and the next
	// attempt dials again, through a relay if need be. Without it the
	// stream waited idleStream, and the dead connection counted as live
	// until yamux's keepalive gave up on it (about 40 s), for every
	// attempt (docs/node-decisions.md, 24).
	ackTimeout = 10 * time.Second
	// markSentAfter: envelopes written and not acknowledged by then are
	// marked sent in the store. On a live connection the ack comes within
	// milliseconds, and writing "sent" first would double the writes
	// (docs/node-decisions.md, 6).
	markSentAfter = 200 * time.Millisecond
	// sendBufSize is the write buffer of an outgoing stream: many small
	// envelopes per write.
	sendBufSize = 32 << 10
	// retryEvery: how often, at most, the outbox is scanned for entries
	// whose backoff ran out; each entry waits out its own backoff
	// (Config.RetryMin to RetryMax), this only bounds how late it goes.
	retryEvery = time.Second
	// retryIdle: the outbox is read at least this often, whatever it
	// holds (a wake missed, a store that failed).
	retryIdle = time.Minute
	// maxDuePeers bounds the peers one scan of the outbox kicks; the
	// others wait for the next scan.
	maxDuePeers = 1000
	// maxBackoffShift caps the doubling of the delivery backoff before
	// it is clamped to Config.RetryMax (and keeps the shift from
	// overflowing).
	maxBackoffShift = 20
	// maxRekeys: a message whose first envelope the recipient could not
	// take is encrypted again under a new session at most this often,
	// then fails (outbox.go): a recipient that refuses every new session
	// must not keep us encrypting for ever.
	maxRekeys = 2
	// staleLife: a receipt or grant not delivered after this long is
	// dropped (at a publication): its peer's own outbox resends what a
	// receipt answered, and a grant is made again with the next session.
	// The ids of deleted messages are kept as long.
	staleLife = 30 * 24 * time.Hour
)

// Connecting (dial.go).
const (
	// dialTimeout bounds a dial to the addresses the peerstore knows,
	// before the DHT is asked for fresh ones.
	dialTimeout = 5 * time.Second
	// streamOpenTimeout bounds opening a stream on a live connection
	// (the protocol negotiation).
	streamOpenTimeout = 10 * time.Second
	// maxGreet: at start a node connects to at most this many accepted
	// contacts (the most recent first), greetConcurrency at a time, so
	// that they deliver what they queued for it at once; the others wait
	// for their own backoff.
	maxGreet         = 64
	greetConcurrency = 4
)

// Relays and reach (relays.go, reach.go; docs/node-decisions.md, 22).
const (
	// relayCandidatesMax, relaysWanted: AutoRelay keeps up to 8 relay
	// candidates and holds reservations on 2 relays (go-libp2p's default
	// of 2: one relay that goes away leaves the other).
	relayCandidatesMax = 8
	relaysWanted       = 2
	// relayBackoff: a relay that refused a reservation is asked again
	// after 10 s (go-libp2p: an hour, which keeps a restarted relay
	// unused that long).
	relayBackoff = 10 * time.Second
	// relaySourceInterval: AutoRelay asks for candidates at most every
	// 2 s (go-libp2p: 30 s).
	relaySourceInterval = 2 * time.Second
	// maxCircuitTries: a peer not reachable otherwise is tried through at
	// most this many of the relays we know.
	maxCircuitTries = 4
	// relayRedialMin: a bootstrap peer or pinned relay that went away is
	// dialled again every second for relayRedialFast (a restart), then
	// every relayRedialSlow. Each attempt lasts relayRedialAttempt plus
	// four of the peer's round trips (redialTimeout).
	relayRedialMin     = time.Second
	relayRedialFast    = 10 * time.Minute
	relayRedialSlow    = time.Minute
	relayRedialAttempt = 1500 * time.Millisecond
	// redialCheckEvery: a connected bootstrap peer or pinned relay is
	// looked at this often besides when the host-event loop reports it
	// gone (which it always does, unless that report was lost).
	redialCheckEvery = 30 * time.Second
	// networkWakeEvery: what waits on the network (queued messages, an
	// unpublished bundle) is woken at most once a second by network
	// changes: a relay reconnected or reserved, the DHT no longer empty.
	networkWakeEvery = time.Second
	// wakeBurst, wakeCooldown, wakeMax: a peer is woken at most 3 times
	// in a row, then once per 10 s, and a round wakes at most 64 peers.
	wakeBurst    = 3
	wakeCooldown = 10 * time.Second
	wakeMax      = 64
	// greetEvery: a new relay reservation makes the node greet its
	// contacts (they learn its new address) at most twice a minute.
	greetEvery = 30 * time.Second
	// watchEvery: how often the node checks what keeps it from being
	// found or reached (diagnose.go), and logs what changed.
	watchEvery = 2 * time.Second
	// finderStartWait bounds how long Close waits for AutoRelay to take
	// our private-reachability claim (node.go, Close).
	finderStartWait = 2 * time.Second
	// punchCheckEvery, punchGrace, punchRetryFirst, punchRetryMax: a
	// contact reached only through a relay, with no hole punch seen for
	// 3 s since DCUtR could have seen its connection, has that
	// connection dialled again (nat.go); so has one whose punch failed,
	// 30 s after; then again with the wait doubling up to 10 minutes
	// while it stays relayed.
	punchCheckEvery = time.Second
	punchGrace      = 3 * time.Second
	punchRetryFirst = 30 * time.Second
	punchRetryMax   = 10 * time.Minute
)

// Publication (publish.go; docs/design.md §4).
const (
	// publishFirstRetry and publishMaxRetry: a failed publication is
	// retried from 2 s, doubling, up to 5 minutes.
	publishFirstRetry = 2 * time.Second
	publishMaxRetry   = 5 * time.Minute
	// publishTimeout bounds one publication.
	publishTimeout = time.Minute
	// publishCheckEvery: the publication loop wakes at least this often,
	// to rotate prekeys that are due.
	publishCheckEvery = time.Hour
)

// Host events and the host (hostevents.go, node.go; docs/design.md §8).
const (
	// hostEventBuffer is the buffer of the host-event loop's subscription
	// to libp2p's event bus: libp2p's emitter waits when it is full, so
	// it holds a burst of connections while the loop writes to the store.
	hostEventBuffer = 256
	// hostQueueSize is the queue from the hole-punch tracer and mDNS to
	// the loop: they run on libp2p's goroutines and never wait; when it
	// is full their event is dropped (and counted).
	hostQueueSize = 256
	// maxHostBatch bounds the events the loop takes before it acts on
	// them: one store read and one write per batch.
	maxHostBatch = 256
	// connGrace is the connection manager's grace period: a new
	// connection is not trimmed in its first minute.
	connGrace = time.Minute
	// mailboxOwnerStreams, mailboxDepositStreams, mailboxStreamsPerPeer
	// and mailboxMemory bound the mailbox protocols' streams (a
	// subscription holds one for as long as its owner is online; a
	// sender, one per batch) and the memory their handlers reserve (a
	// sender's batch read ahead, up to 1 MiB).
	mailboxOwnerStreams   = 64
	mailboxDepositStreams = 256
	mailboxStreamsPerPeer = 8
	mailboxMemory         = 64 << 20
	// rttEvery is how often yamux measures a connection's round trip
	// again (its window tuning uses it); host.go says why not every 30 s.
	rttEvery = 10 * time.Minute
	// mdnsAddrTTL: how long the addresses of a peer found on the LAN stay
	// in the peerstore.
	mdnsAddrTTL = time.Hour
)

// Config's defaults, for the fields left zero (config.go documents each).
const (
	// defaultRepublish: kad-dht drops records after 48 h; four chances.
	defaultRepublish = 12 * time.Hour
	// defaultRotate: signed prekeys live a week, and are kept two more
	// (graceRotations).
	defaultRotate = 7 * 24 * time.Hour
	// defaultRetryMin and defaultRetryMax bound the delivery backoff: a
	// peer that comes back is retried within 5 minutes at worst (and at
	// once when it connects).
	defaultRetryMin = time.Second
	defaultRetryMax = 5 * time.Minute
	// defaultLookup bounds a DHT lookup: long enough for a few hops over
	// slow links.
	defaultLookup = 10 * time.Second
	// defaultConnLow and defaultConnHigh are the connection manager's
	// watermarks: room for the DHT's routing table and the contacts.
	defaultConnLow  = 64
	defaultConnHigh = 256
)

// Reading: what one call returns at most.
const (
	// MaxPage bounds a page of history or of events.
	MaxPage = 1000
	// MaxPageText bounds the text of a page of history or of events, in
	// bytes: a page is shorter when its messages are long. Any peer can
	// fill a page with messages of MaxTextSize, which JSON escaping can
	// make six times longer on the local API; 4 MiB keeps an answer under
	// 25 MiB, and a page always holds at least one message.
	MaxPageText = 4 << 20
	// eventPage is how many events a Watcher reads at once.
	eventPage = 256
	// MaxNameLen bounds a contact's name, in characters.
	MaxNameLen = 64
)
