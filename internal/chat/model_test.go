package chat

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/p2pmsg/p2pmsg/internal/api"
	"github.com/p2pmsg/p2pmsg/internal/jsonrpc"
	"github.com/p2pmsg/p2pmsg/node"
)

var update = flag.Bool("update", false, "write the golden files anew")

// book is the daemon as the screen's tests see it: contacts and
// conversations in memory, and a log of the calls that change them. (The
// screen against a real daemon is tested in a pseudo-terminal, in
// cmd/p2pmsg.)
type book struct {
	mu       sync.Mutex
	contacts []api.Contact
	msgs     map[string][]api.Message // per peer, oldest first
	calls    []string
	away     bool // every call fails as when no daemon runs
	seq      int
}

// fail is the error of every call while the daemon is away: the one
// the API client gives when its connection closed.
func (b *book) fail() error {
	if b.away {
		return jsonrpc.ErrClosed
	}
	return nil
}

func (b *book) log(f string, args ...any) {
	b.calls = append(b.calls, fmt.Sprintf(f, args...))
}

func (b *book) Contacts(context.Context) ([]api.Contact, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.fail(); err != nil {
		return nil, err
	}
	return slices.Clone(b.contacts), nil
}

func (b *book) History(_ context.Context, p api.HistoryParams) ([]api.Message, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.fail(); err != nil {
		return nil, err
	}
	ms := b.msgs[p.Peer]
	end := len(ms)
	if p.Before != "" {
		end = slices.IndexFunc(ms, func(m api.Message) bool { return m.ID == p.Before })
	}
	return slices.Clone(ms[max(0, end-p.Limit):end]), nil
}

func (b *book) Message(_ context.Context, id string) (api.Message, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ms := range b.msgs {
		for _, m := range ms {
			if m.ID == id {
				return m, nil
			}
		}
	}
	return api.Message{}, fmt.Errorf("%w: no message %s", node.ErrNotFound, id) // as the API answers
}

func (b *book) Send(_ context.Context, p api.SendParams) (api.SendResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.fail(); err != nil {
		return api.SendResult{}, err
	}
	b.log("send %s %q reply=%s", p.Peer, p.Text, p.ReplyTo)
	b.seq++
	m := api.Message{ID: fmt.Sprintf("sent%028d", b.seq), Peer: p.Peer, Direction: "out", Text: p.Text, State: "queued",
		Sent: day2.Add(time.Hour), Stored: day2.Add(time.Hour), ReplyTo: p.ReplyTo}
	b.msgs[p.Peer] = append(b.msgs[p.Peer], m)
	return api.SendResult{ID: m.ID, State: m.State}, nil
}

func (b *book) Read(_ context.Context, peer, until string) (api.ReadResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.log("read %s until %s", peer, until)
	return api.ReadResult{}, b.fail()
}

func (b *book) Edit(_ context.Context, peer, id, text string) (api.Changed, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.log("edit %s %s %q", peer, id, text)
	return api.Changed{ID: id}, b.fail()
}

func (b *book) Delete(_ context.Context, peer, id string) (api.Changed, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.log("delete %s %s", peer, id)
	return api.Changed{ID: id}, b.fail()
}

func (b *book) React(_ context.Context, peer, id, emoji string) (api.Changed, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.log("react %s %s %s", peer, id, emoji)
	return api.Changed{ID: id}, b.fail()
}

func (b *book) ContactOp(_ context.Context, method, peer string) (api.Contact, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.log("%s %s", method, peer)
	for i, c := range b.contacts {
		if c.PeerID == peer && method == "contacts.accept" {
			b.contacts[i].State = "accepted"
		}
	}
	return api.Contact{PeerID: peer}, b.fail()
}

func (b *book) called(what string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.ContainsFunc(b.calls, func(c string) bool { return strings.HasPrefix(c, what) })
}

const (
	bob   = "12D3KooWBobBobBobBobBobBobBobBobBobBobBobBobBobBob01"
	carol = "12D3KooWCarolCarolCarolCarolCarolCarolCarolCarol02"
	dave  = "12D3KooWDaveDaveDaveDaveDaveDaveDaveDaveDaveDave03"
	erin  = "12D3KooWErinErinErinErinErinErinErinErinErinErin04"
)

