// Command p2pmsg is the p2pmsg messenger: a daemon, signal-cli-style
// verbs, a JSON-RPC API and a chat screen.
//
// None of it exists yet: this tree holds the cryptographic core (package
// e2e). The node, store and commands arrive with the issues that build
// them; until then the command says so and exits non-zero rather than
// pretend to run.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "p2pmsg: no node to run yet: only the cryptographic core (package e2e) is built.\n"+
		"Run the tests with: bash .ci/test   (see README.md)")
	os.Exit(1)
}
