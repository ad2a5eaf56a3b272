package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/p2pmsg/p2pmsg/internal/api"
	"github.com/p2pmsg/p2pmsg/node"
)

// The verbs that change a conversation beyond sending, the display
// name, search; and how a message prints.

// textArg is the text of send and edit: the words given, joined by
// spaces; or stdin when the one word is "-", or when there are none and
// stdin is not a terminal (echo hi | p2pmsg send bob), so that private
// text need not appear in the process list.
func textArg(words []string, usage string) (string, error) {
	fromStdin := len(words) == 1 && words[0] == "-"
	if len(words) == 0 {
		if term.IsTerminal(int(os.Stdin.Fd())) {
			return "", fail(exitUsage, "no text: give it after the peer, or - to read it from stdin; usage: %s", usage)
		}
		fromStdin = true
	}
	if !fromStdin {
		return strings.Join(words, " "), nil
	}
	b, err := io.ReadAll(io.LimitReader(os.Stdin, node.MaxTextSize+1))
	if err != nil {
		return "", fmt.Errorf("read the text from stdin: %w", err)
	}
	if len(b) > node.MaxTextSize {
		return "", fail(exitUsage, "the text on stdin is longer than %d bytes", node.MaxTextSize)
	}
	// One final line break is the shell's, not the message's.
	text := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if strings.TrimSpace(text) == "" {
		return "", fail(exitUsage, "no text on stdin")
	}
	return text, nil
}

// isSet reports whether the flag was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func cmdSend(e *env, args []string) error {
	fs := e.flags("send")
	wait := fs.Bool("wait", false, "return when delivered, or kept for the recipient at one of its mailboxes (mailboxed)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long --wait waits")
	replyTo := fs.String("reply-to", "", "the id of the message this one answers (it is quoted)")
	const usage = "p2pmsg send PEER [TEXT... | -] [--reply-to ID] [--wait [--timeout 30s]]"
	pos, err := e.parse(fs, args, -1, usage)
	if err != nil {
		return err
	}
	if len(pos) < 1 {
		return fail(exitUsage, "usage: %s", usage)
	}
	if isSet(fs, "timeout") && !*wait {
		return fail(exitUsage, "--timeout is how long --wait waits: give --wait too")
	}
	text, err := textArg(pos[1:], usage)
	if err != nil {
		return err
	}
	p := api.SendParams{Peer: pos[0], Text: text, Wait: *wait, ReplyTo: *replyTo}
	if *wait {
		p.Timeout = timeout.String()
	}
	return e.do(false, func(ctx context.Context, c *api.Client) error {
		r, err := c.Send(ctx, p)
		if err != nil {
			if e.json && api.ResultOf(err, &r) {
				e.output(r, nil) // a timeout or a failure still names the message
			}
			return err
		}
		return e.output(r, func() {
			if r.Error != "" {
				fmt.Fprintf(e.stdout, "Message %s to %s: %s (%s).\n", r.ID, pos[0], r.State, r.Error)
				return
			}
			fmt.Fprintf(e.stdout, "Message %s to %s: %s.\n", r.ID, pos[0], r.State)
		})
	})
}

func cmdEdit(e *env, args []string) error {
	fs := e.flags("edit")
	const usage = "p2pmsg edit PEER MESSAGE_ID [TEXT... | -]"
	pos, err := e.parse(fs, args, -1, usage)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return fail(exitUsage, "usage: %s", usage)
	}
	text, err := textArg(pos[2:], usage)
	if err != nil {
		return err
	}
	return e.do(false, func(ctx context.Context, c *api.Client) error {
		r, err := c.Edit(ctx, pos[0], pos[1], text)
		if err != nil {
			return err
		}
		return e.output(r, func() { fmt.Fprintf(e.stdout, "Message %s edited.\n", r.ID) })
	})
}

func cmdDelete(e *env, args []string) error {
	fs := e.flags("delete")
	pos, err := e.parse(fs, args, 2, "p2pmsg delete PEER MESSAGE_ID")
	if err != nil {
		return err
	}
	return e.do(false, func(ctx context.Context, c *api.Client) error {
		r, err := c.Delete(ctx, pos[0], pos[1])
		if err != nil {
			return err
		}
		return e.output(r, func() { fmt.Fprintf(e.stdout, "Message %s deleted for everyone.\n", r.ID) })
	})
}

func cmdReact(e *env, args []string) error {
	fs := e.flags("react")
	remove := fs.Bool("remove", false, "take your reaction back")
	const usage = "p2pmsg react PEER MESSAGE_ID EMOJI | p2pmsg react PEER MESSAGE_ID --remove"
	pos, err := e.parse(fs, args, -1, usage)
	if err != nil {
		return err
	}
	if len(pos) != 3 && !(*remove && len(pos) == 2) {
		return fail(exitUsage, "usage: %s", usage)
	}
	emoji := ""
	if !*remove {
		emoji = pos[2]
	}
	return e.do(false, func(ctx context.Context, c *api.Client) error {
		r, err := c.React(ctx, pos[0], pos[1], emoji)
		if err != nil {
			return err
		}
		return e.output(r, func() {
			if emoji == "" {
				fmt.Fprintf(e.stdout, "Reaction to message %s taken back.\n", r.ID)
				return
			}
			fmt.Fprintf(e.stdout, "Reacted %s to message %s.\n", emoji, r.ID)
		})
	})
}

