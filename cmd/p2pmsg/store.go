package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/term"

	"github.com/p2pmsg/p2pmsg/internal/api"
	"github.com/p2pmsg/p2pmsg/node"
)

// Backup, restore and the passphrase.

// maxPrompts is how many times a mistyped passphrase is asked again.
const maxPrompts = 3

// ask reads a line without echo from the terminal; not on a terminal it
// is a usage error that says which flag gives the value instead.
func ask(e *env, prompt, instead string) ([]byte, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, fail(exitPassphrase, "not on a terminal: give %s", instead)
	}
	fmt.Fprint(e.stderr, prompt)
	p, err := term.ReadPassword(fd)
	fmt.Fprintln(e.stderr)
	return p, err
}

// askNew asks twice for a new passphrase; empty is allowed when
// emptyOK says what it means.
func askNew(e *env, what, instead, emptyOK string) ([]byte, error) {
	prompt := what + ": "
	if emptyOK != "" {
		prompt = what + " (empty: " + emptyOK + "): "
	}
	p, err := ask(e, prompt, instead)
	if err != nil {
		return nil, err
	}
	if len(p) == 0 {
		if emptyOK == "" {
			return nil, fail(exitPassphrase, "an empty passphrase: nothing done")
		}
		return p, nil
	}
	again, err := ask(e, "Again: ", instead)
	defer clear(again)
	if err != nil {
		clear(p)
		return nil, err
	}
	if !bytes.Equal(p, again) {
		clear(p)
		return nil, fail(exitPassphrase, "the passphrases differ; nothing done")
	}
	return p, nil
}

// readSecretFile reads a passphrase from a file (without a final line
// break), as --passphrase-file does.
func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fail(exitPassphrase, "%v", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPassphrase+1))
	if err != nil || len(b) > maxPassphrase {
		return nil, fail(exitPassphrase, "read %s: %v (at most %d bytes)", path, err, maxPassphrase)
	}
	b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	return b, nil
}

func cmdBackup(e *env, args []string) error {
	fs := e.flags("backup")
	pos, err := e.parse(fs, args, 1, "p2pmsg backup FILE")
	if err != nil {
		return err
	}
	path, err := filepath.Abs(pos[0])
	if err != nil {
		return err
	}
	given, err := e.passphrase()
	if err != nil {
		return err
	}
	backup := func(ctx context.Context, c *api.Client) error {
		id, err := c.ID(ctx)
		if err != nil {
			return err
		}
		pass := bytes.Clone(given)
		for try := 1; ; try++ {
			if pass == nil {
				if id.Sealed {
					pass, err = ask(e, "The store's passphrase (the backup is encrypted under it): ", "--passphrase-file")
				} else {
					pass, err = askNew(e, "A passphrase to encrypt the backup under", "--passphrase-file", "")
				}
				if err != nil {
					return err
				}
			}
			_, err = c.Backup(ctx, api.BackupParams{Path: path, Passphrase: string(pass)})
			clear(pass)
			if exitCodeOf(err) == exitPassphrase && given == nil && try < maxPrompts {
				fmt.Fprintln(e.stderr, "That is not the store's passphrase; try again.")
				pass = nil
				continue
			}
			if err != nil {
				return err
			}
			return e.output(api.BackupResult{Path: path}, func() {
				how := "under the passphrase you chose for it"
				if id.Sealed {
					how = "under the store's passphrase"
				}
				fmt.Fprintf(e.stdout, "Backup written to %s, encrypted %s.\nRestore it with: p2pmsg restore %s --data NEW_DIRECTORY\n", path, how, path)
			})
		}
	}
	err = e.do(true, backup)
	if errors.Is(err, node.ErrNotSealed) && given != nil {
		// No daemon, and a store without a passphrase: the one given is
		// the backup's, not the store's.
		e.pass, e.passRead = nil, true
		err = e.do(true, backup)
	}
	return err
}

