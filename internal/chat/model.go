package chat

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textarea"
	tea "charm.land/bubbletea/v2"

	"github.com/p2pmsg/p2pmsg/internal/api"
)

// Client is what the screen asks of the daemon: *api.Client, or a
// test's.
type Client interface {
	Contacts(ctx context.Context) ([]api.Contact, error)
	History(ctx context.Context, p api.HistoryParams) ([]api.Message, error)
	Message(ctx context.Context, id string) (api.Message, error)
	Send(ctx context.Context, p api.SendParams) (api.SendResult, error)
	Read(ctx context.Context, peer, until string) (api.ReadResult, error)
	Edit(ctx context.Context, peer, id, text string) (api.Changed, error)
	Delete(ctx context.Context, peer, id string) (api.Changed, error)
	React(ctx context.Context, peer, id, emoji string) (api.Changed, error)
	ContactOp(ctx context.Context, method, peer string) (api.Contact, error)
}

// Messages the caller sends the program.
type (
	// EventMsg is an event of the daemon's stream.
	EventMsg api.Event
	// ConnMsg says the daemon went away (Up false: the screen keeps
	// what it shows and its drafts, and says so) or is back (Up: the
	// screen reloads).
	ConnMsg struct {
		Up  bool
		Err error
	}
)

// Messages the screen's commands answer with.
type (
	contactsMsg []api.Contact
	pageMsg     struct {
		peer   string
		older  bool // a page before the first loaded message
		msgs   []api.Message
		err    error
		before string
	}
	oneMsg struct {
		peer string
		id   string
		m    api.Message
		err  error
	}
	batchMsg struct {
		peer  string
		found []api.Message
		gone  []string
		err   error
	}
	sentMsg struct {
		peer, text, editing string
		err                 error
	}
	doneMsg struct {
		what string
		err  error
	}
)

// pageSize is how many messages one load brings.
const pageSize = 200

// mode is what the keys do now.
type mode int

const (
	composing     mode = iota
	picking            // a message is picked: edit, delete, react, reply
	reacting           // the composer takes an emoji
	confirmQuit        // drop the drafts and quit?
	confirmDelete      // delete the picked message for everyone?
)

// quickReactions are offered by number while reacting.
var quickReactions = []string{"👍", "❤️", "😂", "😮", "😢", "🙏"}

// Model is the chat screen.
type Model struct {
	ctx     context.Context
	c       Client
	keys    keyMap
	help    help.Model
	compose textarea.Model

	contacts []api.Contact // ordered by last activity
	selected string
	convs    map[string]*convo
	mode     mode

	// stale: the messages that events said changed, per conversation,
	// reloaded at the next refresh with the contacts (contactsStale).
	stale         map[string]map[string]bool
	contactsStale bool
	refreshing    bool // a refresh is due

	// blurred: the terminal says its window lost the focus; nothing is
	// marked read meanwhile (no one is looking).
	blurred bool

	width, height int
	status        string // the last thing that happened
	warning       string // a key change, until the user acts
	online        bool

	// Loc and Now place messages in days; tests set them.
	Loc *time.Location
	Now func() time.Time
}

// New makes the screen; peer, if not empty, is the conversation shown
// first.
func New(ctx context.Context, c Client, peer string) *Model {
	ta := textarea.New()
	ta.Prompt = "› "
	ta.ShowLineNumbers = false
	ta.Placeholder = "a message; enter sends, alt+enter starts a new line"
	ta.DynamicHeight = true
	ta.MinHeight, ta.MaxHeight = 1, 6
	ta.CharLimit = 0
	ta.KeyMap.InsertNewline = key.NewBinding(key.WithKeys("alt+enter", "ctrl+j"))
	// A steady cursor: a blinking one redraws the screen twice a second
	// for nothing.
	st := ta.Styles()
	st.Cursor.Blink = false
	ta.SetStyles(st)
	ta.Focus()
	return &Model{ctx: ctx, c: c, keys: newKeyMap(), help: help.New(), compose: ta, selected: peer,
		convs: map[string]*convo{}, stale: map[string]map[string]bool{}, online: true, Loc: time.Local, Now: time.Now}
}

