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
	PeerID          string        `json:"peer_id"`
	Addrs           []string      `json:"addrs"`
	Reachability    string        `json:"reachability"`  // public, private or unknown (AutoNAT)
	RelayAddrs      []string      `json:"relay_addrs"`   // one per relay reservation
	HolePunching    bool          `json:"hole_punching"` // DCUtR is up: the node knows a public address of its own
	Contacts        []ContactPath `json:"contacts"`
	ConnectedPeers  int           `json:"connected_peers"`
	RoutingTable    int           `json:"dht_routing_table"`
	Published       time.Time     `json:"bundle_published,omitzero"`
	Replicas        int           `json:"bundle_replicas"`
	NextRepublish   time.Time     `json:"next_republish,omitzero"`
	SecretsUnsealed bool          `json:"secrets_unsealed"`
}

// ContactPath is how a contact is reached now.
type ContactPath struct {
	PeerID string `json:"peer_id"`
	Name   string `json:"name,omitempty"`
	Path   Path   `json:"path"`
}

// Status reports the node's state. Reachability stays "unknown" until
// AutoNAT has an answer.
func (n *Node) Status() (Status, error) {
	if err := n.running(); err != nil {
		return Status{}, err
	}
	st := Status{PeerID: n.id.String(), Reachability: n.reachability(), RelayAddrs: n.relayAddrs(),
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
		if p, err := peer.Decode(c.PeerID); err == nil {
			st.Contacts = append(st.Contacts, ContactPath{PeerID: c.PeerID, Name: c.Name, Path: n.Path(p)})
		}
	}
	st.Published, st.Replicas = n.Published()
	if !st.Published.IsZero() {
		st.NextRepublish = st.Published.Add(n.cfg.republish())
	}
	return st, nil
}
