package node

import "time"

// Status is what a user needs to know whether the node is reachable and
// publishing.
type Status struct {
	PeerID          string    `json:"peer_id"`
	Addrs           []string  `json:"addrs"`
	Reachability    string    `json:"reachability"` // public, private or unknown
	ConnectedPeers  int       `json:"connected_peers"`
	RoutingTable    int       `json:"dht_routing_table"`
	Published       time.Time `json:"bundle_published,omitzero"`
	Replicas        int       `json:"bundle_replicas"`
	NextRepublish   time.Time `json:"next_republish,omitzero"`
	SecretsUnsealed bool      `json:"secrets_unsealed"`
}

// Status reports the node's state. Reachability stays "unknown" until
// AutoNAT has an answer (NAT traversal: issue 6).
func (n *Node) Status() (Status, error) {
	if err := n.running(); err != nil {
		return Status{}, err
	}
	st := Status{PeerID: n.id.String(), Reachability: "unknown",
		ConnectedPeers: len(n.host.Network().Peers()), RoutingTable: n.dht.RoutingTableSize(),
		SecretsUnsealed: !n.store.SecretsSealed()}
	for _, a := range n.Addrs() {
		st.Addrs = append(st.Addrs, a.String())
	}
	st.Published, st.Replicas = n.Published()
	if !st.Published.IsZero() {
		st.NextRepublish = st.Published.Add(n.cfg.republish())
	}
	return st, nil
}