func (m *Model) Init() tea.Cmd { return tea.Batch(m.loadContacts(), m.loadLatest(m.selected)) }

func (m *Model) conv(peer string) *convo {
	c, ok := m.convs[peer]
	if !ok {
		c = newConvo(peer)
		m.convs[peer] = c
	}
	return c
}

func (m *Model) loadContacts() tea.Cmd {
	return func() tea.Msg {
		cs, err := m.c.Contacts(m.ctx)
		if err != nil {
			return doneMsg{"load the contacts", err}
		}
		return contactsMsg(cs)
	}
}

func (m *Model) loadLatest(peer string) tea.Cmd {
	if peer == "" {
		return nil
	}
	return func() tea.Msg {
		h, err := m.c.History(m.ctx, api.HistoryParams{Peer: peer, Limit: pageSize})
		return pageMsg{peer: peer, msgs: h, err: err}
	}
}

func (m *Model) loadOlder(c *convo) tea.Cmd {
	if c.loading || c.complete || len(c.msgs) == 0 {
		return nil
	}
	c.loading = true
	peer, before := c.peer, c.msgs[0].ID
	return func() tea.Msg {
		h, err := m.c.History(m.ctx, api.HistoryParams{Peer: peer, Before: before, Limit: pageSize})
		return pageMsg{peer: peer, older: true, msgs: h, err: err, before: before}
	}
}

func (m *Model) loadOne(peer, id string) tea.Cmd {
	return func() tea.Msg {
		msg, err := m.c.Message(m.ctx, id)
		return oneMsg{peer, id, msg, err}
	}
}

// run makes a command of a call whose only answer is success or not.
func (m *Model) run(what string, f func() error) tea.Cmd {
	return func() tea.Msg { return doneMsg{what, f()} }
}

// markRead tells the daemon the shown conversation is read, when its
// latest messages show and one of them is unread.
func (m *Model) markRead() tea.Cmd {
	c, ok := m.convs[m.selected]
	if !ok || c.offset != 0 || !m.online || m.blurred {
		return nil
	}
	id, unread := c.lastIncoming()
	if !unread || id == c.lastRead {
		return nil
	}
	c.lastRead = id
	peer := c.peer
	return m.run("mark read", func() error { _, err := m.c.Read(m.ctx, peer, id); return err })
}

// contact returns the contact of peer, if known.
func (m *Model) contact(peer string) (api.Contact, bool) {
	for _, c := range m.contacts {
		if c.PeerID == peer {
			return c, true
		}
	}
	return api.Contact{}, false
}

// name is what the screen calls a peer.
// A name the peer gave itself is marked ~, as contacts list marks it:
// a stranger may take the name of a friend.
func (m *Model) name(peer string) string {
	c, ok := m.contact(peer)
	switch {
	case ok && c.Name != "":
		return clean(c.Name, true)
	case ok && c.ProfileName != "":
		return "~" + clean(c.ProfileName, true)
	}
	return short(peer)
}

// sortContacts orders the conversations by their last message, the
// newest first; those with none last, by name.
func (m *Model) sortContacts() {
	slices.SortStableFunc(m.contacts, func(a, b api.Contact) int {
		switch {
		case a.LastActivity.After(b.LastActivity):
			return -1
		case b.LastActivity.After(a.LastActivity):
			return 1
		}
		return strings.Compare(strings.ToLower(a.DisplayName+a.PeerID), strings.ToLower(b.DisplayName+b.PeerID))
	})
}

