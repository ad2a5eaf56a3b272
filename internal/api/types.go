package api

import (
	"strings"
	"time"
)

// The wire types: what each method takes and returns, as JSON. Params
// are decoded strictly (an unknown field is refused with its name), and
// lists are never null.

// Identity is the answer of "id".
type Identity struct {
	PeerID      string   `json:"peer_id"`
	Addrs       []string `json:"addrs"` // empty without a daemon
	Fingerprint string   `json:"fingerprint"`
	Sealed      bool     `json:"sealed"` // the store is sealed by a passphrase
}

// SendParams are the params of "send".
type SendParams struct {
	Peer    string `json:"peer"` // a peer ID or a contact's name
	Text    string `json:"text"`
	Wait    bool   `json:"wait,omitempty"`     // answer once delivered or failed
	Timeout string `json:"timeout,omitempty"`  // how long Wait waits, a Go duration; default 30s
	ReplyTo string `json:"reply_to,omitempty"` // the id of the message it quotes
}

func (p SendParams) check() error {
	if err := needPeer(p.Peer); err != nil {
		return err
	}
	if strings.TrimSpace(p.Text) == "" {
		return invalid("the message is empty: give the text to send")
	}
	if p.Timeout != "" && !p.Wait {
		return invalid("timeout is how long wait waits: give wait too")
	}
	return nil
}

// SendResult names a message and where it is.
type SendResult struct {
	ID    string `json:"id"`
	State string `json:"state"`
	Error string `json:"error,omitempty"` // why it failed, or why it is held (queued)
}

// MessageParams name one message ("message", "resend").
type MessageParams struct {
	ID string `json:"id"`
}

func (p MessageParams) check() error {
	if strings.TrimSpace(p.ID) == "" {
		return invalid(`no message id: give the 32 hex digits that "send" and "history" print`)
	}
	return nil
}

