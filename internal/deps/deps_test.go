package deps

import (
	"errors"
	"fmt"
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The import rules of the module, in the manner of the Go tree's
// go/build/deps_test.go: one table for the whole graph, checked by one test.
//
// A rule reads "pkgs < allow but not deny": the non-test Go files of each
// package in pkgs may import directly only what allow names, less what deny
// names. Test files are not checked. In allow and deny:
//
//   - std is the standard library (an import path whose first element has
//     no dot; "C", cgo, is not part of it);
//   - a WORD in capitals is a group below;
//   - a path whose first element has no dot is one of our packages,
//     relative to the module ("node" is github.com/p2pmsg/p2pmsg/node);
//     in deny, such a path is a standard-library package instead, since deny
//     only narrows std;
//   - "p/..." is p and every package below it, as in go list; any other
//     path is that one package only.
//
// Every package directory of the module must be named by exactly one rule:
// a new package without one fails the test until it gets one.
var rules = []rule{
	{
		pkgs:  "e2e",
		allow: "std, golang.org/x/crypto/...",
		deny:  "os/..., net/..., database/..., log/..., syscall/..., unsafe/..., io/fs/..., path/..., plugin/..., runtime/cgo/..., embed/...",
		why:   "the cryptographic core is pure: no I/O, network, files or logs, and no third party but x/crypto (docs/design.md §2)",
	},
	{
		pkgs:  "db",
		allow: "std, github.com/mattn/go-sqlite3/..., golang.org/x/crypto/...",
		why:   "the store keeps rows and blobs: it knows nothing of e2e, dht, node or libp2p (docs/design.md §2)",
	},
	{
		pkgs:  "dht",
		allow: "std, e2e, LIBP2P",
		why:   "the DHT publishes and looks up e2e bundles over libp2p; it reaches neither db nor node",
	},
	{
		pkgs:  "node/wire",
		allow: "std, e2e",
		why:   "the bytes of the message protocol: decoders fuzzed without building the store",
	},
	{
		pkgs:  "mailbox",
		allow: "std, e2e, db, node/wire, LIBP2P, golang.org/x/time/rate",
		why:   "the mailbox's protocols, server and client: the crypto of the seal and the certificates, its own store in db, node/wire's framing, libp2p streams (x/time/rate for its limits); it knows nothing of the node or the DHT",
	},
	{
		pkgs:  "node",
		allow: "std, e2e, db, dht, mailbox, node/wire, LIBP2P, golang.org/x/time/rate",
		why:   "the node joins the crypto, the store, the DHT, the mailbox and the network (x/time/rate: the limiter go-libp2p itself builds on, for the wake loop)",
	},
	{
		pkgs:  "internal/jsonrpc",
		allow: "std",
		why:   "the JSON-RPC framing is plain encoding, with nothing of ours",
	},
	{
		pkgs:  "internal/api",
		allow: "std, node, internal/jsonrpc, LIBP2P_TYPES",
		why:   "the daemon's API is served by the node: db, dht and e2e stay behind it",
	},
	{
		pkgs:  "internal/chat",
		allow: "std, internal/api, UI",
		why:   "the chat screen talks to the daemon through the API's types and a client it is given, never the node",
	},
	{
		pkgs:  "cmd/p2pmsg",
		allow: "std, internal/api, internal/chat, node, LIBP2P_TYPES, UI",
		why:   "the command reaches the node only through node and internal/api, never db or dht",
	},
	{
		pkgs:  "scripts/attack",
		allow: "std, e2e, node, node/wire, internal/api, LIBP2P",
		why:   "the attack bench is a peer from outside: e2e and the wire for its envelopes, raw libp2p hosts, node only for the protocol names; the victim's store it sees only through the API and the CLI",
	},
	{
		pkgs:  "scripts/rpcflood",
		allow: "std",
		why:   "a measuring tool: it drives the p2pmsg binary, a process of its own, over its socket",
	},
	{
		pkgs:  "scripts/dhtscale",
		allow: "std, node, dht, LIBP2P",
		why:   "the scale bench runs real nodes through node's exported API, and times lookups with a dht client on a libp2p host of its own, since node exports no lookup",
	},
	{
		pkgs:  "internal/deps",
		allow: "",
		why:   "this package holds no code, only the test of these rules",
	},
}

// groups are named sets of patterns, written in capitals in the rules.
var groups = map[string]string{
	// The libp2p family: the network stack of dht and node.
	"LIBP2P": "github.com/libp2p/go-libp2p/..., github.com/libp2p/go-libp2p-kad-dht/..., " +
		"github.com/libp2p/go-libp2p-record/..., github.com/libp2p/go-libp2p-kbucket/..., github.com/libp2p/go-yamux/..., " +
		"github.com/multiformats/..., github.com/ipfs/go-datastore/...",
	// The libp2p types that name a peer and an address, to parse and print them.
	"LIBP2P_TYPES": "github.com/libp2p/go-libp2p/core/peer, github.com/multiformats/go-multiaddr",
	// The terminal UI and configuration libraries of the command.
	"UI": "charm.land/..., github.com/charmbracelet/x/ansi, github.com/BurntSushi/toml/..., github.com/skip2/go-qrcode/..., golang.org/x/term/...",
}

type rule struct {
	pkgs  string // the packages the rule is for, comma-separated, relative to the module
	allow string // what they may import
	deny  string // what of the standard library they may not import all the same
	why   string // the reason, one line
}

func (r *rule) String() string {
	s := r.pkgs + " < " + r.allow
	if r.allow == "" {
		s += "(nothing)"
	}
	if r.deny != "" {
		s += " but not " + r.deny
	}
	return s + " (" + r.why + ")"
}

// compiled is a rule with its patterns expanded to full import paths.
type compiled struct {
	rule  *rule
	std   bool     // allow names std
	allow []string // full import paths or "p/..." patterns
	deny  []string
}

// compile expands the rules for the module modPath and indexes them by
// package, relative to the module.
func compile(modPath string, rules []rule) (map[string]*compiled, error) {
	byPkg := map[string]*compiled{}
	for i := range rules {
		r := &rules[i]
		if r.why == "" {
			return nil, fmt.Errorf("rule %q has no reason", r.pkgs)
		}
		c := &compiled{rule: r}
		for _, p := range split(r.allow) {
			switch {
			case p == "std":
				c.std = true
			case p == "C":
				c.allow = append(c.allow, p)
			case groups[p] != "":
				for _, g := range split(groups[p]) {
					c.allow = append(c.allow, full(modPath, g))
				}
			case strings.ToUpper(p) == p && !strings.ContainsAny(p, "./"):
				return nil, fmt.Errorf("rule %q names group %s, which does not exist", r.pkgs, p)
			default:
				c.allow = append(c.allow, full(modPath, p))
			}
		}
		for _, p := range split(r.deny) {
			if !isStd(strings.TrimSuffix(p, "/...")) {
				return nil, fmt.Errorf("rule %q denies %s, which is not in the standard library", r.pkgs, p)
			}
			c.deny = append(c.deny, p)
		}
		for _, p := range split(r.pkgs) {
			if byPkg[p] != nil {
				return nil, fmt.Errorf("package %s has two rules", p)
			}
			byPkg[p] = c
		}
	}
	return byPkg, nil
}

func split(list string) []string {
	var out []string
	for p := range strings.SplitSeq(list, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// full makes a pattern naming one of our packages a full import path.
func full(modPath, p string) string {
	if noDot(p) {
		return modPath + "/" + p
	}
	return p
}

// isStd reports whether path is in the standard library, as cmd/go decides
// it: its first element has no dot. "C" (cgo) is not.
func isStd(path string) bool {
	return path != "C" && noDot(path)
}

func noDot(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

func match(pattern, path string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == prefix || strings.HasPrefix(path, prefix+"/")
	}
	return path == pattern
}

// check reads the direct imports of the non-test Go files of every package
// of the module rooted at root, whose path is modPath, from source with
// go/build (no compiling, so it works on a tree that does not build), and
// returns the packages it found, relative to the module, and one message
// per rule broken.
func check(root, modPath string, rules []rule) (pkgs, problems []string) {
	byPkg, err := compile(modPath, rules)
	if err != nil {
		return nil, []string{err.Error()}
	}
	ctxt := build.Default
	err = filepath.WalkDir(root, func(dir string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if dir != root {
			if name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
		}
		pkg, err := ctxt.ImportDir(dir, 0)
		if _, ok := errors.AsType[*build.NoGoError](err); ok {
			return nil // not a package
		}
		rel, _ := filepath.Rel(root, dir)
		rel = filepath.ToSlash(rel)
		pkgs = append(pkgs, rel)
		if err != nil {
			// go/build still lists the imports of the files it could read.
			problems = append(problems, fmt.Sprintf("%s: cannot read all its imports: %v", rel, err))
		}
		c := byPkg[rel]
		if c == nil {
			problems = append(problems, fmt.Sprintf("%s has no import rule: add a rule for it to the table in internal/deps/deps_test.go", rel))
			return nil
		}
		for _, imp := range pkg.Imports {
			var verb string
			switch {
			case slices.ContainsFunc(c.deny, func(p string) bool { return match(p, imp) }):
				verb = "denies"
			case c.std && isStd(imp), slices.ContainsFunc(c.allow, func(p string) bool { return match(p, imp) }):
				continue
			default:
				verb = "does not allow"
			}
			var where []string
			for _, pos := range pkg.ImportPos[imp] {
				file, _ := filepath.Rel(root, pos.Filename)
				where = append(where, fmt.Sprintf("%s:%d", filepath.ToSlash(file), pos.Line))
			}
			problems = append(problems, fmt.Sprintf("%s imports %s (%s), which its rule %s:\n\t%v",
				rel, imp, strings.Join(where, ", "), verb, c.rule))
		}
		return nil
	})
	if err != nil {
		problems = append(problems, err.Error())
	}
	return pkgs, problems
}

// moduleRoot finds the go.mod above the test's directory and returns its
// directory and module path.
func moduleRoot(t *testing.T) (root, modPath string) {
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			for line := range strings.SplitSeq(string(data), "\n") {
				if p, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
					return dir, strings.Trim(strings.TrimSpace(p), `"`)
				}
			}
			t.Fatalf("%s/go.mod has no module line", dir)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// TestImportRules checks the whole module against the table.
func TestImportRules(t *testing.T) {
	root, modPath := moduleRoot(t)
	pkgs, problems := check(root, modPath, rules)
	// The walk must see the module, not an empty directory.
	for _, want := range []string{"e2e", "internal/deps"} {
		if !slices.Contains(pkgs, want) {
			t.Fatalf("the walk of %s found %v, not %s: it is not looking at the module", root, pkgs, want)
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// TestRulesCatchAViolation runs the checker and the real table on a fake
// module: the checker must report what the rules forbid, and only that.
func TestRulesCatchAViolation(t *testing.T) {
	const modPath = "github.com/p2pmsg/p2pmsg"
	root := t.TempDir()
	files := map[string]string{
		"go.mod": "module " + modPath + "\n",
		"e2e/e2e.go": `package e2e

import (
	"crypto/sha256"
	"net/http"
	"os"

	"github.com/p2pmsg/p2pmsg/db"
	"golang.org/x/crypto/chacha20poly1305"
)
`,
		// Test files are not checked.
		"e2e/e2e_test.go": "package e2e\n\nimport _ \"github.com/p2pmsg/p2pmsg/node\"\n",
		"db/db.go":        "package db\n\nimport _ \"github.com/mattn/go-sqlite3\"\n",
		"cmd/p2pmsg/main.go": `package main

import (
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pmsg/p2pmsg/dht"
	"github.com/p2pmsg/p2pmsg/internal/api"
)
`,
		"newpkg/new.go": "package newpkg\n",
		// Neither testdata nor hidden directories are packages of the module.
		"e2e/testdata/x.go": "package x\n\nimport _ \"github.com/p2pmsg/p2pmsg/db\"\n",
		".hidden/x.go":      "package x\n",
		"nested/go.mod":     "module example.com/nested\n",
		"nested/x.go":       "package x\n",
	}
	for name, text := range files {
		path := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	pkgs, problems := check(root, modPath, rules)
	if want := []string{"cmd/p2pmsg", "db", "e2e", "newpkg"}; !slices.Equal(pkgs, want) {
		t.Errorf("packages found: %v, want %v", pkgs, want)
	}
	want := []string{
		"cmd/p2pmsg imports github.com/p2pmsg/p2pmsg/dht (cmd/p2pmsg/main.go:5), which its rule does not allow",
		"e2e imports github.com/p2pmsg/p2pmsg/db (e2e/e2e.go:8), which its rule does not allow",
		"e2e imports net/http (e2e/e2e.go:5), which its rule denies",
		"e2e imports os (e2e/e2e.go:6), which its rule denies",
		"newpkg has no import rule: add a rule for it",
	}
	var got []string
	for _, p := range problems {
		got = append(got, p)
		if !strings.Contains(p, "\n\t") && !strings.Contains(p, "no import rule") {
			t.Errorf("message does not quote the rule: %s", p)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, w) }) {
			t.Errorf("no problem reported starting %q; got:\n%s", w, strings.Join(got, "\n"))
		}
	}
	if !slices.ContainsFunc(got, func(g string) bool {
		return strings.HasPrefix(g, "e2e imports github.com/p2pmsg/p2pmsg/db") && strings.Contains(g, "\te2e < std, golang.org/x/crypto/...")
	}) {
		t.Errorf("the e2e violation does not name e2e's rule; got:\n%s", strings.Join(got, "\n"))
	}
}

// TestRulesCompile checks the table itself: every group it names exists,
// every rule has a reason, no package has two rules.
func TestRulesCompile(t *testing.T) {
	if _, err := compile("github.com/p2pmsg/p2pmsg", rules); err != nil {
		t.Fatal(err)
	}
}
