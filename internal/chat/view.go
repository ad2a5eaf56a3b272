package chat

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/p2pmsg/p2pmsg/internal/api"
)

var (
	styleSelected = lipgloss.NewStyle().Reverse(true)
	styleWarning  = lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("9"))
	styleDim      = lipgloss.NewStyle().Faint(true)
	styleMe       = lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("6"))
	styleThem     = lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("5"))
	styleRead     = lipgloss.NewStyle().Foreground(lipgloss.Color("4"))
	styleTitle    = lipgloss.NewStyle().Bold(true)
)

// The screen, top to bottom: a title row; the conversations and the
// conversation side by side; a rule; what the draft is (a reply, an
// edit, a reaction), when it is one; the composer, one to six rows as
// the draft grows; the status or help row. Every row of the terminal is
// used, at any size.

// leftWidth is the width of the conversations' column.
func (m *Model) leftWidth() int { return min(32, max(18, m.width/4)) }

func (m *Model) rightWidth() int { return max(10, m.width-m.leftWidth()-1) }

// context is the row above the composer, or "".
func (m *Model) context() string {
	c, ok := m.convs[m.selected]
	switch {
	case m.mode == reacting:
		var q []string
		for i, e := range quickReactions {
			q = append(q, fmt.Sprintf("%d %s", i+1, e))
		}
		return "react: " + strings.Join(q, "  ") + "  (or type one, enter)"
	case !ok:
		return ""
	case c.editing != "":
		return "editing your message (esc: cancel)"
	case c.replyTo != "":
		quoted := "an earlier message"
		if i := c.index(c.replyTo); i >= 0 {
			quoted = clean(c.msgs[i].Text, true)
		}
		return "replying to: " + quoted + " (esc: cancel)"
	}
	return ""
}

// bodyHeight is the rows of the two columns.
func (m *Model) bodyHeight() int {
	h := m.height - 1 - 1 - m.compose.Height() - 1
	if m.context() != "" {
		h--
	}
	return max(1, h)
}

func (m *Model) layout() layout {
	return layout{width: m.rightWidth(), loc: m.Loc, self: "me", name: m.name}
}

func (m *Model) View() tea.View {
	v := tea.NewView(m.Render())
	v.AltScreen = true
	v.ReportFocus = true // nothing is marked read while no one looks
	return v
}

// Render draws the screen (View without the terminal settings).
func (m *Model) Render() string {
	if m.width < 20 || m.height < 6 {
		return "p2pmsg chat: the terminal is too small"
	}
	h := m.bodyHeight()
	left := m.contactLines(h)
	right, atTop := m.conversationLines(h)
	rows := make([]string, 0, m.height)
	rows = append(rows, m.title())
	lw := m.leftWidth()
	for i := 0; i < h; i++ {
		rows = append(rows, pad(left[i], lw)+styleDim.Render("│")+right[i])
	}
	rule := strings.Repeat("─", m.width)
	if c, ok := m.convs[m.selected]; ok && atTop && c.loading {
		rule = ansi.Truncate("── loading older messages "+rule, m.width, "")
	}
	rows = append(rows, styleDim.Render(rule))
	if ctx := m.context(); ctx != "" {
		rows = append(rows, ansi.Truncate(ctx, m.width, "…"))
	}
	rows = append(rows, strings.Split(m.compose.View(), "\n")...)
	rows = append(rows, m.footer())
	for i := range rows {
		rows[i] = pad(ansi.Truncate(rows[i], m.width, ""), m.width)
	}
	return strings.Join(rows, "\n")
}

// pad fills s with spaces to w columns.
func pad(s string, w int) string {
	return s + strings.Repeat(" ", max(0, w-lipgloss.Width(s)))
}