var (
	day1 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	day2 = time.Date(2026, 12, 2, 9, 15, 0, 0, time.UTC)
)

func msgAt(id, peer, dir, text, state string, at time.Time) api.Message {
	return api.Message{ID: id, Peer: peer, Direction: dir, Text: text, State: state, Sent: at, Stored: at, Name: "Bob"}
}

// newBook is a small world: Bob, a verified friend, with a conversation
// over two days that holds every kind of message; Carol, a request;
// Dave, blocked; Erin, offline with unread messages.
func newBook() *book {
	b := &book{msgs: map[string][]api.Message{}}
	b.contacts = []api.Contact{
		{PeerID: bob, Name: "Bob", DisplayName: "Bob", State: "accepted", Verified: true, Path: "direct", Timer: 3600, LastActivity: day2.Add(20 * time.Minute)},
		{PeerID: carol, DisplayName: "Carol", ProfileName: "Carol", State: "request", Path: "offline", Unread: 1, LastActivity: day2},
		{PeerID: dave, Name: "Dave", DisplayName: "Dave", State: "accepted", Blocked: true, Path: "offline"},
		{PeerID: erin, Name: "Erin", DisplayName: "Erin", State: "accepted", Path: "offline", Unread: 3, LastActivity: day1},
	}
	hi := msgAt("m01", bob, "in", "Hi! Are we still on for Saturday?", "read", day1)
	yes := msgAt("m02", bob, "out", "Yes — 7pm at the usual place.", "delivered", day1.Add(2*time.Minute))
	yes.Reactions = []api.Reaction{{Peer: bob, Name: "Bob", Emoji: "👍"}}
	games := msgAt("m03", bob, "in", "Great.\nI'll bring the board games.\nAnd snacks.", "read", day2)
	perfect := msgAt("m04", bob, "out", "Perfect", "read", day2.Add(time.Minute))
	perfect.ReplyTo = "m03"
	late := msgAt("m05", bob, "out", "Running 10 minutes late, sorry", "delivered", day2.Add(2*time.Minute))
	late.Edited = day2.Add(3 * time.Minute)
	gone := msgAt("m06", bob, "out", "", "delivered", day2.Add(4*time.Minute))
	gone.Deleted = true
	skew := msgAt("m07", bob, "in", "My clock is wrong, sorry", "read", day2.Add(5*time.Minute))
	skew.Sent = skew.Stored.Add(-2 * time.Hour)
	long := msgAt("m08", bob, "out", strings.Repeat("A long message that wraps onto several rows of the screen. ", 5), "queued", day2.Add(6*time.Minute))
	failed := msgAt("m09", bob, "out", "this one failed", "failed", day2.Add(7*time.Minute))
	failed.Error = "the recipient refused it"
	timed := msgAt("m10", bob, "in", "This one disappears", "read", day2.Add(20*time.Minute))
	timed.Timer = 3600
	b.msgs[bob] = []api.Message{hi, yes, games, perfect, late, gone, skew, long, failed, timed}
	b.msgs[carol] = []api.Message{msgAt("c01", carol, "in", "Hello, we met at the conference", "received", day2)}
	return b
}

// drive runs a command and feeds what it answers back into the model,
// as the program would, and returns the raw output (the bell) asked for
// and whether the program was told to quit.
func drive(t testing.TB, m *Model, cmd tea.Cmd) (raw []string, quit bool) {
	t.Helper()
	queue := []tea.Cmd{cmd}
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		if c == nil {
			continue
		}
		msg := c()
		switch msg := msg.(type) {
		case nil:
			continue
		case tea.BatchMsg:
			queue = append(queue, msg...)
			continue
		case tea.RawMsg:
			raw = append(raw, fmt.Sprint(msg.Msg))
			continue
		case tea.QuitMsg:
			quit = true
			continue
		}
		if v := reflect.ValueOf(msg); v.Kind() == reflect.Slice && v.Type().Elem() == reflect.TypeFor[tea.Cmd]() {
			for i := range v.Len() { // tea.Sequence's, in order
				queue = append(queue, v.Index(i).Interface().(tea.Cmd))
			}
			continue
		}
		_, next := m.Update(msg)
		queue = append(queue, next)
	}
	return raw, quit
}

