package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/p2pmsg/p2pmsg/internal/api"
	"github.com/p2pmsg/p2pmsg/node"
)

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func cmdDaemon(e *env, args []string) error {
	fs := e.flags("daemon")
	var listen, bootstrap multiFlag
	fs.Var(&listen, "listen", "listen address (repeatable)")
	fs.Var(&bootstrap, "bootstrap", "bootstrap peer address (repeatable)")
	noMDNS := fs.Bool("no-mdns", false, "no discovery on the LAN")
	noPortMap := fs.Bool("no-port-map", false, "no UPnP/NAT-PMP port mapping on the router")
	var relays multiFlag
	fs.Var(&relays, "relay-via", "pin a relay to hold a reservation on when behind NAT (repeatable; connected relays are used without it)")
	relay := fs.Bool("relay", false, "serve as a circuit relay and DHT server (for a node with a public address)")
	mbox := fs.Bool("mailbox", false, "keep messages for the owners you admit while they are offline, and serve the DHT (for a node with a public address)")
	dhtMode := fs.String("dht-mode", "", "auto, server or client: the internet DHT's mode (the LAN DHT is served but with client)")
	reach := fs.String("reachability", "", "auto, public or private: override AutoNAT")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (default: the config's log_level, else info)")
	if _, err := e.parse(fs, args, 0, "p2pmsg daemon [--listen MULTIADDR]... [--bootstrap MULTIADDR]... [--relay-via MULTIADDR]... [--relay] [--mailbox] [--no-mdns] [--no-port-map] [--log-level LEVEL]"); err != nil {
		return err
	}
	if p := os.Getenv("P2PMSG_PASSPHRASE"); p != "" && e.passFD < 0 && e.passFile == "" && e.passPipe < 0 {
		if err := reexecWithoutPassphrase(p); err != nil {
			// Still here: no exec (no /proc, say). Run on, warned.
			fmt.Fprintf(e.stderr, "p2pmsg daemon: warning: %v; the passphrase stays readable in this process's environment\n", err)
		}
	}
	fc, err := e.loadConfig()
	if err != nil {
		return err
	}
	if len(listen) > 0 {
		fc.Listen = listen
	}
	fc.Bootstrap = append(fc.Bootstrap, bootstrap...)
	if *noMDNS {
		f := false
		fc.MDNS = &f
	}
	if *dhtMode != "" {
		fc.DHTMode = *dhtMode
	}
	if *logLevel != "" {
		fc.LogLevel = *logLevel
	}
	fc.Relay = fc.Relay || *relay
	fc.Mailbox = fc.Mailbox || *mbox
	if *reach != "" {
		fc.Reachability = *reach
	}
	fc.Relays = append(fc.Relays, relays...)
	if *noPortMap {
		f := false
		fc.PortMap = &f
	}
	cfg, err := e.nodeConfig(fc)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if fc.LogLevel != "" {
		if err := level.UnmarshalText([]byte(fc.LogLevel)); err != nil {
			return fail(exitUsage, "log level %q: want debug, info, warn or error", fc.LogLevel)
		}
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	cfg.Logger = log
	n, err := openNode(e, cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The socket first: while the node starts (a DHT bootstrap can take
	// seconds), other commands talk to this daemon, which holds the store,
	// instead of waiting for the store's lock; what needs the network
	// answers "not started" until Start returns.
	ln, err := api.Listen(e.data)
	if err != nil {
		n.Close()
		return err
	}
	srv := api.NewServer(n, false)
	go srv.Serve(ln)
	if err := n.Start(ctx); err != nil {
		srv.Close()
		n.Close()
		return err
	}
	if !n.SecretsSealed() {
		log.Warn("the keys are stored unsealed: anyone who can read " + e.data + " can read them (set P2PMSG_PASSPHRASE before the first start to seal them)")
	}
	log.Info("ready", "peer_id", n.ID().String(), "addrs", fmt.Sprint(n.Addrs()), "socket", ln.Addr().String())
	<-ctx.Done()
	log.Info("stopping")
	srv.Close()
	return n.Close()
}

// reexecWithoutPassphrase runs the daemon again in this process (same
// PID) without $P2PMSG_PASSPHRASE in its environment, handing the
// passphrase over, byte for byte, on a pipe (the hidden --passphrase-pipe):
// a process's environment stays readable in /proc/PID/environ for its
// whole life, by its user and root, and os.Unsetenv does not change what
// the kernel shows there. It returns only if the exec fails.
func reexecWithoutPassphrase(p string) error {
	if len(p) > maxPassphrase {
		return fmt.Errorf("the passphrase is longer than %d bytes", maxPassphrase)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close() // if the exec fails
	// The passphrase fits the pipe's buffer (maxPassphrase is well below
	// it): written now, read after the exec by the new image, and gone
	// from the pipe once read.
	if _, err := io.WriteString(w, p); err != nil {
		w.Close()
		return err
	}
	w.Close()
	// The read end must survive the exec: no close-on-exec.
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, r.Fd(), syscall.F_SETFD, 0); errno != 0 {
		return fmt.Errorf("pass the passphrase on: %v", errno)
	}
	args := append([]string{os.Args[0], "--passphrase-pipe", strconv.Itoa(int(r.Fd()))}, os.Args[1:]...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "P2PMSG_PASSPHRASE=") {
			env = append(env, kv)
		}
	}
	return fmt.Errorf("run the daemon without the passphrase in its environment: %w", syscall.Exec("/proc/self/exe", args, env))
}

// lockWait is how long a command waits for a store that another p2pmsg
// process holds while no daemon answers on it: a read verb run while no
// daemon answered holds it for the instant of its read, and a daemon
// starting holds it before its socket is up. Either way the holder is
// gone, or answering, well within it.
const lockWait = 5 * time.Second

// newNodeWhenFree opens the store, waiting while another process holds
// it and no daemon answers on it (see lockWait). With a daemon answering,
// it returns node.ErrLocked at once: the caller talks to the daemon, or
// (a second daemon) stops.
func newNodeWhenFree(e *env, cfg node.Config) (*node.Node, error) {
	deadline := time.Now().Add(lockWait)
	for {
		n, err := node.New(cfg)
		if !errors.Is(err, node.ErrLocked) || time.Now().After(deadline) || daemonAnswers(e.data) {
			return n, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// daemonAnswers reports whether a daemon serves the data directory.
func daemonAnswers(dir string) bool {
	c, err := api.Dial(dir)
	if err != nil {
		return false
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = c.ID(ctx)
	return err == nil
}

// openNode opens the node's store, asking for the passphrase on a
// terminal when the store is sealed and none was given, and turns store
// errors into exit codes.
func openNode(e *env, cfg node.Config) (*node.Node, error) {
	if !node.Exists(cfg.DataDir) && !cfg.NoCreate && cfg.Passphrase == nil {
		// A new store: on a terminal, offer to seal its keys.
		p, err := newPassphrase(e)
		if err != nil {
			return nil, err
		}
		cfg.Passphrase = p
	}
	defer func() {
		// The store derived its key: no copy of the passphrase stays.
		clear(cfg.Passphrase)
		clear(e.pass)
		e.pass = nil
	}()
	n, err := newNodeWhenFree(e, cfg)
	if errors.Is(err, node.ErrPassphraseRequired) && cfg.Passphrase == nil {
		// Asked on the terminal: a typo gets another try or two.
		for try := 1; ; try++ {
			if cfg.Passphrase, err = promptPassphrase(e); err != nil {
				return nil, err
			}
			n, err = newNodeWhenFree(e, cfg)
			if !errors.Is(err, node.ErrWrongPassphrase) || try == maxPrompts {
				break
			}
			clear(cfg.Passphrase)
			fmt.Fprintln(e.stderr, "Wrong passphrase; try again.")
		}
	}
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, node.ErrNoIdentity):
		return nil, fail(exitNotFound, "no identity in %s: run `p2pmsg --data %s init`, or check --data / P2PMSG_DATA", e.data, e.data)
	case errors.Is(err, node.ErrLocked):
		return nil, fail(exitLocked, "%s is in use by another p2pmsg process (a daemon?): stop it, or talk to it with the other commands", e.data)
	case errors.Is(err, node.ErrPassphraseRequired), errors.Is(err, node.ErrWrongPassphrase):
		return nil, fail(exitPassphrase, "%v: check P2PMSG_PASSPHRASE (or unset it to be asked on a terminal)", err)
	}
	return nil, err
}
