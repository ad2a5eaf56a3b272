package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"github.com/p2pmsg/p2pmsg/internal/api"
	"github.com/p2pmsg/p2pmsg/node"
)

// cmdChat is the chat screen: contacts on the left, the conversation on
// the right with each message's delivery state, an input line, live
// updates from the daemon's event stream, and key-change warnings.
func cmdChat(e *env, args []string) error {
	fs := e.flags("chat")
	pos, err := e.parse(fs, args, -1, "p2pmsg chat [PEER]")
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return fail(exitUsage, "usage: p2pmsg chat [PEER]")
	}
	// One connection for requests, one for the event stream.
	c, closeC, err := e.connect(false)
	if err != nil {
		return err
	}
	defer closeC()
	events, closeEvents, err := e.connect(false)
	if err != nil {
		return err
	}
	defer closeEvents()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := &chatModel{ctx: ctx, c: c, input: textinput.New()}
	m.input.Placeholder = "type a message, Enter to send"
	m.input.CharLimit = node.MaxTextSize
	m.input.Focus()
	if len(pos) == 1 {
		r, err := c.Resolve(ctx, pos[0])
		if err != nil {
			return err
		}
		m.selected = r.PeerID
	}
	// From now on: the past is in the history the screen loads.
	last, err := c.LastEventID(ctx)
	if err != nil {
		return err
	}
	w, err := events.Watch(ctx, api.SubscribeParams{Since: last})
	if err != nil {
		return err
	}
	p := tea.NewProgram(m, tea.WithInput(os.Stdin), tea.WithOutput(e.stdout))
	go followEvents(w, p)
	_, err = p.Run()
	return err
}

type (
	contactsMsg []api.Contact
	historyMsg  struct {
		peer string
		h    []api.Message
	}
	eventMsg api.Event
	errMsg   struct{ err error }
)

// followEvents feeds the daemon's new events to the screen.
func followEvents(w *api.Watcher, p *tea.Program) {
	for {
		ev, err := w.Next()
		if err != nil {
			p.Send(errMsg{err})
			return
		}
		p.Send(eventMsg(ev))
	}
}

type chatModel struct {
	ctx           context.Context
	c             *api.Client
	contacts      []api.Contact
	selected      string
	history       []api.Message
	input         textinput.Model
	width, height int
	warning       string
	status        string
}

func (m *chatModel) Init() tea.Cmd {
	return tea.Batch(textinput.Blink, m.loadContacts(), m.loadHistory())
}

func (m *chatModel) loadContacts() tea.Cmd {
	return func() tea.Msg {
		cs, err := m.c.Contacts(m.ctx)
		if err != nil {
			return errMsg{err}
		}
		return contactsMsg(cs)
	}
}

func (m *chatModel) loadHistory() tea.Cmd {
	peer := m.selected
	if peer == "" {
		return nil
	}
	return func() tea.Msg {
		h, err := m.c.History(m.ctx, api.HistoryParams{Peer: peer, Limit: 200})
		if err != nil {
			return errMsg{err}
		}
		return historyMsg{peer, h}
	}
}

func (m *chatModel) send(text string) tea.Cmd {
	peer := m.selected
	return func() tea.Msg {
		if _, err := m.c.Send(m.ctx, api.SendParams{Peer: peer, Text: text}); err != nil {
			return errMsg{err}
		}
		return nil
	}
}

func (m *chatModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.input.SetWidth(max(10, msg.Width-28))
	case tea.KeyPressMsg:
		switch msg.String() {
		case "ctrl+c", "esc":
			return m, tea.Quit
		case "up", "down":
			m.move(map[string]int{"up": -1, "down": 1}[msg.String()])
			return m, m.loadHistory()
		case "enter":
			text := strings.TrimSpace(m.input.Value())
			if text == "" || m.selected == "" {
				return m, nil
			}
			m.input.SetValue("")
			return m, m.send(text)
		}
	case contactsMsg:
		m.contacts = msg
		if m.selected == "" && len(m.contacts) > 0 {
			m.selected = m.contacts[0].PeerID
			return m, m.loadHistory()
		}
		return m, nil
	case historyMsg:
		if msg.peer == m.selected {
			m.history = msg.h
		}
		return m, nil
	case eventMsg:
		switch node.EventKind(msg.Kind) {
		case node.EventKeyChange:
			m.warning = fmt.Sprintf("KEY CHANGE: %s presented another identity key; its messages are refused. Compare safety numbers (p2pmsg verify), then p2pmsg trust it.", short(msg.Peer))
		case node.EventContactRequest:
			m.status = "contact request from " + short(msg.Peer) + ": p2pmsg contacts accept " + msg.Peer
		case node.EventConnectivity:
			if msg.Connected != nil {
				m.status = short(msg.Peer) + map[bool]string{true: " is online", false: " went offline"}[*msg.Connected]
			}
		}
		cmds := []tea.Cmd{m.loadContacts()}
		if msg.Peer == m.selected {
			cmds = append(cmds, m.loadHistory())
		}
		return m, tea.Batch(cmds...)
	case errMsg:
		m.status = "error: " + msg.err.Error()
		return m, nil
	}
	var cmd tea.Cmd
	m.input, cmd = m.input.Update(msg)
	return m, cmd
}