// switchTo shows another conversation, keeping the composer's draft with
// the one it leaves.
func (m *Model) switchTo(peer string) tea.Cmd {
	if peer == m.selected {
		return nil
	}
	if m.selected != "" {
		cur := m.conv(m.selected)
		if m.mode == reacting {
			// The composer holds the reaction being typed; the draft
			// waits in the conversation.
			m.compose.SetValue(cur.draft)
		}
		cur.draft = m.compose.Value()
	}
	m.selected = peer
	c := m.conv(peer)
	m.compose.SetValue(c.draft)
	m.mode = composing
	c.sel = -1
	if c.loaded {
		return m.markRead()
	}
	return m.loadLatest(peer)
}

// step moves to the next (d = 1) or previous conversation.
func (m *Model) step(d int) tea.Cmd {
	if len(m.contacts) == 0 {
		return nil
	}
	i := slices.IndexFunc(m.contacts, func(c api.Contact) bool { return c.PeerID == m.selected })
	if i < 0 {
		return m.switchTo(m.contacts[0].PeerID)
	}
	return m.switchTo(m.contacts[(i+d+len(m.contacts))%len(m.contacts)].PeerID)
}

// drafts counts the unsent drafts, the composer's included.
func (m *Model) drafts() int {
	n := 0
	if strings.TrimSpace(m.compose.Value()) != "" {
		n++
	}
	for p, c := range m.convs {
		if p != m.selected && strings.TrimSpace(c.draft) != "" {
			n++
		}
	}
	return n
}

func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.compose.SetWidth(max(4, m.width))
		return m, nil
	case tea.KeyPressMsg:
		// Someone is typing: whatever the terminal said of its focus.
		m.blurred = false
		return m, m.key(msg)
	case tea.BlurMsg:
		m.blurred = true
		return m, nil
	case tea.FocusMsg:
		m.blurred = false
		return m, m.markRead()
	case contactsMsg:
		m.contacts = msg
		m.sortContacts()
		if m.selected == "" && len(m.contacts) > 0 {
			return m, m.switchTo(m.contacts[0].PeerID)
		}
		return m, nil
	case pageMsg:
		c := m.conv(msg.peer)
		if msg.older {
			c.loading = false
		}
		if msg.err != nil {
			m.fail("load the conversation", msg.err)
			return m, nil
		}
		// Only an empty page is the end: a short one may be short for
		// the 4 MiB bound on a page's text.
		if len(msg.msgs) == 0 && (msg.older || !c.loaded) {
			c.complete = true
		}
		c.loaded = true
		c.merge(msg.msgs)
		if msg.peer == m.selected {
			return m, m.markRead()
		}
		return m, nil
	case oneMsg:
		c := m.conv(msg.peer)
		switch {
		case msg.err == nil:
			c.merge([]api.Message{msg.m})
		case api.CodeOf(msg.err) == api.CodeNotFound:
			c.remove(msg.id) // gone: its timer ran out
		default:
			m.fail("load a message", msg.err)
		}
		if msg.peer == m.selected {
			return m, m.markRead()
		}
		return m, nil
	case sentMsg:
		if msg.err != nil {
			// The draft stays where it was typed: nothing is lost.
			m.fail("send", msg.err)
			return m, nil
		}
		c := m.conv(msg.peer)
		rest := ""
		if msg.editing != "" {
			rest, c.stash = c.stash, "" // the draft the edit set aside
		}
		if msg.peer == m.selected && m.compose.Value() == msg.text {
			m.compose.SetValue(rest)
		} else if c.draft == msg.text {
			c.draft = rest
		}
		c.replyTo, c.editing, c.offset = "", "", 0
		m.status = ""
		if msg.editing != "" {
			return m, m.loadOne(msg.peer, msg.editing)
		}
		return m, nil
	case doneMsg:
		if msg.err != nil {
			m.fail(msg.what, msg.err)
		}
		return m, nil
	case EventMsg:
		return m, m.event(api.Event(msg))
	case refreshMsg:
		return m, m.refresh()
	case batchMsg:
		if msg.err != nil {
			m.fail("load messages", msg.err)
		}
		c := m.conv(msg.peer)
		c.merge(msg.found)
		for _, id := range msg.gone {
			c.remove(id)
		}
		if msg.peer == m.selected {
			return m, m.markRead()
		}
		return m, nil
	case ConnMsg:
		m.online = msg.Up
		if !msg.Up {
			m.status = "the daemon went away; reconnecting… (drafts are kept)"
			return m, nil
		}
		m.status = "connected to the daemon"
		cmds := []tea.Cmd{m.loadContacts()}
		for _, c := range m.convs {
			c.lastRead = ""
			if c.loaded {
				cmds = append(cmds, m.loadLatest(c.peer))
			}
		}
		return m, tea.Batch(cmds...)
	}
	var cmd tea.Cmd
	m.compose, cmd = m.compose.Update(msg)
	return m, cmd
}

