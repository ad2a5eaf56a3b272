package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/p2pmsg/p2pmsg/internal/api"
	"github.com/p2pmsg/p2pmsg/internal/chat"
	"github.com/p2pmsg/p2pmsg/node"
)

// cmdChat runs the chat screen (package chat) against the daemon, and
// keeps it connected: when the daemon goes away the screen says so and
// keeps its drafts, and when it is back the screen picks up from the
// last event it saw.
func cmdChat(e *env, args []string) error {
	fs := e.flags("chat")
	pos, err := e.parse(fs, args, -1, "p2pmsg chat [PEER]")
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return fail(exitUsage, "usage: p2pmsg chat [PEER]")
	}
	c, err := api.Dial(e.data)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	peer := ""
	if len(pos) == 1 {
		r, err := c.Resolve(ctx, pos[0])
		if err != nil {
			c.Close()
			return err
		}
		peer = r.PeerID
	}
	// From now on: the past is in the history the screen loads.
	since, err := c.LastEventID(ctx)
	if err != nil {
		c.Close()
		return err
	}
	live := &liveClient{dir: e.data, c: c}
	defer live.close()
	m := chat.New(ctx, live, peer)
	p := tea.NewProgram(m, tea.WithInput(os.Stdin), tea.WithOutput(e.stdout), tea.WithContext(ctx))
	go live.follow(ctx, p, since)
	_, err = p.Run()
	if err == tea.ErrProgramKilled && ctx.Err() != nil {
		err = nil
	}
	return err
}

// reconnectEvery is how often a screen whose daemon went away dials it.
const reconnectEvery = 500 * time.Millisecond

// liveClient is the API client of the screen, dialled again after the
// daemon went away: its calls fail with "no daemon" meanwhile.
type liveClient struct {
	dir string
	mu  sync.Mutex
	c   *api.Client // nil while the daemon is away
}

var errAway = fmt.Errorf("%w: the daemon is away", node.ErrNotStarted)

func (l *liveClient) get() (*api.Client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c == nil {
		return nil, errAway
	}
	return l.c, nil
}

// drop forgets c once a call found the daemon gone.
func (l *liveClient) drop(c *api.Client, err error) {
	if api.CodeOf(err) != api.CodeNoDaemon {
		return
	}
	l.mu.Lock()
	if l.c == c {
		l.c = nil
	}
	l.mu.Unlock()
	c.Close()
}

func (l *liveClient) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c != nil {
		l.c.Close()
		l.c = nil
	}
}

// call runs f on the current client.
func call[T any](l *liveClient, f func(*api.Client) (T, error)) (T, error) {
	c, err := l.get()
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := f(c)
	if err != nil {
		l.drop(c, err)
	}
	return v, err
}

func (l *liveClient) Contacts(ctx context.Context) ([]api.Contact, error) {
	return call(l, func(c *api.Client) ([]api.Contact, error) { return c.Contacts(ctx) })
}

func (l *liveClient) History(ctx context.Context, p api.HistoryParams) ([]api.Message, error) {
	return call(l, func(c *api.Client) ([]api.Message, error) { return c.History(ctx, p) })
}

func (l *liveClient) Message(ctx context.Context, id string) (api.Message, error) {
	return call(l, func(c *api.Client) (api.Message, error) { return c.Message(ctx, id) })
}

func (l *liveClient) Send(ctx context.Context, p api.SendParams) (api.SendResult, error) {
	return call(l, func(c *api.Client) (api.SendResult, error) { return c.Send(ctx, p) })
}

func (l *liveClient) Read(ctx context.Context, peer, until string) (api.ReadResult, error) {
	return call(l, func(c *api.Client) (api.ReadResult, error) { return c.Read(ctx, peer, until) })
}

func (l *liveClient) Edit(ctx context.Context, peer, id, text string) (api.Changed, error) {
	return call(l, func(c *api.Client) (api.Changed, error) { return c.Edit(ctx, peer, id, text) })
}

func (l *liveClient) Delete(ctx context.Context, peer, id string) (api.Changed, error) {
	return call(l, func(c *api.Client) (api.Changed, error) { return c.Delete(ctx, peer, id) })
}

func (l *liveClient) React(ctx context.Context, peer, id, emoji string) (api.Changed, error) {
	return call(l, func(c *api.Client) (api.Changed, error) { return c.React(ctx, peer, id, emoji) })
}

func (l *liveClient) ContactOp(ctx context.Context, method, peer string) (api.Contact, error) {
	return call(l, func(c *api.Client) (api.Contact, error) { return c.ContactOp(ctx, method, peer) })
}

// follow feeds the daemon's events to the screen from after since, and
// when the stream ends (the daemon stopped) tells the screen, dials
// again until the daemon is back, and goes on from the last event seen.
func (l *liveClient) follow(ctx context.Context, p *tea.Program, since int64) {
	down := false
	for ctx.Err() == nil {
		if _, err := l.get(); err != nil {
			c, err := api.Dial(l.dir)
			if err != nil {
				if !sleepOrDone(ctx, reconnectEvery) {
					return
				}
				continue
			}
			l.mu.Lock()
			l.c = c
			l.mu.Unlock()
		}
		events, err := api.Dial(l.dir)
		if err == nil {
			var w *api.Watcher
			if w, err = events.Watch(ctx, api.SubscribeParams{Since: since}); err == nil {
				if down {
					p.Send(chat.ConnMsg{Up: true})
					down = false
				}
				for {
					ev, err := w.Next()
					if err != nil {
						break
					}
					since = ev.ID
					p.Send(chat.EventMsg(ev))
				}
			}
			events.Close()
		}
		if ctx.Err() != nil {
			return
		}
		// The stream ended: the daemon went away (or is going).
		if c, err := l.get(); err == nil {
			l.drop(c, errAway)
		}
		if !down {
			p.Send(chat.ConnMsg{Up: false, Err: err})
			down = true
		}
		if !sleepOrDone(ctx, reconnectEvery) {
			return
		}
	}
}

func sleepOrDone(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