// HistoryParams are the params of "history": a page of up to Limit
// messages (default 50, at most 1000) before the message Before, or after
// the message After, or with neither the latest ones (Oldest: the first
// ones). Pages come oldest first.
type HistoryParams struct {
	Peer   string `json:"peer"`
	Before string `json:"before,omitempty"` // a message id
	After  string `json:"after,omitempty"`  // a message id
	Oldest bool   `json:"oldest,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

func (p HistoryParams) check() error {
	if err := needPeer(p.Peer); err != nil {
		return err
	}
	if p.Before != "" && (p.After != "" || p.Oldest) {
		return invalid("page before a message, or after one, not both")
	}
	if p.Limit < 0 {
		return invalid("limit %d is negative", p.Limit)
	}
	return nil
}

// Message is a message as a client shows it.
type Message struct {
	ID   string `json:"id"`
	Peer string `json:"peer"`
	Name string `json:"name,omitempty"` // the contact's name: the user's for it, else the one it gave itself
	// NameIsTheirs: Name is the one the peer gave itself (a stranger may
	// take a friend's); clients mark it, as p2pmsg does with ~.
	NameIsTheirs bool      `json:"name_is_theirs,omitempty"`
	Direction    string    `json:"direction"` // in, out
	Text         string    `json:"text"`
	State        string    `json:"state"` // queued, sent, delivered, failed; received, read
	Error        string    `json:"error,omitempty"`
	Sent         time.Time `json:"sent"`   // the sender's clock
	Stored       time.Time `json:"stored"` // when this node stored it: the conversation's order
	Seq          int64     `json:"seq"`    // orders messages of the same Stored millisecond
	Request      bool      `json:"contact_request,omitempty"`
	Edited       time.Time `json:"edited,omitzero"`    // the sender's clock at its latest edit
	Deleted      bool      `json:"deleted,omitempty"`  // deleted for everyone: no text is left
	ReplyTo      string    `json:"reply_to,omitempty"` // the id of the message it quotes
	// Timer is its disappearing timer in seconds; Expires, when it goes
	// (set once the timer runs: from delivery for ours, reading for theirs).
	Timer     int64      `json:"timer,omitempty"`
	Expires   time.Time  `json:"expires,omitzero"`
	Reactions []Reaction `json:"reactions,omitempty"`
}

// Reaction is one person's reaction to a message.
type Reaction struct {
	Peer  string `json:"peer,omitempty"` // who reacted; empty: this node's user
	Name  string `json:"name,omitempty"` // their name, when it is the contact's
	Emoji string `json:"emoji"`
}

// PeerParams name a peer: a peer ID or a contact's name.
type PeerParams struct {
	Peer string `json:"peer"`
}

func (p PeerParams) check() error { return needPeer(p.Peer) }

// ContactParams are the params of "contacts.add" and "contacts.rename".
// For add, an empty name keeps the contact's name; for rename, it
// removes it. Add takes an invitation ("invite") as Peer too.
type ContactParams struct {
	Peer string `json:"peer"`
	Name string `json:"name,omitempty"`
}

func (p ContactParams) check() error { return needPeer(p.Peer) }

// VerifiedParams are the params of "contacts.verified".
type VerifiedParams struct {
	Peer     string `json:"peer"`
	Verified *bool  `json:"verified,omitempty"` // default true
}

func (p VerifiedParams) check() error { return needPeer(p.Peer) }

// Contact is a known peer.
type Contact struct {
	PeerID     string `json:"peer_id"`
	Name       string `json:"name,omitempty"`
	State      string `json:"state"` // request, accepted
	Verified   bool   `json:"verified"`
	Blocked    bool   `json:"blocked"`
	KeyChanged bool   `json:"key_changed"` // refused until "trust"
	Path       string `json:"path"`        // direct, hole-punched, relayed, offline
	// ProfileName is the name the peer gave itself; DisplayName is what
	// to show: Name, else ProfileName.
	ProfileName string `json:"profile_name,omitempty"`
	DisplayName string `json:"display_name,omitempty"`
	Timer       int64  `json:"timer,omitempty"` // the disappearing timer, seconds
	// Unread: received messages not yet read; LastActivity: the time of
	// the latest message of the conversation.
	Unread       int       `json:"unread,omitempty"`
	LastActivity time.Time `json:"last_activity,omitzero"`
}

// Removed is the answer of "contacts.remove".
type Removed struct {
	PeerID string `json:"peer_id"`
}

// Trusted is the answer of "trust": Changed is false when no key change
// was pending (then nothing changed).
type Trusted struct {
	PeerID  string `json:"peer_id"`
	Changed bool   `json:"changed"`
}

// Resolved is the answer of "resolve" and part of "verify".
type Resolved struct {
	PeerID string `json:"peer_id"`
	Name   string `json:"name,omitempty"`
}

// SafetyNumber is the answer of "verify".
type SafetyNumber struct {
	PeerID       string `json:"peer_id"`
	Name         string `json:"name,omitempty"`
	SafetyNumber string `json:"safety_number"`
}

// EventsParams select events: those with ids above Since, of the given
// kinds (all when empty). Limit bounds a page of "events" (default and
// most 1000).
type EventsParams struct {
	Since int64    `json:"since,omitempty"`
	Kinds []string `json:"kinds,omitempty"`
	Limit int      `json:"limit,omitempty"`
}

func (p EventsParams) check() error {
	for _, k := range p.Kinds {
		if !knownKind(k) {
			return invalid("unknown event kind %q (kinds: %s)", k, strings.Join(eventKinds(), ", "))
		}
	}
	if p.Since < 0 || p.Limit < 0 {
		return invalid("since and limit cannot be negative")
	}
	return nil
}

// SubscribeParams are the params of "subscribe".
type SubscribeParams struct {
	Since int64    `json:"since,omitempty"`
	Kinds []string `json:"kinds,omitempty"`
}

func (p SubscribeParams) check() error { return EventsParams{Since: p.Since, Kinds: p.Kinds}.check() }

// EventPage is the answer of "events": Last is the id to go on from. A
// short page, even an empty one, is not the end (kinds filter, and a page
// holds at most 4 MiB of text); Last equal to the Since asked is.
type EventPage struct {
	Events []Event `json:"events"`
	Last   int64   `json:"last"`
}

// Event is an entry of the node's event log; which fields are set depends
// on the kind (message, state, contact-request, key-change, connectivity).
type Event struct {
	ID   int64     `json:"id"`
	Kind string    `json:"kind"`
	Time time.Time `json:"time"`
	Peer string    `json:"peer,omitempty"`
	Name string    `json:"name,omitempty"` // the contact's name: the user's for it, else the one it gave itself
	// NameIsTheirs: Name is the one the peer gave itself (a stranger may
	// take a friend's); clients mark it, as p2pmsg does with ~.
	NameIsTheirs bool      `json:"name_is_theirs,omitempty"`
	MessageID    string    `json:"message_id,omitempty"`
	Direction    string    `json:"direction,omitempty"`
	Text         string    `json:"text,omitempty"`
	Sent         time.Time `json:"sent,omitzero"`
	Stored       time.Time `json:"stored,omitzero"`
	State        string    `json:"state,omitempty"`
	Reason       string    `json:"reason,omitempty"`
	Path         string    `json:"path,omitempty"`      // connectivity
	Connected    *bool     `json:"connected,omitempty"` // connectivity: the path is not offline
	Emoji        string    `json:"emoji,omitempty"`     // reaction (none: taken back)
	Reactor      string    `json:"reactor,omitempty"`   // reaction: who; empty: this node's user
	Timer        *int64    `json:"timer,omitempty"`     // timer: seconds, 0 for off
}

// Status is the answer of "status".
type Status struct {
	PeerID          string        `json:"peer_id"`
	Addrs           []string      `json:"addrs"`
	Reachability    string        `json:"reachability"`  // public, private or unknown (AutoNAT)
	RelayAddrs      []string      `json:"relay_addrs"`   // one per relay reservation
	HolePunching    bool          `json:"hole_punching"` // DCUtR is up
	Contacts        []ContactPath `json:"contacts"`
	ConnectedPeers  int           `json:"connected_peers"`
	RoutingTable    int           `json:"dht_routing_table"`
	Published       time.Time     `json:"bundle_published,omitzero"`
	Replicas        int           `json:"bundle_replicas"`
	NextRepublish   time.Time     `json:"next_republish,omitzero"`
	SecretsUnsealed bool          `json:"secrets_unsealed"`
	ClockSkews      []ClockSkew   `json:"clock_skews"`      // peers whose clocks differ from ours by more than a minute
	Requests        int           `json:"pending_requests"` // contact requests waiting for the user
	Outbox          int           `json:"outbox"`           // envelopes waiting for an acknowledgement or a receipt
	// NewSessionsPending: contacts that a restored store has yet to
	// start a new session with (it does so by itself).
	NewSessionsPending int          `json:"new_sessions_pending"`
	Mailboxes          []OwnMailbox `json:"mailboxes"` // those that keep our messages while we are offline
	DHT                DHTStatus    `json:"dht"`
	// Problems: what keeps others from finding or reaching the node, one
	// sentence each with what to do; [] when all is well.
	Problems []Problem `json:"problems"`
}

// DHTStatus is the node's part in the LAN DHT (private and loopback
// networks; every node serves it) and the internet's (public nodes
// only; Mode applies to it).
type DHTStatus struct {
	Mode      string `json:"mode"` // auto, server or client, as configured
	LANServer bool   `json:"lan_server"`
	WANServer bool   `json:"wan_server"`
	LANPeers  int    `json:"lan_peers"`
	WANPeers  int    `json:"wan_peers"`
}

// Problem is one thing that keeps the node from being found or reached.
// Codes: alone, bootstrap-unreachable, no-dht-server, unreachable,
// not-published.
type Problem struct {
	Code string `json:"code"`
	Text string `json:"text"`
}

// ClockSkew is a peer whose messages show a clock away from ours:
// OffsetMillis is our clock minus the peer's (positive: the peer's clock
// is behind, or all its recent messages came late).
type ClockSkew struct {
	PeerID       string `json:"peer_id"`
	OffsetMillis int64  `json:"offset_ms"`
}

// Cleared is the answer of "contacts.clear_requests".
type Cleared struct {
	Deleted int `json:"deleted"`
}

// ContactPath is how a contact is reached now.
type ContactPath struct {
	PeerID string `json:"peer_id"`
	Name   string `json:"name,omitempty"`
	Path   string `json:"path"`
}

// None is the params of methods that take none.
type None struct{}

func needPeer(p string) error {
	if strings.TrimSpace(p) == "" {
		return invalid(`no peer: give a peer ID or a contact's name in "peer"`)
	}
	return nil
}
