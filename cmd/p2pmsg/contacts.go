package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/p2pmsg/p2pmsg/internal/api"
)

const contactsUsage = "p2pmsg contacts list | requests [clear [--yes]] | add PEER|INVITATION [--name NAME] | rename PEER NAME | remove PEER [--yes] | accept PEER | block PEER | unblock PEER"

func cmdContacts(e *env, args []string) error {
	fs := e.flags("contacts")
	newName := fs.String("name", "", "the contact's name (add)")
	yes := fs.Bool("yes", false, "remove without asking")
	pos, err := e.parse(fs, args, -1, contactsUsage)
	if err != nil {
		return err
	}
	usage := fail(exitUsage, "usage: %s", contactsUsage)
	if len(pos) == 0 {
		return usage
	}
	verb, pos := pos[0], pos[1:]
	if verb == "requests" {
		return cmdRequests(e, pos, *yes)
	}
	want := map[string]int{"list": 0, "add": 1, "rename": 2, "remove": 1, "accept": 1, "block": 1, "unblock": 1}
	n, ok := want[verb]
	if !ok {
		return fail(exitUsage, "unknown contacts verb %q; usage: %s", verb, contactsUsage)
	}
	if len(pos) != n {
		return usage
	}
	if verb == "list" {
		return e.do(true, func(ctx context.Context, c *api.Client) error {
			cs, err := c.Contacts(ctx)
			if err != nil {
				return err
			}
			return e.output(cs, func() { printContacts(e, cs) })
		})
	}
	return e.do(false, func(ctx context.Context, c *api.Client) error {
		var ct api.Contact
		var err error
		var said string
		switch verb {
		case "add":
			ct, err = c.AddContact(ctx, api.ContactParams{Peer: pos[0], Name: *newName})
			said = "%s is a contact."
		case "rename":
			ct, err = c.Rename(ctx, api.ContactParams{Peer: pos[0], Name: pos[1]})
			said = "Renamed: %s."
		case "remove":
			return removeContact(ctx, e, c, pos[0], *yes)
		case "accept":
			ct, err = c.ContactOp(ctx, "contacts.accept", pos[0])
			said = "Accepted %s."
		case "block":
			ct, err = c.ContactOp(ctx, "contacts.block", pos[0])
			said = "Blocked %s: its messages are dropped, and nothing is sent to it."
		case "unblock":
			ct, err = c.ContactOp(ctx, "contacts.unblock", pos[0])
			said = "Unblocked %s."
		}
		if err != nil {
			return err
		}
		return e.output(ct, func() { fmt.Fprintf(e.stdout, said+"\n", name(ct.PeerID, ct.DisplayName)) })
	})
}

func printContacts(e *env, cs []api.Contact) {
	for _, c := range cs {
		flags := []string{c.State}
		if c.Verified {
			flags = append(flags, "verified")
		}
		if c.Blocked {
			flags = append(flags, "blocked")
		}
		if c.Timer > 0 {
			flags = append(flags, "disappearing "+api.FormatTimer(c.Timer))
		}
		if c.KeyChanged {
			flags = append(flags, "KEY CHANGED: compare safety numbers, then p2pmsg trust")
		}
		shown := printable(c.DisplayName, true)
		if c.Name == "" && c.ProfileName != "" {
			shown = "~" + shown // the name it gave itself, not one of yours
		}
		fmt.Fprintf(e.stdout, "%s  %-12s  %-12s  %s\n", c.PeerID, shown, c.Path, strings.Join(flags, ", "))
	}
}

