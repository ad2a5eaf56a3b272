package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/p2pmsg/p2pmsg/internal/api"
	"github.com/p2pmsg/p2pmsg/node"
)

// The NAT lab (docs/design.md §9): network namespaces that this test creates and
// removes. An "internet" bridge (7.0.0.0/24, public-looking addresses that
// exist only inside these namespaces, with no route out) holds a relay and
// bootstrap node and the WAN side of two routers; each router masquerades
// a LAN (10.0.x.0/24) with one p2pmsg node on it, forwards LAN→WAN and
// established traffic back, and drops everything else addressed to it.

type lab struct {
	t      *testing.T
	prefix string
	nss    []string
	procs  []*exec.Cmd
}

func (l *lab) ns(name string) string { return l.prefix + name }

func (l *lab) sh(ns string, args ...string) {
	l.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns(ns)}, args...)...)
	if ns == "" {
		cmd = exec.Command(args[0], args[1:]...)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("lab: %s %v: %v\n%s", ns, args, err, out)
	}
}

// needLab skips, saying why, where the lab cannot be built.
func needLab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("NAT lab: needs root to create network namespaces (CI runs as root; run `sudo go test -run NATLab ./cmd/p2pmsg`)")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("NAT lab: %s not installed (apt-get install iproute2 nftables; .ci/run does)", tool)
		}
	}
}

