package node

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/dht"
)

// Config configures a node. The zero value works: a store in the user's
// data directory, random ports on every interface, no bootstrap peers
// (the LAN through mDNS only).
type Config struct {
	// DataDir holds the store; empty means DefaultDataDir().
	DataDir string
	// Passphrase seals the secrets in the store (see db.Options).
	Passphrase []byte

	// ListenAddrs are multiaddrs to listen on; empty means TCP and
	// QUIC-v1 on random ports of every IPv4 and IPv6 interface.
	ListenAddrs []string
	// BootstrapPeers are DHT peers to join through.
	BootstrapPeers []peer.AddrInfo
	// NoMDNS turns off discovery on the LAN. Tests turn it off: mDNS
	// sends multicast beyond loopback.
	NoMDNS bool
	// Relays are circuit relay v2 nodes to hold reservations on when this
	// node is not reachable from the internet (AutoRelay): peers then
	// reach it through them, and DCUtR upgrades to a direct connection
	// where the NATs allow.
	Relays []peer.AddrInfo
	// Reachability overrides AutoNAT's verdict: network.ReachabilityPublic
	// for a node known to be reachable, ReachabilityPrivate for one known
	// to be behind NAT (it then takes relay reservations at once). Zero:
	// AutoNAT decides.
	Reachability network.Reachability
	// NoPortMap turns off UPnP/NAT-PMP port mapping on the router. Tests
	// turn it off: it multicasts on the LAN.
	NoPortMap bool
	// RelayService makes the node a circuit relay v2 for others (and a
	// DHT server): for a node with a public address, so that peers behind
	// NAT can reach each other through it.
	RelayService bool
	// DHTMode: dht.ModeAuto (a server once reachable), ModeServer (for a
	// reachable node, and for tests on loopback, where Auto stays a
	// client), ModeClient.
	DHTMode dht.Mode

	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger

	// RepublishInterval: how often the bundle is published again; zero
	// means 12 h (the DHT drops records after 48 h).
	RepublishInterval time.Duration
	// RotateInterval: the age at which signed prekeys are replaced; zero
	// means 7 days.
	RotateInterval time.Duration
	// RetryMin and RetryMax bound the backoff between delivery attempts
	// of a queued message; zero means 1 s and 5 min.
	RetryMin, RetryMax time.Duration
	// LookupTimeout bounds a DHT lookup; zero means 10 s.
	LookupTimeout time.Duration
	// ConnLow and ConnHigh are the connection manager's watermarks; zero
	// means 64 and 256.
	ConnLow, ConnHigh int
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func (c *Config) republish() time.Duration { return or(c.RepublishInterval, 12*time.Hour) }
func (c *Config) rotate() time.Duration    { return or(c.RotateInterval, 7*24*time.Hour) }
func (c *Config) retryMin() time.Duration  { return or(c.RetryMin, time.Second) }
func (c *Config) retryMax() time.Duration  { return or(c.RetryMax, 5*time.Minute) }
func (c *Config) lookup() time.Duration    { return or(c.LookupTimeout, 10*time.Second) }

func (c *Config) listenAddrs() []string {
	if len(c.ListenAddrs) > 0 {
		return c.ListenAddrs
	}
	return []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1", "/ip6/::/tcp/0", "/ip6/::/udp/0/quic-v1"}
}

func (c *Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// DefaultDataDir is $P2PMSG_DATA, else $XDG_DATA_HOME/p2pmsg, else
// ~/.local/share/p2pmsg.
func DefaultDataDir() (string, error) {
	if d := os.Getenv("P2PMSG_DATA"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "p2pmsg"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", errors.New("node: no data directory: set P2PMSG_DATA or HOME")
	}
	return filepath.Join(home, ".local", "share", "p2pmsg"), nil
}