// cmdRequests lists the pending contact requests, or deletes them all.
func cmdRequests(e *env, pos []string, yes bool) error {
	switch {
	case len(pos) == 0:
		return e.do(true, func(ctx context.Context, c *api.Client) error {
			cs, err := c.Requests(ctx)
			if err != nil {
				return err
			}
			return e.output(cs, func() {
				if len(cs) == 0 {
					fmt.Fprintln(e.stdout, "No pending contact requests.")
				}
				for _, c := range cs {
					fmt.Fprintf(e.stdout, "%s  read: p2pmsg history %s; then p2pmsg contacts accept|block|remove %s\n", c.PeerID, c.PeerID, c.PeerID)
				}
			})
		})
	case len(pos) == 1 && pos[0] == "clear":
	default:
		return fail(exitUsage, "usage: %s", contactsUsage)
	}
	if !yes {
		if !term.IsTerminal(int(os.Stdin.Fd())) {
			return fail(exitUsage, "clearing deletes every pending contact request with its message: confirm with --yes")
		}
		fmt.Fprint(e.stderr, "Delete every pending contact request with its message? [y/N] ")
		answer, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return fail(exitError, "nothing deleted")
		}
	}
	return e.do(false, func(ctx context.Context, c *api.Client) error {
		r, err := c.ClearRequests(ctx)
		if err != nil {
			return err
		}
		return e.output(r, func() { fmt.Fprintf(e.stdout, "Deleted %d contact requests with their messages.\n", r.Deleted) })
	})
}

// removeContact deletes a contact and its history, after a confirmation
// on a terminal, or with --yes.
func removeContact(ctx context.Context, e *env, c *api.Client, peer string, yes bool) error {
	r, err := c.Resolve(ctx, peer)
	if err != nil {
		return err
	}
	if !yes {
		if !term.IsTerminal(int(os.Stdin.Fd())) {
			return fail(exitUsage, "removing %s deletes its whole history: confirm with --yes", name(r.PeerID, r.Name))
		}
		fmt.Fprintf(e.stderr, "Remove %s and delete its whole history and sessions? [y/N] ", name(r.PeerID, r.Name))
		answer, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return fail(exitError, "nothing removed")
		}
	}
	gone, err := c.RemoveContact(ctx, r.PeerID)
	if err != nil {
		return err
	}
	return e.output(gone, func() {
		fmt.Fprintf(e.stdout, "Removed %s, with its history and sessions.\n", name(r.PeerID, r.Name))
	})
}

func cmdTrust(e *env, args []string) error {
	fs := e.flags("trust")
	verified := fs.Bool("verified", false, "record that you compared safety numbers: give the number you compared (sessions kept)")
	const usage = "p2pmsg trust PEER [--verified SAFETY_NUMBER]"
	pos, err := e.parse(fs, args, -1, usage)
	if err != nil {
		return err
	}
	if len(pos) == 0 || len(pos) > 1 && !*verified {
		return fail(exitUsage, "usage: %s", usage)
	}
	return e.do(false, func(ctx context.Context, c *api.Client) error {
		if *verified {
			// The number the user read out is checked against ours: a
			// contact is marked verified only for the number compared.
			compared := strings.Join(pos[1:], "")
			if compared == "" {
				b, err := ask(e, "The safety number you compared (the digits; spaces do not matter): ", "it after --verified")
				if err != nil {
					return err
				}
				compared = string(b)
			}
			sn, err := c.Verify(ctx, pos[0])
			if err != nil {
				return err
			}
			digits := func(s string) string {
				return strings.Map(func(r rune) rune {
					if r >= '0' && r <= '9' {
						return r
					}
					if r == ' ' {
						return -1
					}
					return 'x'
				}, s)
			}
			if digits(compared) != digits(sn.SafetyNumber) {
				return fail(exitError, "that is not your safety number with %s: NOT marked verified (see p2pmsg verify %s)", pos[0], pos[0])
			}
			ct, err := c.SetVerified(ctx, pos[0], true)
			if err != nil {
				return err
			}
			return e.output(ct, func() {
				fmt.Fprintf(e.stdout, "Marked %s as verified: the safety number you compared is yours.\n", name(ct.PeerID, ct.Name))
			})
		}
		r, err := c.Trust(ctx, pos[0])
		if err != nil {
			return err
		}
		return e.output(r, func() {
			if !r.Changed {
				fmt.Fprintf(e.stdout, "No key change is pending for %s: nothing changed.\n", r.PeerID)
				return
			}
			fmt.Fprintf(e.stdout, "Trusted the new identity key of %s; its next messages are accepted. Compare safety numbers again: p2pmsg verify %s\n", r.PeerID, pos[0])
		})
	})
}
