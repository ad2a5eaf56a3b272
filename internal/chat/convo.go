package chat

import (
	"sort"
	"strings"
	"time"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/p2pmsg/p2pmsg/internal/api"
)

// convo is one conversation as the screen holds it: the messages loaded
// so far (oldest first; older pages come on demand), how far it is
// scrolled, the draft, and the laid-out lines of each message, cached
// per width, so that a redraw lays out only what changed.
type convo struct {
	peer     string
	msgs     []api.Message
	complete bool // no message older than msgs[0]
	loading  bool // an older page is on its way
	loaded   bool // the latest page came
	offset   int  // lines scrolled up from the bottom
	sel      int  // the picked message (select mode), an index of msgs
	draft    string
	replyTo  string // the id of the message the draft answers
	editing  string // the id of the message the draft replaces
	stash    string // the draft set aside while editing
	target   string // the id of the message a reaction or a deletion is for
	lastRead string // the id of the last incoming message told read
	blocks   map[string]block
	width    int // of the cached blocks
}

// block is a message laid out.
type block struct {
	lines []string
}

func newConvo(peer string) *convo { return &convo{peer: peer, sel: -1, blocks: map[string]block{}} }

// index returns the position of message id, or -1.
func (c *convo) index(id string) int {
	for i := len(c.msgs) - 1; i >= 0; i-- {
		if c.msgs[i].ID == id {
			return i
		}
	}
	return -1
}

// merge adds or replaces messages, keeping the conversation's order.
func (c *convo) merge(ms []api.Message) {
	for _, m := range ms {
		i := c.index(m.ID)
		if i >= 0 {
			c.msgs[i] = m
		} else {
			i = sort.Search(len(c.msgs), func(i int) bool { return before(m, c.msgs[i]) })
			c.msgs = append(c.msgs, api.Message{})
			copy(c.msgs[i+1:], c.msgs[i:])
			c.msgs[i] = m
			if c.sel >= i {
				c.sel++
			}
		}
		c.changed(i)
	}
}

// before reports whether a comes before b in the conversation.
func before(a, b api.Message) bool {
	return a.Stored.Before(b.Stored) || a.Stored.Equal(b.Stored) && a.Seq < b.Seq
}

// changed drops the layout of what shows message i: its own, the next
// one's (whose date rule depends on it), and the replies that quote it.
func (c *convo) changed(i int) {
	id := c.msgs[i].ID
	delete(c.blocks, id)
	if i+1 < len(c.msgs) {
		delete(c.blocks, c.msgs[i+1].ID)
	}
	for _, m := range c.msgs {
		if m.ReplyTo == id {
			delete(c.blocks, m.ID)
		}
	}
}

// remove drops a message (its disappearing timer ran out).
func (c *convo) remove(id string) {
	if i := c.index(id); i >= 0 {
		c.changed(i)
		c.msgs = append(c.msgs[:i], c.msgs[i+1:]...)
		switch {
		case c.sel == i:
			c.sel = min(i, len(c.msgs)-1)
		case c.sel > i:
			c.sel--
		}
	}
}

// lastIncoming is the id of the latest message from the peer.
func (c *convo) lastIncoming() (string, bool) {
	for i := len(c.msgs) - 1; i >= 0; i-- {
		if c.msgs[i].Direction == "in" {
			return c.msgs[i].ID, c.msgs[i].State == "received"
		}
	}
	return "", false
}

// layout is what laying out a message needs besides the message.
type layout struct {
	width int
	loc   *time.Location
	self  string // how our own messages are signed
	name  func(peer string) string
}

// blockOf lays out message i, or returns its layout from the cache:
// merge and remove drop what a change makes stale (changed).
func (c *convo) blockOf(i int, l layout) []string {
	if l.width != c.width {
		c.blocks, c.width = map[string]block{}, l.width
	}
	m := c.msgs[i]
	if b, ok := c.blocks[m.ID]; ok {
		return b.lines
	}
	newDay := i == 0 || !sameDay(c.msgs[i-1].Stored.In(l.loc), m.Stored.In(l.loc))
	quoted := ""
	if m.ReplyTo != "" {
		quoted = "an earlier message"
		if j := c.index(m.ReplyTo); j >= 0 {
			q := c.msgs[j]
			quoted = l.name(q.Peer)
			if q.Direction == "out" {
				quoted = l.self
			}
			quoted += ": " + clean(q.Text, true)
			if q.Deleted {
				quoted += "(deleted)"
			}
		}
	}
	var out []string
	if newDay {
		out = append(out, dayRule(m.Stored.In(l.loc), l.width))
	}
	out = append(out, header(m, l))
	if quoted != "" {
		out = append(out, styleDim.Render(ansi.Truncate("  ↳ "+quoted, l.width, "…")))
	}
	text := clean(m.Text, false)
	if m.Deleted {
		text = styleDim.Render("(deleted)")
	}
	for _, line := range strings.Split(ansi.Wrap(text, max(1, l.width-2), ""), "\n") {
		out = append(out, "  "+line)
	}
	if len(m.Reactions) > 0 {
		var rs []string
		for _, r := range m.Reactions {
			by := l.self
			if r.Peer != "" {
				by = l.name(r.Peer)
			}
			rs = append(rs, clean(r.Emoji, true)+" "+by)
		}
		out = append(out, ansi.Truncate("  "+strings.Join(rs, " · "), l.width, "…"))
	}
	c.blocks[m.ID] = block{out}
	return out
}

