package node

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/dht"
	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/mailbox"
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
	// Reachability overrides AutoNAT's verdict: ReachabilityPublic for a
	// node known to be reachable, ReachabilityPrivate for one known to be
	// behind NAT (it then takes relay reservations at once). Empty or
	// ReachabilityAuto: AutoNAT decides.
	Reachability Reachability
	// NoPortMap turns off UPnP/NAT-PMP port mapping on the router. Tests
	// turn it off: it multicasts on the LAN.
	NoPortMap bool
	// RelayService makes the node a circuit relay v2 for others (and a
	// DHT server): for a node with a public address, so that peers behind
	// NAT can reach each other through it.
	RelayService bool
	// Mailbox makes the node a mailbox (docs/mailbox.md): it keeps
	// sealed deposits for the owners its operator admits, in
	// db.MailboxFileName in DataDir, and serves the DHT. For a node with
	// a public address: its owners' senders must reach it directly.
	Mailbox bool
	// MailboxLimits are the mailbox's limits; zero fields: the defaults.
	MailboxLimits MailboxLimits
	// DHTMode: DHTAuto (the default: a server once reachable), DHTServer
	// (for a reachable node, and for tests on loopback, where Auto stays
	// a client), DHTClient.
	DHTMode DHTMode

	// NoReadReceipts: do not tell contacts when the user read their
	// messages (theirs are still shown).
	NoReadReceipts bool

	// NoCreate makes New fail with ErrNoIdentity instead of creating an
	// identity and a store in a DataDir that has none: for tools that only
	// read, where a mistyped directory must not make a new identity.
	NoCreate bool

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

	// Test hooks, set by this package's tests on the Config they pass to
	// New. tap sees each envelope as it is written to the wire.
	// hostOptions are added to the host's (a connection gater that forces
	// a relayed path, a simulated network).
	// requestCap, handshakeRate and handshakeBurst replace the limits of
	// the same names (limits.go) when set, so that a test reaches them
	// with hundreds of strangers instead of thousands.
	tap                           func(id e2e.MessageID, envelope []byte)
	hostOptions                   []libp2p.Option
	requestCap                    int
	handshakeRate, handshakeBurst float64
	holdFor                       time.Duration    // replaces holdRetry
	relaysWanted                  int              // replaces relaysWanted (race_test.go says why)
	powBits                       uint8            // replaces mailbox.DefaultPowBits: a stranger's deposit in milliseconds
	mailboxNow                    func() time.Time // the mailbox role's clock
	// loseDepositReply, when it returns true, drops the answer to a
	// round of deposits as a lost connection would.
	loseDepositReply func() bool
	// afterPage runs after a page from a mailbox is committed, before it
	// is acknowledged.
	afterPage func()
}

// DHTMode is how the node takes part in the DHT.
type DHTMode string

const (
	DHTAuto   DHTMode = "auto"
	DHTServer DHTMode = "server"
	DHTClient DHTMode = "client"
)

func (m *DHTMode) UnmarshalText(b []byte) error {
	switch v := DHTMode(b); v {
	case "", DHTAuto, DHTServer, DHTClient:
		*m = v
		return nil
	}
	return fmt.Errorf("%w: DHT mode %q: want auto, server or client", ErrInvalidConfig, b)
}

func (m DHTMode) dht() dht.Mode {
	switch m {
	case DHTServer:
		return dht.ModeServer
	case DHTClient:
		return dht.ModeClient
	}
	return dht.ModeAuto
}

// Reachability is whether others can dial the node directly.
type Reachability string

const (
	ReachabilityAuto    Reachability = "auto"
	ReachabilityPublic  Reachability = "public"
	ReachabilityPrivate Reachability = "private"
	// ReachabilityUnknown: AutoNAT has no verdict yet (Status only).
	ReachabilityUnknown Reachability = "unknown"
)

func (r *Reachability) UnmarshalText(b []byte) error {
	switch v := Reachability(b); v {
	case "", ReachabilityAuto, ReachabilityPublic, ReachabilityPrivate:
		*r = v
		return nil
	}
	return fmt.Errorf("%w: reachability %q: want auto, public or private", ErrInvalidConfig, b)
}

// validate refuses a configuration that cannot work, with a sentence that
// names the field.
func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	for _, a := range c.ListenAddrs {
		if _, err := ma.NewMultiaddr(a); err != nil {
			bad("listen address %q: %v (want e.g. /ip4/0.0.0.0/tcp/4001)", a, err)
		}
	}
	for what, ais := range map[string][]peer.AddrInfo{"bootstrap peer": c.BootstrapPeers, "relay": c.Relays} {
		for _, ai := range ais {
			if err := ai.ID.Validate(); err != nil || len(ai.Addrs) == 0 {
				bad("%s %s: want a peer ID and at least one address", what, ai.ID)
			}
		}
	}
	if err := c.DHTMode.UnmarshalText([]byte(c.DHTMode)); err != nil {
		errs = append(errs, err)
	}
	if err := c.Reachability.UnmarshalText([]byte(c.Reachability)); err != nil {
		errs = append(errs, err)
	}
	for name, d := range map[string]time.Duration{"republish interval": c.RepublishInterval, "rotate interval": c.RotateInterval,
		"retry min": c.RetryMin, "retry max": c.RetryMax, "lookup timeout": c.LookupTimeout} {
		if d < 0 {
			bad("%s %v is negative", name, d)
		}
	}
	if c.retryMin() > c.retryMax() {
		bad("retry min %v is above retry max %v", c.retryMin(), c.retryMax())
	}
	if c.ConnLow < 0 || c.ConnHigh < 0 || c.connLow() > c.connHigh() {
		bad("connection watermarks low %d, high %d: want 0 <= low <= high", c.ConnLow, c.ConnHigh)
	}
	return errors.Join(errs...)
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func (c *Config) republish() time.Duration { return or(c.RepublishInterval, defaultRepublish) }
func (c *Config) rotate() time.Duration    { return or(c.RotateInterval, defaultRotate) }
func (c *Config) retryMin() time.Duration  { return or(c.RetryMin, defaultRetryMin) }
func (c *Config) retryMax() time.Duration  { return or(c.RetryMax, defaultRetryMax) }
func (c *Config) lookup() time.Duration    { return or(c.LookupTimeout, defaultLookup) }
func (c *Config) connLow() int             { return or(c.ConnLow, defaultConnLow) }
func (c *Config) connHigh() int            { return or(c.ConnHigh, defaultConnHigh) }
func (c *Config) maxRequests() int         { return or(c.requestCap, maxRequests) }
func (c *Config) relays() int              { return or(c.relaysWanted, relaysWanted) }
func (c *Config) mailboxPowBits() uint8    { return or(c.powBits, mailbox.DefaultPowBits) }
func (c *Config) holdRetry() time.Duration { return or(c.holdFor, holdRetry) }
func (c *Config) handshakes() (rate, burst float64) {
	return or(c.handshakeRate, handshakeRate), or(c.handshakeBurst, handshakeBurst)
}

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

// Exists reports whether dir holds a node's store.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, db.FileName))
	return err == nil
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