// screen makes a model of b, sized, loaded, showing peer.
func screen(t testing.TB, b *book, w, h int, peer string) *Model {
	t.Helper()
	m := New(context.Background(), b, peer)
	m.Loc = time.UTC
	m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	drive(t, m, m.Init())
	return m
}

func press(t testing.TB, m *Model, keys ...string) (raw []string, quit bool) {
	t.Helper()
	for _, k := range keys {
		r, q := drive(t, m, func() tea.Msg { return keyMsg(k) })
		raw, quit = append(raw, r...), quit || q
	}
	return raw, quit
}

// keyMsg makes the key press that k names, as tea's String writes it.
func keyMsg(k string) tea.KeyPressMsg {
	named := map[string]tea.Key{
		"enter": {Code: tea.KeyEnter}, "esc": {Code: tea.KeyEscape}, "tab": {Code: tea.KeyTab},
		"up": {Code: tea.KeyUp}, "down": {Code: tea.KeyDown}, "pgup": {Code: tea.KeyPgUp}, "pgdown": {Code: tea.KeyPgDown},
		"home": {Code: tea.KeyHome}, "end": {Code: tea.KeyEnd},
		"ctrl+n": {Code: 'n', Mod: tea.ModCtrl}, "ctrl+p": {Code: 'p', Mod: tea.ModCtrl},
		"alt+a": {Code: 'a', Mod: tea.ModAlt}, "alt+x": {Code: 'x', Mod: tea.ModAlt},
		"alt+enter": {Code: tea.KeyEnter, Mod: tea.ModAlt},
	}
	if k, ok := named[k]; ok {
		return tea.KeyPressMsg(k)
	}
	r := []rune(k)
	return tea.KeyPressMsg{Code: r[0], Text: k}
}

func typeText(t testing.TB, m *Model, s string) {
	t.Helper()
	for _, r := range s {
		press(t, m, string(r))
	}
}

// plain is the screen without its styles.
func plain(m *Model) string { return ansi.Strip(m.Render()) }

