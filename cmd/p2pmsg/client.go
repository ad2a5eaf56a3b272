package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/p2pmsg/p2pmsg/internal/api"
	"github.com/p2pmsg/p2pmsg/node"
)

// connect returns a client of the API: the daemon's, over its socket, or
// with offline, when no daemon runs, the same API served in this process
// over the store (the verbs that read work without a daemon; the others
// answer that none runs). close releases it.
func (e *env) connect(offline bool) (c *api.Client, close func(), err error) {
	if c, err := api.Dial(e.data); err == nil {
		return c, c.Close, nil
	} else if !offline {
		return nil, nil, err
	}
	n, err := e.openStore(false)
	if err != nil && exitCodeOf(err) == exitLocked {
		// A daemon started meanwhile: it holds the store, and answers.
		if c, err := api.Dial(e.data); err == nil {
			return c, c.Close, nil
		}
	}
	if err != nil {
		return nil, nil, err
	}
	c = api.Offline(n)
	return c, func() { c.Close(); n.Close() }, nil
}

// do runs f with a client of the API (see connect).
func (e *env) do(offline bool, f func(ctx context.Context, c *api.Client) error) error {
	c, close, err := e.connect(offline)
	if err != nil {
		return err
	}
	defer close()
	return f(context.Background(), c)
}

// openStore opens the node's store without starting it; only init and
// daemon may create one (a typo in --data must not make a new identity).
func (e *env) openStore(create bool) (*node.Node, error) {
	fc, err := e.loadConfig()
	if err != nil {
		return nil, err
	}
	cfg, err := e.nodeConfig(fc)
	if err != nil {
		return nil, err
	}
	cfg.NoCreate = !create
	return openNode(e, cfg)
}

// output prints v as JSON with --json, else with the function for people.
func (e *env) output(v any, people func()) error {
	if e.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	people()
	return nil
}

// exitCodeOf is the exit code of a verb's error: the command's own, or the
// API's code, which is the same number by design.
func exitCodeOf(err error) int {
	var ce *cliError
	if errors.As(err, &ce) {
		return ce.code
	}
	return api.CodeOf(err)
}

// name shows a contact by its name, else its peer ID.
func name(peerID, contactName string) string {
	if contactName != "" {
		return fmt.Sprintf("%s (%s)", printable(contactName, true), peerID)
	}
	return peerID
}