func sameDay(a, b time.Time) bool {
	ay, am, ad := a.Date()
	by, bm, bd := b.Date()
	return ay == by && am == bm && ad == bd
}

func dayRule(t time.Time, width int) string {
	label := " " + t.Format("Mon 2 Jan 2006") + " "
	side := max(0, (width-lipgloss.Width(label))/2)
	return styleDim.Render(strings.Repeat("─", side) + label + strings.Repeat("─", max(0, width-side-lipgloss.Width(label))))
}

// header is a message's first line: time, who, and its state.
func header(m api.Message, l layout) string {
	h := m.Stored.In(l.loc).Format("15:04") + " "
	if m.Direction == "out" {
		h += styleMe.Render(l.self)
	} else {
		h += styleThem.Render(l.name(m.Peer))
	}
	if d := m.Sent.Sub(m.Stored); m.Direction == "in" && (d > time.Minute || d < -time.Minute) {
		h += styleDim.Render(" (sent " + m.Sent.In(l.loc).Format("2 Jan 15:04") + " by their clock)")
	}
	if !m.Edited.IsZero() && !m.Deleted {
		h += styleDim.Render(" (edited)")
	}
	if m.Timer > 0 {
		h += styleDim.Render(" ⏱")
	}
	if mark := stateMark(m); mark != "" {
		h += "  " + mark
	}
	return ansi.Truncate(h, l.width, "…")
}

// stateMark shows a message's state: ticks for ours, and why it failed.
func stateMark(m api.Message) string {
	switch m.State {
	case "queued":
		return styleDim.Render("○ queued")
	case "sent":
		return styleDim.Render("✓ sent")
	case "mailboxed":
		return styleDim.Render("✓ mailboxed")
	case "delivered":
		return "✓✓ delivered"
	case "read":
		if m.Direction == "out" {
			return styleRead.Render("✓✓ read")
		}
	case "failed":
		return styleWarning.Render("✗ failed: " + clean(m.Error, true))
	}
	return ""
}

// window lays out the lines of the conversation that a pane of height
// rows shows, scrolled c.offset lines up from the bottom (clamped to what
// is loaded), marking the picked message. It lays out messages from the
// newest back, only as far as the window reaches, and reports whether
// the top of what is loaded shows (time to load an older page).
func (c *convo) window(height int, l layout) (lines []string, atTop bool) {
	// From the newest back: the blocks below the window only count
	// their lines; those in it are kept, newest first.
	var rev [][]string
	below, kept := 0, 0
	i := len(c.msgs) - 1
	for ; i >= 0 && kept < height; i-- {
		b := c.blockOf(i, l)
		if len(rev) == 0 && below+len(b) <= c.offset {
			below += len(b)
			continue
		}
		if i == c.sel {
			sel := make([]string, len(b))
			for k, line := range b {
				sel[k] = styleSelected.Render(ansi.Strip(line))
			}
			b = sel
		}
		if len(rev) == 0 {
			b = b[:len(b)-(c.offset-below)] // the part of it above the offset
		}
		rev = append(rev, b)
		kept += len(b)
	}
	atTop = i < 0
	if atTop && kept < height && c.offset > 0 {
		// Scrolled past the first message: stop there. The lines
		// loaded are below (every block skipped) when none was kept,
		// else c.offset+kept.
		if kept == 0 {
			c.offset = max(0, below-height)
		} else {
			c.offset = max(0, c.offset+kept-height)
		}
		return c.window(height, l)
	}
	lines = make([]string, 0, height)
	for k := len(rev) - 1; k >= 0; k-- {
		lines = append(lines, rev[k]...)
	}
	top := len(lines) > height
	if top {
		lines = lines[len(lines)-height:]
	}
	for len(lines) < height {
		lines = append([]string{""}, lines...)
	}
	return lines, atTop && !top
}

// reveal scrolls so that message i shows whole (or its top, when it is
// taller than the pane).
func (c *convo) reveal(i, height int, l layout) {
	below := 0
	for k := len(c.msgs) - 1; k > i; k-- {
		below += len(c.blockOf(k, l))
	}
	h := len(c.blockOf(i, l))
	if below < c.offset {
		c.offset = below
	}
	if below+h > c.offset+height {
		c.offset = below + h - height
		if h > height {
			c.offset = below + h - height
		}
	}
}
