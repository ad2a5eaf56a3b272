package node

import (
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"

	"github.com/p2pmsg/p2pmsg/db"
)

// Status is what a user needs to know whether the node is reachable and
// publishing.
type Status struct {
	PeerID          peer.ID
	Addrs           []string
	Reachability    Reachability // public, private or unknown (AutoNAT)
	RelayAddrs      []string     // one per relay reservation
	HolePunching    bool         // DCUtR is up: the node knows a public address of its own
	Contacts        []ContactPath
	ConnectedPeers  int
	RoutingTable    int       // peers in the DHT routing table
	Published       time.Time // the bundle's last publication; zero: not yet
	Replicas        int       // peers that stored it then
	NextRepublish   time.Time
	SecretsUnsealed bool
	// ClockSkews: peers whose messages show a clock more than a minute
	// away from ours (clock.go): one of the two clocks is wrong, and
	// conversations with them sort out of order.
	ClockSkews []ClockSkew
	// Requests: pending contact requests.
	Requests int
	// Outbox: envelopes waiting for an acknowledgement or a receipt.
	Outbox int
	// NewSessionsPending: contacts a restored store has yet to start a
	// new session with (restore.go).
	NewSessionsPending int
	// Mailboxes: the mailboxes that keep our messages while we are
	// offline (mailboxes.go).
	Mailboxes []MailboxStatus
	// DHT: the node's part in the LAN and internet DHTs.
	DHT DHTStatus
	// Problems: what keeps others from finding or reaching the node, each
	// with what to do (diagnose.go); none when all is well.
	Problems []Problem
}

// ContactPath is how a contact is reached now.
type ContactPath struct {
	PeerID peer.ID
	Name   string
	Path   Path
}

// Status reports the node's state. Reachability stays unknown until
// AutoNAT has an answer.
func (n *Node) Status() (Status, error) {
	if err := n.running(); err != nil {
		return Status{}, err
	}
	st := Status{PeerID: n.id, Reachability: n.reachability(), RelayAddrs: n.relayAddrs(),
		ConnectedPeers: len(n.host.Network().Peers()), RoutingTable: n.dht.RoutingTableSize(),
		SecretsUnsealed: !n.store.SecretsSealed()}
	for _, a := range n.Addrs() {
		st.Addrs = append(st.Addrs, a.String())
	}
	st.HolePunching = slices.Contains(n.host.Mux().Protocols(), holepunch.Protocol)
	f := n.facts()
	st.DHT, st.Problems = f.DHTStatus, n.problems(f)
	cs, err := n.Contacts()
	if err != nil {
		return st, err
	}
	for _, c := range cs {
		if c.State != ContactAccepted {
			continue // requests are counted below, not listed
		}
		st.Contacts = append(st.Contacts, ContactPath{PeerID: c.PeerID, Name: c.Name, Path: c.Path})
	}
	st.ClockSkews = n.clockSkews(time.Now())
	n.store.View(func(r *db.ReadTx) (err error) {
		if st.Requests, err = r.RequestCount(); err != nil {
			return err
		}
		if st.Outbox, err = r.OutboxCount(); err != nil {
			return err
		}
		st.NewSessionsPending, err = pendingRehandshakes(r)
		return err
	})
	if st.Mailboxes, err = n.Mailboxes(); err != nil {
		return st, err
	}
	st.Published, st.Replicas = n.Published()
	if !st.Published.IsZero() {
		st.NextRepublish = st.Published.Add(n.cfg.republish())
	}
	return st, nil
}