// fail says what went wrong on the status line.
func (m *Model) fail(what string, err error) {
	if api.CodeOf(err) == api.CodeNoDaemon {
		m.online = false
		m.status = "the daemon is not running; reconnecting… (drafts are kept)"
		return
	}
	m.status = what + ": " + clean(err.Error(), true)
}

// refreshEvery gathers the events of a burst (a thousand messages
// arriving) into one reload of what they changed.
const refreshEvery = 100 * time.Millisecond

type refreshMsg struct{}

// event acts on one event of the daemon's stream: what it changed is
// reloaded with the others of its burst.
func (m *Model) event(ev api.Event) tea.Cmd {
	var cmds []tea.Cmd
	switch ev.Kind {
	case "key-change":
		m.warning = fmt.Sprintf("KEY CHANGE: %s presented another identity key; its messages are refused. Compare safety numbers (p2pmsg verify), then p2pmsg trust it.", m.name(ev.Peer))
	case "contact-request":
		m.status = "a contact request from " + m.name(ev.Peer) + " (alt+a accepts, alt+x blocks)"
	case "connectivity":
		if ev.Connected != nil {
			m.status = m.name(ev.Peer) + map[bool]string{true: " is online", false: " went offline"}[*ev.Connected]
		}
	case "message":
		if ev.Direction == "in" && ev.Peer != m.selected {
			// A bell for a message elsewhere: the shown one is seen.
			cmds = append(cmds, tea.Raw("\a"))
		}
	}
	if ev.MessageID != "" && ev.Peer != "" {
		if c, ok := m.convs[ev.Peer]; ok && c.loaded {
			if m.stale[ev.Peer] == nil {
				m.stale[ev.Peer] = map[string]bool{}
			}
			m.stale[ev.Peer][ev.MessageID] = true
		}
	}
	m.contactsStale = true
	if !m.refreshing {
		m.refreshing = true
		cmds = append(cmds, tea.Tick(refreshEvery, func(time.Time) tea.Msg { return refreshMsg{} }))
	}
	return tea.Batch(cmds...)
}

// refresh reloads what the events since the last refresh changed: the
// contacts (order, unread counts), and each changed message, in one
// command per conversation.
func (m *Model) refresh() tea.Cmd {
	m.refreshing = false
	var cmds []tea.Cmd
	if m.contactsStale {
		m.contactsStale = false
		cmds = append(cmds, m.loadContacts())
	}
	for peer, ids := range m.stale {
		delete(m.stale, peer)
		list := make([]string, 0, len(ids))
		for id := range ids {
			list = append(list, id)
		}
		cmds = append(cmds, func() tea.Msg {
			out := batchMsg{peer: peer}
			for _, id := range list {
				msg, err := m.c.Message(m.ctx, id)
				switch {
				case err == nil:
					out.found = append(out.found, msg)
				case api.CodeOf(err) == api.CodeNotFound:
					out.gone = append(out.gone, id) // its timer ran out
				default:
					out.err = err
					return out
				}
			}
			return out
		})
	}
	return tea.Batch(cmds...)
}

