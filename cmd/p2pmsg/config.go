package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/term"

	"github.com/p2pmsg/p2pmsg/node"
)

// fileConfig is config.toml; config.example.toml documents each key.
type fileConfig struct {
	Listen            []string `toml:"listen"`
	Bootstrap         []string `toml:"bootstrap"`
	MDNS              *bool    `toml:"mdns"`
	PortMap           *bool    `toml:"port_map"`
	Relays            []string `toml:"relays"`
	DHTMode           string   `toml:"dht_mode"`
	Relay             bool     `toml:"relay"`
	Mailbox           bool     `toml:"mailbox"`
	Reachability      string   `toml:"reachability"`
	LogLevel          string   `toml:"log_level"`
	RepublishInterval duration `toml:"republish_interval"`
	RetryMin          duration `toml:"retry_min"`
	RetryMax          duration `toml:"retry_max"`
	LookupTimeout     duration `toml:"lookup_timeout"`
	ConnLow           int      `toml:"conn_low"`
	ConnHigh          int      `toml:"conn_high"`
	ReadReceipts      *bool    `toml:"read_receipts"`
}

// duration reads "90s", "12h" in TOML.
type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) (err error) {
	d.Duration, err = time.ParseDuration(string(b))
	return err
}

func dataDir() (string, error) { return node.DefaultDataDir() }

// loadConfig reads the configuration file: --config, else DIR/config.toml
// if it exists; no file at all is the zero configuration.
func (e *env) loadConfig() (fileConfig, error) {
	var fc fileConfig
	path, explicit := e.configFile, e.configFile != ""
	if !explicit {
		path = filepath.Join(e.data, "config.toml")
	}
	md, err := toml.DecodeFile(path, &fc)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return fc, nil
	}
	if err != nil {
		return fc, fail(exitUsage, "config %s: %v", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return fc, fail(exitUsage, "config %s: unknown option %q (see config.example.toml)", path, und[0].String())
	}
	return fc, nil
}

// nodeConfig turns the file and the flags into a node.Config.
func (e *env) nodeConfig(fc fileConfig) (node.Config, error) {
	cfg := node.Config{DataDir: e.data, ListenAddrs: fc.Listen, RepublishInterval: fc.RepublishInterval.Duration,
		RetryMin: fc.RetryMin.Duration, RetryMax: fc.RetryMax.Duration, LookupTimeout: fc.LookupTimeout.Duration,
		ConnLow: fc.ConnLow, ConnHigh: fc.ConnHigh, RelayService: fc.Relay, Mailbox: fc.Mailbox}
	if fc.MDNS != nil && !*fc.MDNS {
		cfg.NoMDNS = true
	}
	if fc.PortMap != nil && !*fc.PortMap {
		cfg.NoPortMap = true
	}
	if fc.ReadReceipts != nil && !*fc.ReadReceipts {
		cfg.NoReadReceipts = true
	}
	var err error
	if cfg.Relays, err = peerAddrs("relay", fc.Relays); err != nil {
		return cfg, err
	}
	if cfg.BootstrapPeers, err = peerAddrs("bootstrap", fc.Bootstrap); err != nil {
		return cfg, err
	}
	// The node checks these (and the rest) in New.
	cfg.Reachability, cfg.DHTMode = node.Reachability(fc.Reachability), node.DHTMode(fc.DHTMode)
	pass, err := e.passphrase()
	if err != nil {
		return cfg, err
	}
	cfg.Passphrase = pass
	return cfg, nil
}

// peerAddrs reads peers' multiaddrs (with /p2p/PEER_ID).
func peerAddrs(what string, addrs []string) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for _, a := range addrs {
		ai, err := peer.AddrInfoFromString(a)
		if err != nil {
			return nil, fail(exitUsage, "%s address %q: %v (want /ip4/.../tcp/PORT/p2p/PEER_ID)", what, a, err)
		}
		out = append(out, *ai)
	}
	return out, nil
}

// passphrase reads the passphrase from --passphrase-fd, else
// --passphrase-file, else $P2PMSG_PASSPHRASE; else nothing (an unsealed
// store, or the store asks for one: see openNode). From a file or a
// descriptor it is everything up to the end, less one final line break
// ("\n" or "\r\n"); from the daemon's own pipe (reexecWithoutPassphrase),
// the bytes as they are.
func (e *env) passphrase() ([]byte, error) {
	if !e.passRead {
		p, err := e.readPassphrase()
		if err != nil {
			return nil, err
		}
		e.pass, e.passRead = p, true
	}
	return bytes.Clone(e.pass), nil
}

// readPassphrase reads the passphrase from where the flags or the
// environment say, once (a descriptor can be read once).
func (e *env) readPassphrase() ([]byte, error) {
	var f *os.File
	raw := false
	switch {
	case e.passPipe >= 0:
		f, raw = os.NewFile(uintptr(e.passPipe), "passphrase"), true
		e.passPipe = -1 // read once
	case e.passFD >= 0:
		f = os.NewFile(uintptr(e.passFD), "passphrase")
		e.passFD = -1 // read once: the store is opened again by some verbs
	case e.passFile != "":
		var err error
		if f, err = os.Open(e.passFile); err != nil {
			return nil, fail(exitPassphrase, "--passphrase-file: %v", err)
		}
	default:
		if p, ok := os.LookupEnv("P2PMSG_PASSPHRASE"); ok {
			return []byte(p), nil
		}
		return nil, nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPassphrase+1))
	if err != nil {
		return nil, fail(exitPassphrase, "read the passphrase: %v", err)
	}
	if len(b) > maxPassphrase {
		clear(b)
		return nil, fail(exitPassphrase, "the passphrase is longer than %d bytes", maxPassphrase)
	}
	p := b
	if !raw {
		p = bytes.TrimSuffix(p, []byte("\n"))
		p = bytes.TrimSuffix(p, []byte("\r"))
	}
	p = bytes.Clone(p)
	clear(b)
	return p, nil
}

// maxPassphrase bounds a passphrase: a mistyped path to a large file
// must not be read whole, and the daemon hands it to itself through a
// pipe's buffer (64 KiB on Linux).
const maxPassphrase = 16 << 10

// newPassphrase asks, on a terminal, for the passphrase of a new store
// (twice; empty: unsealed). Without a terminal the store is unsealed and
// says so.
func newPassphrase(e *env) ([]byte, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, nil
	}
	fmt.Fprint(e.stderr, "Passphrase to seal the keys of the new store (empty: store them unsealed): ")
	p, err := term.ReadPassword(fd)
	fmt.Fprintln(e.stderr)
	if err != nil || len(p) == 0 {
		return nil, err
	}
	fmt.Fprint(e.stderr, "Again: ")
	again, err := term.ReadPassword(fd)
	fmt.Fprintln(e.stderr)
	defer clear(again)
	if err != nil {
		return nil, err
	}
	if string(p) != string(again) {
		clear(p)
		return nil, fail(exitPassphrase, "the passphrases differ; nothing was created")
	}
	return p, nil
}

// promptPassphrase reads a passphrase from the terminal without echo.
func promptPassphrase(e *env) ([]byte, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, fail(exitPassphrase, "the store is sealed with a passphrase: set P2PMSG_PASSPHRASE or run on a terminal")
	}
	fmt.Fprint(e.stderr, "Passphrase: ")
	p, err := term.ReadPassword(fd)
	fmt.Fprintln(e.stderr)
	return p, err
}
