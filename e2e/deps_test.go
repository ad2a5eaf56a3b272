package e2e

import (
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestDependencies keeps e2e pure (STYLE rule 2): it may import only the
// standard library and golang.org/x/crypto, and of the standard library
// nothing that reaches the network, files, processes or logs. Nor may it
// start goroutines or read the clock.
func TestDependencies(t *testing.T) {
	pkg, err := build.Default.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkg.Imports) == 0 {
		t.Fatal("no imports found: the test is not looking at the package")
	}
	forbidden := []string{"os", "net", "database", "log", "syscall", "unsafe", "io/fs", "path", "plugin", "runtime/cgo", "embed"}
	for _, imp := range pkg.Imports {
		if strings.HasPrefix(imp, "golang.org/x/crypto/") {
			continue
		}
		std, err := build.Default.Import(imp, "", build.FindOnly)
		if err != nil || !std.Goroot {
			t.Errorf("e2e imports %s, outside the standard library and golang.org/x/crypto", imp)
			continue
		}
		for _, f := range forbidden {
			if imp == f || strings.HasPrefix(imp, f+"/") {
				t.Errorf("e2e imports %s: it must stay free of I/O", imp)
			}
		}
	}

	fset := token.NewFileSet()
	for _, name := range pkg.GoFiles {
		file, err := parser.ParseFile(fset, filepath.Join(pkg.Dir, name), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GoStmt:
				t.Errorf("%s: e2e starts a goroutine", fset.Position(n.Pos()))
			case *ast.SelectorExpr:
				if id, ok := n.X.(*ast.Ident); ok && id.Name == "time" && (n.Sel.Name == "Now" || n.Sel.Name == "Since" || n.Sel.Name == "Until") {
					t.Errorf("%s: e2e reads the clock; take the time as a parameter", fset.Position(n.Pos()))
				}
			}
			return true
		})
	}
}