func cmdRead(e *env, args []string) error {
	fs := e.flags("read")
	until := fs.String("until", "", "read up to and including this message id (default: all)")
	pos, err := e.parse(fs, args, 1, "p2pmsg read PEER [--until MESSAGE_ID]")
	if err != nil {
		return err
	}
	return e.do(false, func(ctx context.Context, c *api.Client) error {
		r, err := c.Read(ctx, pos[0], *until)
		if err != nil {
			return err
		}
		return e.output(r, func() { fmt.Fprintf(e.stdout, "%d messages marked read.\n", r.Read) })
	})
}

func cmdDisappearing(e *env, args []string) error {
	fs := e.flags("disappearing")
	pos, err := e.parse(fs, args, 2, "p2pmsg disappearing PEER DURATION|off")
	if err != nil {
		return err
	}
	if _, err := api.ParseTimer(pos[1]); err != nil {
		return fail(exitUsage, "%v", err)
	}
	return e.do(false, func(ctx context.Context, c *api.Client) error {
		r, err := c.Disappearing(ctx, pos[0], pos[1])
		if err != nil {
			return err
		}
		return e.output(r, func() {
			if r.Timer == 0 {
				fmt.Fprintf(e.stdout, "Disappearing messages with %s: off.\n", pos[0])
				return
			}
			fmt.Fprintf(e.stdout, "Disappearing messages with %s: %s after they are read.\n", pos[0], api.FormatTimer(r.Timer))
		})
	})
}

func cmdProfile(e *env, args []string) error {
	fs := e.flags("profile")
	newName := fs.String("name", "", `your display name, which your contacts see ("" removes it)`)
	if _, err := e.parse(fs, args, 0, "p2pmsg profile [--name NAME]"); err != nil {
		return err
	}
	set := isSet(fs, "name")
	return e.do(!set, func(ctx context.Context, c *api.Client) error {
		var r api.Profile
		var err error
		if set {
			r, err = c.SetProfile(ctx, *newName)
		} else {
			r, err = c.Profile(ctx)
		}
		if err != nil {
			return err
		}
		return e.output(r, func() {
			switch {
			case r.Name == "":
				fmt.Fprintln(e.stdout, "No display name: your contacts see your peer ID, or the name they gave you (p2pmsg profile --name NAME).")
			case set:
				fmt.Fprintf(e.stdout, "Display name: %s (your contacts are told).\n", printable(r.Name, true))
			default:
				fmt.Fprintf(e.stdout, "Display name: %s\n", printable(r.Name, true))
			}
		})
	})
}

func cmdSearch(e *env, args []string) error {
	fs := e.flags("search")
	peer := fs.String("peer", "", "only the conversation with this peer")
	limit := fs.Int("limit", 50, "at most this many messages")
	pos, err := e.parse(fs, args, -1, "p2pmsg search WORD... [--peer PEER] [--limit N]")
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fail(exitUsage, "usage: p2pmsg search WORD... [--peer PEER] [--limit N]")
	}
	return e.do(true, func(ctx context.Context, c *api.Client) error {
		ms, err := c.Search(ctx, api.SearchParams{Query: strings.Join(pos, " "), Peer: *peer, Limit: *limit})
		if err != nil {
			return err
		}
		return e.output(ms, func() {
			if len(ms) == 0 {
				fmt.Fprintln(e.stdout, "No message found.")
			}
			for _, m := range ms {
				if *peer == "" {
					fmt.Fprintf(e.stdout, "with %s:\n", name(m.Peer, m.Name))
				}
				printMessage(e, m)
			}
		})
	})
}

// printMessage prints one message: its date and time (and the sender's,
// when its clock differs by more than a minute), who wrote it, its text
// and state, and what came with it.
func printMessage(e *env, m api.Message) {
	who := "me"
	if m.Direction == string(node.Incoming) {
		who = "them"
		if m.Name != "" {
			who = printable(m.Name, true)
		}
		if m.NameIsTheirs {
			who = "~" + who // the name it gave itself
		}
		if m.Request {
			who += " (contact request)"
		}
	}
	state := m.State
	if m.Error != "" {
		state += ": " + m.Error
	}
	const layout = "2006-01-02 15:04:05"
	when := m.Stored.Local().Format(layout)
	if d := m.Sent.Sub(m.Stored); m.Direction == string(node.Incoming) && (d > time.Minute || d < -time.Minute) {
		when += " (sent " + m.Sent.Local().Format(layout) + " by their clock)"
	}
	text := multiline(m.Text)
	switch {
	case m.Deleted:
		text = "(deleted)"
	case !m.Edited.IsZero():
		text += " (edited)"
	}
	var extra []string
	if m.ReplyTo != "" {
		extra = append(extra, "reply to "+m.ReplyTo)
	}
	if m.Timer > 0 {
		t := "disappears " + api.FormatTimer(m.Timer) + " after reading"
		if !m.Expires.IsZero() {
			t = "disappears at " + m.Expires.Local().Format(layout)
		}
		extra = append(extra, t)
	}
	for _, r := range m.Reactions {
		by := "me"
		if r.Peer != "" {
			by = "them"
			if r.Name != "" {
				by = printable(r.Name, true)
				if m.NameIsTheirs {
					by = "~" + by
				}
			}
		}
		extra = append(extra, printable(r.Emoji, true)+" "+by)
	}
	block := fmt.Sprintf("%s  %-4s  %s  [%s]  %s", when, who, text, printable(state, true), m.ID)
	if len(extra) > 0 {
		block += "\n" + continuation + "(" + strings.Join(extra, "; ") + ")"
	}
	fmt.Fprintln(e.stdout, fitWidth(block, e.width()))
}
