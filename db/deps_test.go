package db

import (
	"go/build"
	"strings"
	"testing"
)

// TestDependencies keeps db a store of rows and blobs (DESIGN §2): it must
// not import e2e, dht, node or libp2p, directly or through another
// package.
func TestDependencies(t *testing.T) {
	forbidden := []string{
		"github.com/p2pmsg/p2pmsg/e2e", "github.com/p2pmsg/p2pmsg/dht", "github.com/p2pmsg/p2pmsg/node",
		"github.com/libp2p/", "github.com/multiformats/",
	}
	seen := map[string]bool{}
	var walk func(path, dir string, chain []string)
	walk = func(path, dir string, chain []string) {
		if seen[path] {
			return
		}
		seen[path] = true
		pkg, err := build.Default.Import(path, dir, 0)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if pkg.Goroot {
			return
		}
		for _, f := range forbidden {
			if path == f || strings.HasPrefix(path, f) && strings.HasSuffix(f, "/") || strings.HasPrefix(path, f+"/") {
				t.Errorf("db imports %s (via %s)", path, strings.Join(chain, " -> "))
			}
		}
		for _, imp := range pkg.Imports {
			if imp == "C" {
				continue
			}
			walk(imp, pkg.Dir, append(chain, imp))
		}
	}
	walk("github.com/p2pmsg/p2pmsg/db", ".", []string{"db"})
	if !seen["github.com/mattn/go-sqlite3"] {
		t.Fatal("the walk did not reach the SQLite driver: it is not looking at db's imports")
	}
}