// title names the conversation, what it is, and whether the daemon is
// there.
func (m *Model) title() string {
	conn := styleDim.Render("daemon connected")
	if !m.online {
		conn = styleWarning.Render("daemon away: reconnecting…")
	}
	t := "p2pmsg"
	if ct, ok := m.contact(m.selected); ok {
		t = styleTitle.Render(m.name(ct.PeerID)) + " " + styleDim.Render(short(ct.PeerID))
		var tags []string
		switch {
		case ct.Blocked:
			tags = append(tags, "blocked")
		case ct.State == "request":
			tags = append(tags, "contact request: alt+a accepts, alt+x blocks")
		}
		if ct.Verified {
			tags = append(tags, "verified")
		}
		if ct.KeyChanged {
			tags = append(tags, styleWarning.Render("KEY CHANGED"))
		}
		if ct.Path != "" && ct.Path != "offline" {
			tags = append(tags, "online ("+ct.Path+")")
		} else {
			tags = append(tags, "offline")
		}
		if ct.Timer > 0 {
			tags = append(tags, "⏱ disappearing "+api.FormatTimer(ct.Timer))
		}
		t += " · " + strings.Join(tags, " · ")
	} else if m.selected != "" {
		t = styleTitle.Render(short(m.selected))
	}
	gap := m.width - lipgloss.Width(t) - lipgloss.Width(conn) - 1
	if gap < 1 {
		return ansi.Truncate(t, m.width, "…")
	}
	return t + strings.Repeat(" ", gap+1) + conn
}

// contactMark is a contact's sign in the list: ? a request, ⊘ blocked,
// ✔ verified, ● online, ○ offline.
func contactMark(c api.Contact) string {
	switch {
	case c.Blocked:
		return "⊘"
	case c.State == "request":
		return "?"
	case c.KeyChanged:
		return "!"
	case c.Verified:
		return "✔"
	case c.Path != "" && c.Path != "offline":
		return "●"
	}
	return "○"
}

// contactLines is the left column: the conversations, then the legend.
func (m *Model) contactLines(h int) []string {
	w := m.leftWidth()
	legend := []string{styleDim.Render(ansi.Truncate("? request ⊘ blocked", w, "")), styleDim.Render(ansi.Truncate("✔ verified ● online", w, ""))}
	if h < 6 {
		legend = nil
	}
	room := h - len(legend)
	var out []string
	if len(m.contacts) == 0 {
		out = append(out, styleDim.Render(ansi.Truncate("no contacts yet", w, "")), styleDim.Render(ansi.Truncate("p2pmsg invite", w, "")))
	}
	// Keep the selected one in view.
	first := 0
	for i, c := range m.contacts {
		if c.PeerID == m.selected && i >= room {
			first = i - room + 1
		}
	}
	for _, c := range m.contacts[first:] {
		if len(out) == room {
			break
		}
		badge := ""
		if c.Unread > 0 {
			badge = fmt.Sprintf(" (%d)", c.Unread)
		}
		name := ansi.Truncate(contactMark(c)+" "+m.name(c.PeerID), w-lipgloss.Width(badge), "…")
		line := pad(name, w-lipgloss.Width(badge)) + badge
		switch {
		case c.PeerID == m.selected:
			line = styleSelected.Render(line)
		case c.Unread > 0:
			line = styleTitle.Render(line)
		}
		out = append(out, line)
	}
	for len(out) < room {
		out = append(out, "")
	}
	return append(out, legend...)
}

// conversationLines is the right column.
func (m *Model) conversationLines(h int) ([]string, bool) {
	c, ok := m.convs[m.selected]
	if !ok || m.selected == "" {
		lines := make([]string, h)
		lines[h/2] = styleDim.Render("  no conversation: ctrl+n / ctrl+p choose one")
		return lines, false
	}
	lines, atTop := c.window(h, m.layout())
	if len(c.msgs) == 0 && c.loaded {
		lines[h-1] = styleDim.Render("  no messages yet: write the first")
	}
	return lines, atTop
}

// footer is the status row when something happened, else the help.
func (m *Model) footer() string {
	if m.warning != "" {
		return styleWarning.Render(m.warning)
	}
	if m.status != "" {
		return m.status
	}
	k := m.keys
	var bs []key.Binding
	switch m.mode {
	case picking:
		bs = []key.Binding{k.Up, k.Down, k.Reply, k.React, k.Edit, k.Delete, k.Back}
	case reacting:
		bs = []key.Binding{k.Send, k.Back}
	default:
		bs = []key.Binding{k.Send, k.Newline, k.Next, k.Prev, k.Select, k.PageUp, k.Top}
		if ct, ok := m.contact(m.selected); ok && ct.State == "request" {
			bs = append([]key.Binding{k.Accept, k.Block}, bs...)
		}
		bs = append(bs, k.Back)
	}
	m.help.SetWidth(m.width)
	return m.help.ShortHelpView(bs)
}