// key acts on a key press.
func (m *Model) key(k tea.KeyPressMsg) tea.Cmd {
	c := m.conv(m.selected)
	switch m.mode {
	case confirmQuit:
		switch {
		case key.Matches(k, m.keys.Yes):
			return tea.Quit
		case key.Matches(k, m.keys.No):
			m.mode, m.status = composing, ""
		}
		return nil
	case confirmDelete:
		m.mode, m.status = picking, ""
		if !key.Matches(k, m.keys.Yes) {
			return nil
		}
		// The message asked about, by id: what is picked may have moved
		// (a message disappeared meanwhile).
		if c.index(c.target) < 0 {
			m.status = "that message is gone: nothing deleted"
			return nil
		}
		peer, id := c.peer, c.target
		return m.run("delete", func() error { _, err := m.c.Delete(m.ctx, peer, id); return err })
	}
	switch {
	case key.Matches(k, m.keys.Quit):
		return tea.Quit
	case key.Matches(k, m.keys.Next):
		return m.step(1)
	case key.Matches(k, m.keys.Prev):
		return m.step(-1)
	case key.Matches(k, m.keys.Accept):
		if ct, ok := m.contact(m.selected); ok && ct.State == "request" {
			peer := m.selected
			return tea.Sequence(m.run("accept", func() error { _, err := m.c.ContactOp(m.ctx, "contacts.accept", peer); return err }), m.loadContacts())
		}
		return nil
	case key.Matches(k, m.keys.Block):
		if ct, ok := m.contact(m.selected); ok && ct.State == "request" && !ct.Blocked {
			peer := m.selected
			return tea.Sequence(m.run("block", func() error { _, err := m.c.ContactOp(m.ctx, "contacts.block", peer); return err }), m.loadContacts())
		}
		return nil
	case key.Matches(k, m.keys.PageUp):
		c.offset += max(1, m.bodyHeight()-2)
		return m.loadIfTop(c)
	case key.Matches(k, m.keys.PageDown):
		c.offset = max(0, c.offset-max(1, m.bodyHeight()-2))
		return m.markRead()
	}
	switch m.mode {
	case picking:
		return m.pickKey(k, c)
	case reacting:
		return m.reactKey(k, c)
	}
	// Composing.
	empty := strings.TrimSpace(m.compose.Value()) == ""
	switch {
	case key.Matches(k, m.keys.Back):
		switch {
		case c.editing != "":
			m.compose.SetValue(c.stash) // the draft the edit set aside
			c.editing, c.stash = "", ""
			return nil
		case c.replyTo != "":
			c.replyTo = ""
			return nil
		case m.drafts() > 0:
			m.mode = confirmQuit
			m.status = fmt.Sprintf("Drop %d unsent draft(s) and quit? y/n", m.drafts())
			return nil
		}
		return tea.Quit
	case key.Matches(k, m.keys.Select):
		if len(c.msgs) > 0 {
			m.mode, c.sel, m.status = picking, len(c.msgs)-1, ""
			c.reveal(c.sel, m.bodyHeight(), m.layout())
		}
		return nil
	case key.Matches(k, m.keys.Send):
		text := strings.TrimSpace(m.compose.Value())
		if text == "" || m.selected == "" {
			return nil
		}
		return m.send(c, m.compose.Value())
	case empty && key.Matches(k, m.keys.Top):
		c.offset = 1 << 30
		return m.loadIfTop(c)
	case empty && key.Matches(k, m.keys.Bottom):
		c.offset = 0
		return m.markRead()
	}
	var cmd tea.Cmd
	m.compose, cmd = m.compose.Update(k)
	return cmd
}

// loadIfTop loads an older page when the top of what is loaded shows.
func (m *Model) loadIfTop(c *convo) tea.Cmd {
	if _, atTop := c.window(m.bodyHeight(), m.layout()); atTop {
		return m.loadOlder(c)
	}
	return nil
}