// The screen at three sizes, compared with golden files
// (go test ./internal/chat -run Golden -update writes them): every row
// is used, none is wider than the terminal, and it shows names, dates,
// wrapped and multi-line text, replies, reactions, edits, deletions,
// ticks, a failure, a skewed clock, unread counts and the legend.
func TestGolden(t *testing.T) {
	for _, size := range [][2]int{{80, 24}, {120, 40}, {200, 60}} {
		w, h := size[0], size[1]
		t.Run(fmt.Sprintf("%dx%d", w, h), func(t *testing.T) {
			m := screen(t, newBook(), w, h, bob)
			typeText(t, m, "a draft")
			got := plain(m)
			lines := strings.Split(got, "\n")
			if len(lines) != h {
				t.Fatalf("%d rows, want %d", len(lines), h)
			}
			for i, l := range lines {
				if lipgloss.Width(l) != w {
					t.Fatalf("row %d is %d columns wide, want %d: %q", i, lipgloss.Width(l), w, l)
				}
			}
			path := filepath.Join("testdata", fmt.Sprintf("chat_%dx%d.golden", w, h))
			if *update {
				os.MkdirAll("testdata", 0o755)
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if got != string(want) {
				t.Fatalf("the screen differs from %s:\n%s", path, got)
			}
		})
	}
}

// Typing stays in its conversation: arrows move in the draft, not
// between conversations; each conversation keeps its own draft.
func TestDraftsStayPut(t *testing.T) {
	b := newBook()
	m := screen(t, b, 100, 30, bob)
	typeText(t, m, "for bob")
	press(t, m, "up", "down", "up")
	if m.selected != bob || m.compose.Value() != "for bob" {
		t.Fatalf("after arrows: %s, %q", m.selected, m.compose.Value())
	}
	press(t, m, "ctrl+n") // to the next conversation by activity: Carol
	if m.selected != carol || m.compose.Value() != "" {
		t.Fatalf("next: %s, %q", m.selected, m.compose.Value())
	}
	typeText(t, m, "for carol")
	press(t, m, "alt+enter")
	typeText(t, m, "second line")
	if m.compose.Value() != "for carol\nsecond line" {
		t.Fatalf("a new line in the draft: %q", m.compose.Value())
	}
	press(t, m, "ctrl+p")
	if m.selected != bob || m.compose.Value() != "for bob" {
		t.Fatalf("back: %s, %q", m.selected, m.compose.Value())
	}
	// Esc asks before dropping the two drafts.
	if _, quit := press(t, m, "esc"); quit || m.mode != confirmQuit || !strings.Contains(plain(m), "Drop 2 unsent draft(s) and quit? y/n") {
		t.Fatalf("esc with drafts: quit %v, mode %v\n%s", quit, m.mode, plain(m))
	}
	if _, quit := press(t, m, "n"); quit || m.compose.Value() != "for bob" {
		t.Fatal("n dropped the draft")
	}
	if _, quit := press(t, m, "esc", "y"); !quit {
		t.Fatal("y did not quit")
	}
}

// A send that fails (the daemon away) keeps the draft; once the daemon
// is back the same enter sends it.
func TestFailedSendKeepsTheDraft(t *testing.T) {
	b := newBook()
	m := screen(t, b, 100, 30, bob)
	typeText(t, m, "important")
	b.away = true
	drive(t, m, func() tea.Msg { return ConnMsg{Up: false} })
	press(t, m, "enter")
	if m.compose.Value() != "important" || !strings.Contains(plain(m), "reconnecting") {
		t.Fatalf("after a failed send: %q\n%s", m.compose.Value(), plain(m))
	}
	b.away = false
	drive(t, m, func() tea.Msg { return ConnMsg{Up: true} })
	if strings.Contains(plain(m), "daemon away") {
		t.Fatalf("back, the title still says away:\n%s", plain(m))
	}
	press(t, m, "enter")
	if m.compose.Value() != "" || !b.called(`send `+bob+` "important"`) {
		t.Fatalf("after the daemon came back: %q, calls %v", m.compose.Value(), b.calls)
	}
}

// A message in another conversation rings the bell and counts as
// unread there; one in the shown conversation is marked read.
func TestBellAndRead(t *testing.T) {
	b := newBook()
	m := screen(t, b, 100, 30, bob)
	b.mu.Lock()
	b.msgs[erin] = append(b.msgs[erin], msgAt("e01", erin, "in", "ping", "received", day2))
	b.contacts[3].Unread++
	b.mu.Unlock()
	raw, _ := drive(t, m, func() tea.Msg {
		return EventMsg{Kind: "message", Peer: erin, MessageID: "e01", Direction: "in"}
	})
	if !slices.Contains(raw, "\a") {
		t.Fatalf("no bell for a message elsewhere: %q", raw)
	}
	if !regexp.MustCompile(`Erin +\(4\)`).MatchString(plain(m)) {
		t.Fatalf("Erin's unread count:\n%s", plain(m))
	}
	// The shown conversation: no bell, and read once it shows.
	b.mu.Lock()
	b.msgs[bob] = append(b.msgs[bob], msgAt("m11", bob, "in", "you there?", "received", day2.Add(30*time.Minute)))
	b.mu.Unlock()
	raw, _ = drive(t, m, func() tea.Msg {
		return EventMsg{Kind: "message", Peer: bob, MessageID: "m11", Direction: "in"}
	})
	if len(raw) != 0 || !b.called("read "+bob+" until m11") || !strings.Contains(plain(m), "you there?") {
		t.Fatalf("a message in the shown conversation: raw %q, calls %v", raw, b.calls)
	}
	// Switching to Carol's request reads it, and alt+a accepts it.
	press(t, m, "ctrl+n")
	if !b.called("read " + carol + " until c01") {
		t.Fatalf("Carol's message was not marked read: %v", b.calls)
	}
	if !strings.Contains(plain(m), "alt+a accepts") {
		t.Fatalf("the request's keys are not shown:\n%s", plain(m))
	}
	press(t, m, "alt+a")
	if !b.called("contacts.accept " + carol) {
		t.Fatalf("alt+a: %v", b.calls)
	}
}

// A picked message: reply, react (by number), edit, delete (asked).
func TestPickedMessage(t *testing.T) {
	b := newBook()
	m := screen(t, b, 120, 40, bob)
	press(t, m, "tab") // the latest: m10, Bob's
	press(t, m, "+", "1")
	if !b.called("react " + bob + " m10 👍") {
		t.Fatalf("react: %v", b.calls)
	}
	press(t, m, "r")
	if !strings.Contains(plain(m), "replying to: This one disappears") {
		t.Fatalf("reply:\n%s", plain(m))
	}
	typeText(t, m, "ok")
	press(t, m, "enter")
	if !b.called(`send ` + bob + ` "ok" reply=m10`) {
		t.Fatalf("reply sent: %v", b.calls)
	}
	sent := b.msgs[bob][len(b.msgs[bob])-1]
	drive(t, m, func() tea.Msg { return EventMsg{Kind: "message", Peer: bob, MessageID: sent.ID, Direction: "out"} })
	if !strings.Contains(plain(m), "↳ Bob: This one disappears") {
		t.Fatalf("the reply quotes:\n%s", plain(m))
	}
	press(t, m, "tab", "up", "up", "up") // m11 (sent), m10, m09, m08: ours, queued
	picked := m.convs[bob].msgs[m.convs[bob].sel]
	if picked.ID != "m08" {
		t.Fatalf("picked %s", picked.ID)
	}
	press(t, m, "e")
	if m.compose.Value() != picked.Text {
		t.Fatalf("edit loads the text: %q", m.compose.Value())
	}
	m.compose.SetValue("shorter")
	press(t, m, "enter")
	if !b.called(`edit ` + bob + ` m08 "shorter"`) {
		t.Fatalf("edit: %v", b.calls)
	}
	press(t, m, "tab", "up", "up", "d")
	if !strings.Contains(plain(m), "Delete this message for everyone? y/n") {
		t.Fatalf("delete asks:\n%s", plain(m))
	}
	press(t, m, "y")
	if !b.called("delete " + bob + " m09") {
		t.Fatalf("delete: %v", b.calls)
	}
}

// Scrolling back through 1,000 messages loads the older pages on
// demand, each once, until the first message shows.
func TestScrollback(t *testing.T) {
	b := newBook()
	var ms []api.Message
	for i := range 1000 {
		ms = append(ms, msgAt(fmt.Sprintf("x%04d", i), erin, "in", fmt.Sprintf("message number %d", i), "read", day1.Add(time.Duration(i)*time.Minute)))
	}
	b.msgs[erin] = ms
	m := screen(t, b, 100, 30, erin)
	if n := len(m.convs[erin].msgs); n != pageSize {
		t.Fatalf("first load: %d messages", n)
	}
	for i := 0; i < 400 && !strings.Contains(plain(m), "Tue 1 Dec 2026"); i++ {
		press(t, m, "pgup")
	}
	if !strings.Contains(plain(m), "message number 0\n") && !strings.Contains(plain(m), "message number 0 ") ||
		len(m.convs[erin].msgs) != 1000 || !m.convs[erin].complete {
		t.Fatalf("after paging up: %d loaded\n%s", len(m.convs[erin].msgs), plain(m))
	}
	press(t, m, "end")
	if !strings.Contains(plain(m), "message number 999") {
		t.Fatalf("end:\n%s", plain(m))
	}
	press(t, m, "home")
	if !strings.Contains(plain(m), "message number 0") {
		t.Fatalf("home:\n%s", plain(m))
	}
}

// A reaction being chosen, a conversation switched meanwhile: the draft
// is still there when it comes back. An edit cancelled gives back the
// draft it set aside.
func TestDraftsSurviveModes(t *testing.T) {
	b := newBook()
	m := screen(t, b, 100, 30, bob)
	typeText(t, m, "my precious draft")
	press(t, m, "tab", "+", "ctrl+n", "ctrl+p")
	if m.compose.Value() != "my precious draft" || m.mode != composing {
		t.Fatalf("after switching while reacting: %q, mode %v", m.compose.Value(), m.mode)
	}
	press(t, m, "tab", "up", "up") // m08, ours
	press(t, m, "e")
	if m.compose.Value() == "my precious draft" {
		t.Fatal("the edit did not load the message's text")
	}
	press(t, m, "esc")
	if m.compose.Value() != "my precious draft" {
		t.Fatalf("after cancelling an edit: %q", m.compose.Value())
	}
}

// A deletion asked about is the one carried out: if the message went
// meanwhile (its timer ran out), nothing is deleted, though another
// message is now picked.
func TestDeleteAskedIsDeleteDone(t *testing.T) {
	b := newBook()
	m := screen(t, b, 100, 30, bob)
	press(t, m, "tab", "up", "up", "d") // m08, ours
	b.mu.Lock()
	b.msgs[bob] = slices.DeleteFunc(b.msgs[bob], func(x api.Message) bool { return x.ID == "m08" })
	b.mu.Unlock()
	drive(t, m, func() tea.Msg { return EventMsg{Kind: "delete", Peer: bob, MessageID: "m08", Reason: "expired"} })
	if m.convs[bob].index("m08") >= 0 {
		t.Fatal("the expired message is still shown")
	}
	press(t, m, "y")
	if b.called("delete") {
		t.Fatalf("a deletion went out: %v", b.calls)
	}
	if !strings.Contains(plain(m), "that message is gone") {
		t.Fatalf("not said:\n%s", plain(m))
	}
}

// Scrolled past the first message, the window stops at it, whatever the
// offset asked, and says it is at the top.
func TestScrollStopsAtTheTop(t *testing.T) {
	b := newBook()
	m := screen(t, b, 100, 30, bob)
	c := m.convs[bob]
	c.offset = 1 << 30
	top, atTop := c.window(10, m.layout())
	limit := c.offset
	if !atTop || limit == 0 {
		t.Fatalf("offset %d, at top %v", limit, atTop)
	}
	for extra := 1; extra < 25; extra++ {
		c.offset = limit + extra
		got, atTop := c.window(10, m.layout())
		if !atTop || c.offset != limit || !slices.Equal(got, top) {
			t.Fatalf("offset %d: clamped to %d (want %d), at top %v", limit+extra, c.offset, limit, atTop)
		}
	}
}

// BenchmarkRender10k draws a screen of a 10,000-message conversation at
// 120x40: at its end from nothing laid out (the worst redraw there,
// after a resize), and scrolled to its first message with the layout
// cached (every message below the screen is walked).
func BenchmarkRender10k(b *testing.B) {
	bk := newBook()
	var ms []api.Message
	for i := range 10000 {
		text := fmt.Sprintf("message %d: %s", i, strings.Repeat("words that wrap ", i%20))
		ms = append(ms, msgAt(fmt.Sprintf("x%05d", i), bob, []string{"in", "out"}[i%2], text, "read", day1.Add(time.Duration(i)*time.Second)))
	}
	bk.msgs[bob] = ms
	m := screen(b, bk, 120, 40, bob)
	c := m.convs[bob]
	c.msgs, c.complete = ms, true // all 10,000 loaded, as after scrolling back through them
	b.Run("end/cold", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.blocks, c.width = map[string]block{}, 0
			if len(m.Render()) == 0 {
				b.Fatal("nothing drawn")
			}
		}
	})
	b.Run("top/warm", func(b *testing.B) {
		c.offset = 1 << 30
		m.Render()
		b.ReportAllocs()
		for b.Loop() {
			c.offset = 1 << 30
			if !strings.Contains(ansi.Strip(m.Render()), "message 0:") {
				b.Fatal("the first message does not show")
			}
		}
	})
}