func (m *chatModel) move(d int) {
	for i, c := range m.contacts {
		if c.PeerID == m.selected {
			m.selected = m.contacts[(i+d+len(m.contacts))%len(m.contacts)].PeerID
			return
		}
	}
	if len(m.contacts) > 0 { // a peer not (yet) in the list: go to the list
		m.selected = m.contacts[0].PeerID
	}
}

// fit cuts s to n columns (runes; wide characters may still overflow).
func fit(s string, n int) string {
	r := []rune(s)
	if n <= 1 || len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func short(peerID string) string {
	if len(peerID) > 8 {
		return "…" + peerID[len(peerID)-6:]
	}
	return peerID
}

var (
	styleSelected = lipgloss.NewStyle().Bold(true).Reverse(true)
	styleWarning  = lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("9"))
	styleDim      = lipgloss.NewStyle().Faint(true)
	stylePane     = lipgloss.NewStyle().Border(lipgloss.NormalBorder())
)

// stateMark shows a message's delivery state as signal-style ticks.
func stateMark(m api.Message) string {
	switch m.State {
	case "queued":
		return "○ queued"
	case "sent":
		return "✓ sent"
	case "mailboxed":
		return "✓ mailboxed"
	case "delivered":
		return "✓✓ delivered"
	case "failed":
		return "✗ failed: " + m.Error
	}
	return ""
}

func (m *chatModel) View() tea.View {
	v := tea.NewView(m.render())
	v.AltScreen = true
	return v
}

func (m *chatModel) render() string {
	if m.width == 0 {
		return "starting…"
	}
	h := max(3, m.height-8)
	var left []string
	for _, c := range m.contacts {
		name := printable(c.Name, true)
		if name == "" {
			name = short(c.PeerID)
		}
		if c.State == "request" {
			name = "? " + name // a contact request
		}
		line := fmt.Sprintf("%-13.13s %-8.8s", name, c.Path)
		if c.PeerID == m.selected {
			line = styleSelected.Render(line)
		}
		left = append(left, line)
	}
	if len(left) == 0 {
		left = append(left, styleDim.Render("no contacts yet"))
	}
	rw := max(20, m.width-28)
	var right []string
	for _, msg := range m.history {
		who := "them"
		if msg.Direction == "out" {
			who = "me"
		}
		line := fmt.Sprintf("%s %s: %s", msg.Stored.Local().Format("15:04"), who, printable(msg.Text, true))
		if mark := stateMark(msg); mark != "" {
			line += "  " + mark
		}
		line = fit(line, rw-2) // one row per message: the layout never overflows
		right = append(right, line)
	}
	if len(right) > h {
		right = right[len(right)-h:]
	}
	body := lipgloss.JoinHorizontal(lipgloss.Top,
		stylePane.Width(24).Height(h).Render(strings.Join(left, "\n")),
		stylePane.Width(rw).Height(h).Render(strings.Join(right, "\n")))
	var b strings.Builder
	title := "no conversation: choose a contact with ↑/↓"
	if m.selected != "" {
		title = "conversation with " + m.selected
	}
	b.WriteString(fit(title, m.width) + "\n")
	if m.warning != "" {
		b.WriteString(styleWarning.Render(fit(m.warning, m.width)) + "\n")
	}
	b.WriteString(body + "\n")
	b.WriteString(m.input.View() + "\n")
	b.WriteString(styleDim.Render(fit("↑/↓ contact · Enter send · Esc quit  "+printable(m.status, true), m.width)))
	return b.String()
}