// send sends the composer's text: a new message, a reply, or an edit.
// The composer keeps it until the daemon has it.
func (m *Model) send(c *convo, text string) tea.Cmd {
	peer, reply, editing := c.peer, c.replyTo, c.editing
	m.status = "sending…"
	return func() tea.Msg {
		var err error
		if editing != "" {
			_, err = m.c.Edit(m.ctx, peer, editing, text)
		} else {
			_, err = m.c.Send(m.ctx, api.SendParams{Peer: peer, Text: text, ReplyTo: reply})
		}
		return sentMsg{peer: peer, text: text, editing: editing, err: err}
	}
}

// pickKey acts on a key while a message is picked.
func (m *Model) pickKey(k tea.KeyPressMsg, c *convo) tea.Cmd {
	if c.sel < 0 || c.sel >= len(c.msgs) {
		m.mode = composing
		return nil
	}
	picked := c.msgs[c.sel]
	switch {
	case key.Matches(k, m.keys.Back), key.Matches(k, m.keys.Select):
		m.mode, c.sel = composing, -1
	case key.Matches(k, m.keys.Up):
		if c.sel > 0 {
			c.sel--
			c.reveal(c.sel, m.bodyHeight(), m.layout())
			return m.loadIfTop(c)
		}
		return m.loadOlder(c)
	case key.Matches(k, m.keys.Down):
		if c.sel < len(c.msgs)-1 {
			c.sel++
			c.reveal(c.sel, m.bodyHeight(), m.layout())
		}
	case key.Matches(k, m.keys.Reply):
		c.replyTo, c.editing = picked.ID, ""
		m.mode, c.sel = composing, -1
	case key.Matches(k, m.keys.Edit):
		if picked.Direction != "out" || picked.Deleted {
			m.status = "only your own messages can be edited"
			return nil
		}
		if c.editing == "" {
			c.stash = m.compose.Value()
		}
		c.editing, c.replyTo = picked.ID, ""
		m.compose.SetValue(picked.Text)
		m.mode, c.sel = composing, -1
	case key.Matches(k, m.keys.Delete):
		if picked.Direction != "out" || picked.Deleted {
			m.status = "only your own messages can be deleted for everyone"
			return nil
		}
		m.mode, c.target = confirmDelete, picked.ID
		m.status = "Delete this message for everyone? y/n"
	case key.Matches(k, m.keys.React):
		if picked.Deleted {
			return nil
		}
		m.mode, c.target = reacting, picked.ID
		c.draft = m.compose.Value()
		m.compose.Reset()
	}
	return nil
}

// reactKey takes a reaction: a number for a quick one, or an emoji typed
// in the composer and enter.
func (m *Model) reactKey(k tea.KeyPressMsg, c *convo) tea.Cmd {
	done := func() {
		m.compose.SetValue(c.draft)
		c.draft = ""
		m.mode = picking
	}
	react := func(emoji string) tea.Cmd {
		done()
		if c.index(c.target) < 0 {
			m.status = "that message is gone: no reaction sent"
			return nil
		}
		peer, id := c.peer, c.target
		return m.run("react", func() error { _, err := m.c.React(m.ctx, peer, id, emoji); return err })
	}
	switch s := k.String(); {
	case key.Matches(k, m.keys.Back):
		done()
		return nil
	case len(s) == 1 && s[0] >= '1' && s[0] <= byte('0'+len(quickReactions)) && m.compose.Value() == "":
		return react(quickReactions[s[0]-'1'])
	case key.Matches(k, m.keys.Send):
		if e := strings.TrimSpace(m.compose.Value()); e != "" {
			return react(e)
		}
		return nil
	}
	var cmd tea.Cmd
	m.compose, cmd = m.compose.Update(k)
	return cmd
}