// newLab builds the namespaces; symmetricB makes B's router a symmetric
// NAT (masquerade random).
func newLab(t *testing.T, symmetricB bool) *lab {
	needLab(t)
	l := &lab{t: t, prefix: fmt.Sprintf("p2pl%d", os.Getpid()%100000)}
	t.Cleanup(l.teardown)
	for _, n := range []string{"inet", "relay", "pub", "ra", "rb", "ha", "hb"} {
		l.sh("", "ip", "netns", "add", l.ns(n))
		l.nss = append(l.nss, l.ns(n))
		l.sh(n, "ip", "link", "set", "lo", "up")
	}
	l.sh("inet", "ip", "link", "add", "br0", "type", "bridge")
	l.sh("inet", "ip", "link", "set", "br0", "up")
	// veth pairs onto the bridge: relay, and the routers' WAN sides.
	for _, w := range []struct{ ns, addr string }{{"relay", "7.0.0.100/24"}, {"pub", "7.0.0.101/24"}, {"ra", "7.0.0.1/24"}, {"rb", "7.0.0.2/24"}} {
		l.sh("inet", "ip", "link", "add", "to"+w.ns, "type", "veth", "peer", "name", "wan", "netns", l.ns(w.ns))
		l.sh("inet", "ip", "link", "set", "to"+w.ns, "master", "br0", "up")
		l.sh(w.ns, "ip", "addr", "add", w.addr, "dev", "wan")
		l.sh(w.ns, "ip", "link", "set", "wan", "up")
	}
	// More public addresses in "pub": go-libp2p believes an observed
	// address of ours only once four peers with distinct IPs report it
	// (observedaddrs.ActivationThresh), and hole punching starts only
	// with one. On the internet a node meets that many in its DHT.
	for i := 102; i <= 104; i++ {
		l.sh("pub", "ip", "addr", "add", fmt.Sprintf("7.0.0.%d/24", i), "dev", "wan")
	}
	for _, side := range []struct {
		router, host, net string
		symmetric         bool
	}{{"ra", "ha", "10.0.1", false}, {"rb", "hb", "10.0.2", symmetricB}} {
		l.sh(side.router, "ip", "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", l.ns(side.host))
		l.sh(side.router, "ip", "addr", "add", side.net+".1/24", "dev", "lan")
		l.sh(side.router, "ip", "link", "set", "lan", "up")
		l.sh(side.host, "ip", "addr", "add", side.net+".2/24", "dev", "eth0")
		l.sh(side.host, "ip", "link", "set", "eth0", "up")
		l.sh(side.host, "ip", "route", "add", "default", "via", side.net+".1")
		l.sh(side.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		masq := "masquerade"
		if side.symmetric {
			masq = "masquerade random"
		}
		rules := `
table inet nat {
	chain post { type nat hook postrouting priority 100; oifname "wan" ` + masq + `; }
}
table inet filter {
	chain input { type filter hook input priority 0; policy drop; iifname "lo" accept; ct state established,related accept; }
	chain forward { type filter hook forward priority 0; policy drop; iifname "lan" oifname "wan" accept; ct state established,related accept; }
}
`
		cmd := exec.Command("ip", "netns", "exec", l.ns(side.router), "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("lab: nft rules: %v\n%s", err, out)
		}
	}
	return l
}

func (l *lab) teardown() {
	for _, p := range l.procs {
		if p.ProcessState == nil {
			p.Process.Kill()
			p.Wait()
		}
	}
	for _, n := range l.nss {
		exec.Command("ip", "netns", "del", n).Run()
	}
}

// daemon starts p2pmsg daemon inside a namespace and waits for its API.
func (l *lab) daemon(ns, dir string, args ...string) (*exec.Cmd, api.Identity) {
	l.t.Helper()
	full := append([]string{"netns", "exec", l.ns(ns), "env", "P2PMSG_TEST_AS_CLI=1", "P2PMSG_PASSPHRASE=", os.Args[0], "--data", dir, "daemon",
		"--no-mdns", "--no-port-map"}, args...)
	cmd := exec.Command("ip", full...)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.procs = append(l.procs, cmd)
	l.t.Cleanup(func() {
		if l.t.Failed() {
			l.t.Logf("daemon %s (%s) log:\n%s", dir, ns, logs.String())
		}
	})
	r, err := waitAPI(dir, 30*time.Second)
	if err != nil {
		l.t.Fatalf("daemon in %s: %v\n%s", ns, err, logs.String())
	}
	return cmd, r
}

func stop(cmd *exec.Cmd) {
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
}

// pathTo asks a daemon how it reaches a contact.
func pathTo(t *testing.T, dir, peerID string) string {
	c, err := api.Dial(dir)
	if err != nil {
		return "no daemon"
	}
	defer c.Close()
	cs, err := c.Contacts(context.Background())
	if err != nil {
		return err.Error()
	}
	for _, x := range cs {
		if x.PeerID == peerID {
			return x.Path
		}
	}
	return "not a contact"
}

func sendWait(t *testing.T, dir, to, text string) time.Duration {
	t.Helper()
	c, err := api.Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Send(context.Background(), api.SendParams{Peer: to, Text: text, Wait: true, Timeout: "60s"}); err != nil {
		t.Fatalf("send %q from %s: %v", text, dir, err)
	}
	return time.Since(start)
}

func waitPath(t *testing.T, dir, peerID string, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		p := pathTo(t, dir, peerID)
		for _, w := range want {
			if p == w {
				return p
			}
		}
		if time.Now().After(deadline) {
			var st api.Status
			if c, err := api.Dial(dir); err == nil {
				st, _ = c.Status(context.Background())
				c.Close()
			}
			t.Fatalf("path to %s stays %q, want %v; status of %s: %v", peerID, p, want, dir, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitHolePunching(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st api.Status
		if c, err := api.Dial(dir); err == nil {
			st, _ = c.Status(context.Background())
			c.Close()
		}
		if st.HolePunching {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: hole punching not up after 30 s", dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s in %v", what, timeout)
		}
	}
}

func labListen(transport string) []string {
	if transport == "quic" {
		return []string{"--listen", "/ip4/0.0.0.0/udp/4001/quic-v1"}
	}
	return []string{"--listen", "/ip4/0.0.0.0/tcp/4001"}
}

func relayListen(transport string) []string {
	if transport == "quic" {
		return []string{"--listen", "/ip4/7.0.0.100/udp/4001/quic-v1"}
	}
	return []string{"--listen", "/ip4/7.0.0.100/tcp/4001"}
}

// publicNodes starts four DHT servers on distinct public addresses: the
// observers a NATed node needs before it trusts its public address.
func (l *lab) publicNodes(dir, transport string, boot string) []string {
	var addrs []string
	for i := 101; i <= 104; i++ {
		listen := fmt.Sprintf("/ip4/7.0.0.%d/tcp/4001", i)
		if transport == "quic" {
			listen = fmt.Sprintf("/ip4/7.0.0.%d/udp/4001/quic-v1", i)
		}
		_, r := l.daemon("pub", fmt.Sprintf("%s/pub%d", dir, i), "--listen", listen, "--dht-mode", "server", "--bootstrap", boot)
		addrs = append(addrs, r.Addrs[0])
	}
	return addrs
}

// natArgs are the daemon flags of a NATed node.
func natArgs(transport, relay string, public []string) []string {
	args := append(labListen(transport), "--bootstrap", relay, "--relay-via", relay, "--reachability", "private")
	for _, p := range public {
		args = append(args, "--bootstrap", p)
	}
	return args
}

// natedPair builds the lab (symmetricB: B's NAT is symmetric) with a
// relay, the public nodes and a daemon behind each NAT, and waits until
// both can hole-punch: DCUtR must be up before a relayed connection
// arrives (go-libp2p starts it once a public address is known).
func natedPair(t *testing.T, transport string, symmetricB bool) (dir string, relay *exec.Cmd, a, b api.Identity) {
	l := newLab(t, symmetricB)
	dir = t.TempDir()
	relay, r := l.daemon("relay", dir+"/relay", append(relayListen(transport), "--relay")...)
	boot := r.Addrs[0]
	nat := natArgs(transport, boot, l.publicNodes(dir, transport, boot))
	_, a = l.daemon("ha", dir+"/a", nat...)
	_, b = l.daemon("hb", dir+"/b", nat...)
	waitHolePunching(t, dir+"/a")
	waitHolePunching(t, dir+"/b")
	// They know each other (a stranger gets one message through until
	// accepted, and these tests send more).
	for _, p := range [][2]string{{dir + "/a", b.PeerID}, {dir + "/b", a.PeerID}} {
		c, err := api.Dial(p[0])
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.AddContact(context.Background(), api.ContactParams{Peer: p[1]})
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir, relay, a, b
}

// Case 1: the NATed nodes meet through the relay, the connection is
// upgraded to a direct one (hole punching), and messages flow both ways,
// also after the relay is gone.
func TestNATLabHolePunch(t *testing.T) {
	for _, transport := range []string{"tcp", "quic"} {
		t.Run(transport, func(t *testing.T) {
			dir, relay, a, b := natedPair(t, transport, false)
			t0 := time.Now()
			first := sendWait(t, dir+"/a", b.PeerID, "hello through the NATs")
			t.Logf("%s: first message delivered %v after both nodes were up (send took %v)", transport, time.Since(t0).Round(time.Millisecond), first.Round(time.Millisecond))
			path := waitPath(t, dir+"/a", b.PeerID, "hole-punched", "direct")
			t.Logf("%s: path %s after %v", transport, path, time.Since(t0).Round(time.Millisecond))
			// The event stream reported the move to a direct path.
			waitFor(t, 10*time.Second, "a connectivity event with the direct path", func() bool {
				c, err := api.Dial(dir + "/a")
				if err != nil {
					return false
				}
				defer c.Close()
				page, _ := c.Events(context.Background(), api.EventsParams{Kinds: []string{string(node.EventConnectivity)}})
				for _, e := range page.Events {
					if e.Peer == b.PeerID && (e.Path == "hole-punched" || e.Path == "direct") {
						return true
					}
				}
				return false
			})
			// `p2pmsg status` of a NATed node: private, its reservation,
			// the path to its contact.
			c, err := api.Dial(dir + "/a")
			if err != nil {
				t.Fatal(err)
			}
			st, err := c.Status(context.Background())
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			if st.Reachability != "private" || len(st.RelayAddrs) == 0 || !strings.Contains(st.RelayAddrs[0], "/p2p-circuit") ||
				len(st.Contacts) != 1 || st.Contacts[0].PeerID != b.PeerID || st.Contacts[0].Path != path {
				t.Fatalf("status of a NATed node: %+v", st)
			}
			stop(relay)
			sendWait(t, dir+"/a", b.PeerID, "the relay is gone")
			sendWait(t, dir+"/b", a.PeerID, "still here")
			if p := pathTo(t, dir+"/b", a.PeerID); p != "hole-punched" && p != "direct" {
				t.Fatalf("b's path to a after the relay stopped: %s", p)
			}
		})
	}
}

// Case 2: B behind a symmetric NAT: hole punching cannot work; messages
// flow through the relay and the path is reported as relayed.
func TestNATLabSymmetric(t *testing.T) {
	for _, transport := range []string{"tcp", "quic"} {
		t.Run(transport, func(t *testing.T) {
			dir, _, a, b := natedPair(t, transport, true)
			t0 := time.Now()
			sendWait(t, dir+"/a", b.PeerID, "hello, symmetric B")
			t.Logf("%s: first message through the relay delivered %v after both nodes were up", transport, time.Since(t0).Round(time.Millisecond))
			sendWait(t, dir+"/b", a.PeerID, "hello, A")
			time.Sleep(5 * time.Second) // time for a hole punch to fail
			if p := pathTo(t, dir+"/a", b.PeerID); p != "relayed" {
				t.Fatalf("path to the symmetric-NAT node: %s, want relayed", p)
			}
			sendWait(t, dir+"/a", b.PeerID, "still through the relay")
		})
	}
}

// Case 3: the relay is down when the first message is sent: the message
// stays queued, and is delivered once the relay is back.
func TestNATLabRelayDown(t *testing.T) {
	l := newLab(t, false)
	dir := t.TempDir()
	relay, r := l.daemon("relay", dir+"/relay", append(relayListen("tcp"), "--relay")...)
	boot := r.Addrs[0]
	nat := natArgs("tcp", boot, l.publicNodes(dir, "tcp", boot))
	for _, d := range []string{"a", "b"} {
		os.MkdirAll(dir+"/"+d, 0o700)
		os.WriteFile(dir+"/"+d+"/config.toml", []byte("retry_min = \"200ms\"\nretry_max = \"2s\"\n"), 0o600)
	}
	l.daemon("ha", dir+"/a", nat...)
	_, b := l.daemon("hb", dir+"/b", nat...)
	stop(relay)
	c, err := api.Dial(dir + "/a")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Send(ctx, api.SendParams{Peer: b.PeerID, Text: "sent while the relay is down"}); err != nil {
		t.Fatalf("send with the relay down: %v (the bundle comes from the DHT's public nodes)", err)
	}
	time.Sleep(3 * time.Second)
	h, err := c.History(ctx, api.HistoryParams{Peer: b.PeerID})
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 1 || (h[0].State != "queued" && h[0].State != "sent") {
		t.Fatalf("with the relay down the message is %+v, want queued", h)
	}
	t0 := time.Now()
	l.daemon("relay", dir+"/relay", append(relayListen("tcp"), "--relay")...)
	deadline := time.Now().Add(90 * time.Second)
	for {
		h, _ = c.History(ctx, api.HistoryParams{Peer: b.PeerID})
		if len(h) == 1 && h[0].State == "delivered" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered 90 s after the relay came back: %+v", h)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("delivered %v after the relay came back", time.Since(t0).Round(time.Millisecond))
}
