package node

import (
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
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
	cs, err := n.Contacts()
	if err != nil {
		return st, err
	}
	for _, c := range cs {
		st.Contacts = append(st.Contacts, ContactPath{PeerID: c.PeerID, Name: c.Name, Path: c.Path})
	}
	st.Published, st.Replicas = n.Published()
	if !st.Published.IsZero() {
		st.NextRepublish = st.Published.Add(n.cfg.republish())
	}
	return st, nil
}