func cmdRestore(e *env, args []string) error {
	fs := e.flags("restore")
	pos, err := e.parse(fs, args, 1, "p2pmsg restore FILE [--data DIR]")
	if err != nil {
		return err
	}
	if _, err := api.Dial(e.data); err == nil {
		return fail(exitLocked, "a daemon runs on %s: restore into a directory where none runs (and that holds no identity)", e.data)
	}
	if node.Exists(e.data) {
		return fail(exitExists, "%s holds an identity already: restore into a new directory (--data DIR)", e.data)
	}
	given, err := e.passphrase()
	if err != nil {
		return err
	}
	pass := given
	for try := 1; ; try++ {
		if pass == nil {
			if pass, err = ask(e, "The backup's passphrase: ", "--passphrase-file"); err != nil {
				return err
			}
		}
		sum, err := node.Restore(pos[0], e.data, pass)
		clear(pass)
		if errors.Is(err, node.ErrWrongBackupPassphrase) && given == nil && try < maxPrompts {
			fmt.Fprintln(e.stderr, "That passphrase does not open the backup; try again.")
			pass = nil
			continue
		}
		switch {
		case errors.Is(err, node.ErrWrongBackupPassphrase):
			return fail(exitPassphrase, "%v", err)
		case errors.Is(err, node.ErrBadBackup):
			return fail(exitError, "%s: %v", pos[0], err)
		case err != nil:
			return err
		}
		type restored struct {
			Data     string `json:"data"`
			Contacts int    `json:"contacts"`
			Messages int    `json:"messages"`
		}
		return e.output(restored{e.data, sum.Contacts, sum.Messages}, func() {
			fmt.Fprintf(e.stdout, "Restored %d messages into %s.\n", sum.Messages, e.data)
			fmt.Fprintf(e.stdout, "The conversations' keys moved on since the backup was taken: when the daemon starts, it starts\n"+
				"a new session with each of your %d contacts by itself. Messages sent or received after the\n"+
				"backup are not in it; a contact who wrote meanwhile may see that message fail, and can send it again.\n"+
				"Start the daemon: p2pmsg --data %s daemon\n", sum.Contacts, e.data)
		})
	}
}

func cmdPassphrase(e *env, args []string) error {
	fs := e.flags("passphrase")
	newFile := fs.String("new-passphrase-file", "", "read the new passphrase from this file instead of asking")
	remove := fs.Bool("remove", false, "remove the passphrase: store the keys and messages unsealed")
	if _, err := e.parse(fs, args, 0, "p2pmsg passphrase [--new-passphrase-file FILE | --remove]"); err != nil {
		return err
	}
	if *remove && *newFile != "" {
		return fail(exitUsage, "--remove or --new-passphrase-file, not both")
	}
	current, err := e.passphrase()
	if err != nil {
		return err
	}
	return e.do(true, func(ctx context.Context, c *api.Client) error {
		id, err := c.ID(ctx)
		if err != nil {
			return err
		}
		if !id.Sealed {
			current = nil
		} else if current == nil {
			if current, err = ask(e, "Current passphrase: ", "--passphrase-file"); err != nil {
				return err
			}
		}
		defer clear(current)
		var next []byte
		switch {
		case *remove:
		case *newFile != "":
			if next, err = readSecretFile(*newFile); err != nil {
				return err
			}
			if len(next) == 0 {
				return fail(exitUsage, "%s is empty: to remove the passphrase, use --remove", *newFile)
			}
		default:
			if next, err = askNew(e, "New passphrase", "--new-passphrase-file or --remove", "remove it, store unsealed"); err != nil {
				return err
			}
		}
		defer clear(next)
		r, err := c.ChangePassphrase(ctx, api.PassphraseParams{Current: string(current), New: string(next)})
		if err != nil {
			return err
		}
		return e.output(r, func() {
			switch {
			case !r.Sealed:
				fmt.Fprintln(e.stdout, "The passphrase is removed: the keys and messages are stored unsealed.")
			case id.Sealed:
				fmt.Fprintln(e.stdout, "Passphrase changed. The daemon asks for the new one at its next start.")
			default:
				fmt.Fprintln(e.stdout, "Passphrase set: the keys and messages are sealed. The daemon asks for it at its next start.")
			}
		})
	})
}
