package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/p2pmsg/p2pmsg/internal/api"
)

const mailboxUsage = "p2pmsg mailbox allow PEER_ID [--quota N] [--quota-bytes N] [--ttl-max D] | invite [--valid D] [--quota N] [--quota-bytes N] [--ttl-max D] | list | revoke PEER_ID"

// cmdMailbox runs the operator's verbs of a daemon started with --mailbox.
func cmdMailbox(e *env, args []string) error {
	fs := e.flags("mailbox")
	quota := fs.Int("quota", 0, "deposits kept for the owner at most (default: the mailbox's, 10000)")
	quotaBytes := fs.Int64("quota-bytes", 0, "bytes kept for the owner at most (default: the mailbox's, 50 MiB)")
	ttlMax := fs.String("ttl-max", "", "the longest the owner may have a deposit kept, such as 720h (default: the mailbox's, 30 days)")
	valid := fs.String("valid", "", "invite: how long the code may be used (default 168h)")
	pos, err := e.parse(fs, args, -1, mailboxUsage)
	if err != nil {
		return err
	}
	usage := fail(exitUsage, "usage: %s", mailboxUsage)
	if len(pos) == 0 {
		return usage
	}
	verb, pos := pos[0], pos[1:]
	want := map[string]int{"allow": 1, "invite": 0, "list": 0, "revoke": 1}
	n, ok := want[verb]
	if !ok {
		return fail(exitUsage, "unknown mailbox verb %q; usage: %s", verb, mailboxUsage)
	}
	if len(pos) != n {
		return usage
	}
	// A flag that the verb does not take is a mistake to say, not to
	// ignore.
	takes := map[string][]string{"allow": {"quota", "quota-bytes", "ttl-max"}, "invite": {"quota", "quota-bytes", "ttl-max", "valid"}}
	var stray error
	fs.Visit(func(f *flag.Flag) {
		if (f.Name == "quota" || f.Name == "quota-bytes" || f.Name == "ttl-max" || f.Name == "valid") && !slices.Contains(takes[verb], f.Name) && stray == nil {
			stray = fail(exitUsage, "mailbox %s takes no --%s; usage: %s", verb, f.Name, mailboxUsage)
		}
	})
	if stray != nil {
		return stray
	}
	return e.do(false, func(ctx context.Context, c *api.Client) error {
		switch verb {
		case "allow":
			o, err := c.MailboxAllow(ctx, api.MailboxAllowParams{Peer: pos[0], Quota: *quota, QuotaBytes: *quotaBytes, TTLMax: *ttlMax})
			if err != nil {
				return err
			}
			return e.output(o, func() {
				fmt.Fprintf(e.stdout, "%s may now keep messages here: up to %d deposits, %d bytes, each for at most %s.\n",
					o.PeerID, o.Quota, o.QuotaBytes, o.TTLMax)
			})
		case "invite":
			inv, err := c.MailboxInvite(ctx, api.MailboxInviteParams{Quota: *quota, QuotaBytes: *quotaBytes, TTLMax: *ttlMax, Valid: *valid})
			if err != nil {
				return err
			}
			return e.output(inv, func() {
				fmt.Fprintf(e.stdout, "%s\n(one use, until %s: give it to the owner, who runs p2pmsg mailboxes add CODE)\n",
					inv.Code, inv.Expires.Format("2006-01-02 15:04 MST"))
			})
		case "list":
			owners, err := c.MailboxList(ctx)
			if err != nil {
				return err
			}
			return e.output(owners, func() {
				if len(owners) == 0 {
					fmt.Fprintln(e.stdout, "No owners: admit one with p2pmsg mailbox allow PEER_ID or invite.")
					return
				}
				w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "OWNER\tSTORED\tBYTES\tQUOTA\tQUOTA BYTES\tTTL MAX\tSINCE")
				for _, o := range owners {
					fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%s\t%s\n", o.PeerID, o.Stored, o.StoredBytes, o.Quota, o.QuotaBytes,
						o.TTLMax, o.Since.Local().Format("2006-01-02"))
				}
				w.Flush()
			})
		default: // revoke
			r, err := c.MailboxRevoke(ctx, pos[0])
			if err != nil {
				return err
			}
			return e.output(r, func() {
				if r.Revoked {
					fmt.Fprintf(e.stdout, "%s is no longer an owner here; everything kept for it is deleted.\n", r.PeerID)
				} else {
					fmt.Fprintf(e.stdout, "%s was not an owner here.\n", r.PeerID)
				}
			})
		}
	})
}

const mailboxesUsage = "p2pmsg mailboxes add CODE|MULTIADDR | list | remove PEER_ID"

// cmdMailboxes runs the owner's verbs: the mailboxes that keep this
// node's messages while it is offline.
func cmdMailboxes(e *env, args []string) error {
	fs := e.flags("mailboxes")
	pos, err := e.parse(fs, args, -1, mailboxesUsage)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fail(exitUsage, "usage: %s", mailboxesUsage)
	}
	verb, pos := pos[0], pos[1:]
	want := map[string]int{"add": 1, "list": 0, "remove": 1}
	n, ok := want[verb]
	if !ok {
		return fail(exitUsage, "unknown mailboxes verb %q; usage: %s", verb, mailboxesUsage)
	}
	if len(pos) != n {
		return fail(exitUsage, "usage: %s", mailboxesUsage)
	}
	return e.do(false, func(ctx context.Context, c *api.Client) error {
		switch verb {
		case "add":
			m, err := c.MailboxesAdd(ctx, pos[0])
			if err != nil {
				return err
			}
			return e.output(m, func() {
				fmt.Fprintf(e.stdout, "Mailbox %s added: it keeps your messages while you are offline (%d one-time keys left there).\n",
					m.PeerID, m.OneTimeKeys)
			})
		case "list":
			ms, err := c.MailboxesList(ctx)
			if err != nil {
				return err
			}
			return e.output(ms, func() {
				if len(ms) == 0 {
					fmt.Fprintln(e.stdout, "No mailboxes: messages reach you only while you are online. Add one with p2pmsg mailboxes add CODE.")
					return
				}
				w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "MAILBOX\tREACHABLE\tWAITING\tBYTES\tONE-TIME KEYS\tCOLLECTED\tJUNK")
				for _, m := range ms {
					reach := "yes"
					if !m.Reachable {
						reach = "no"
						if m.LastError != "" {
							reach = "no: " + m.LastError
						}
					}
					fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d+%d\t%d\t%d\n", m.PeerID, reach, m.Stored, m.StoredBytes, m.OneTimeKeys, m.PQOneTime, m.Collected, m.Junk)
				}
				w.Flush()
			})
		default: // remove
			r, err := c.MailboxesRemove(ctx, pos[0])
			if err != nil {
				return err
			}
			return e.output(r, func() {
				fmt.Fprintf(e.stdout, "Mailbox %s removed: your bundle no longer names it.\n", r.PeerID)
			})
		}
	})
}
