package api

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/node"
)

// Changes to a conversation beyond sending (edits, deletions, reactions,
// read state, disappearing timers), the user's display name, and search.

// ChangeParams name one message of a conversation and what to do with
// it: "edit" takes Text, "react" Emoji (empty takes the reaction back),
// "delete" neither.
type ChangeParams struct {
	Peer  string `json:"peer"`
	ID    string `json:"id"`
	Text  string `json:"text,omitempty"`
	Emoji string `json:"emoji,omitempty"`
}

func (p ChangeParams) check() error {
	if err := needPeer(p.Peer); err != nil {
		return err
	}
	return MessageParams{ID: p.ID}.check()
}

// ReadParams are the params of "read": the conversation is read up to
// and including the message Until (default: all of it).
type ReadParams struct {
	Peer  string `json:"peer"`
	Until string `json:"until,omitempty"`
}

func (p ReadParams) check() error { return needPeer(p.Peer) }

// ReadResult is the answer of "read": how many messages became read.
type ReadResult struct {
	Read int `json:"read"`
}

// TimerParams are the params of "disappearing": a Go duration ("1h",
// "7d" is not one: "168h"), "off" or "0".
type TimerParams struct {
	Peer  string `json:"peer"`
	Timer string `json:"timer"`
}

func (p TimerParams) check() error {
	if err := needPeer(p.Peer); err != nil {
		return err
	}
	_, err := ParseTimer(p.Timer)
	return err
}

// ParseTimer reads a disappearing timer: "off", or a duration of whole
// seconds such as 30s, 10m, 1h, 7d or 4w.
func ParseTimer(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "off", "0":
		return 0, nil
	case "":
		return 0, invalid(`no timer: give a duration such as 1h or 7d, or "off"`)
	}
	unit := time.Duration(0)
	switch {
	case strings.HasSuffix(s, "d"):
		unit = 24 * time.Hour
	case strings.HasSuffix(s, "w"):
		unit = 7 * 24 * time.Hour
	}
	if unit != 0 {
		var n int64
		for _, r := range s[:len(s)-1] {
			if r < '0' || r > '9' || n > 1e6 {
				return 0, invalid("timer %q: want a duration such as 1h or 7d, or off", s)
			}
			n = n*10 + int64(r-'0')
		}
		if len(s) == 1 {
			return 0, invalid("timer %q: want a duration such as 1h or 7d, or off", s)
		}
		return checkTimer(s, time.Duration(n)*unit)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, invalid("timer %q: want a duration such as 1h or 7d, or off", s)
	}
	return checkTimer(s, d)
}

// FormatTimer says a timer of secs seconds as ParseTimer reads it, in
// the largest unit it is a whole number of: 30s, 10m, 1h, 7d, 4w.
func FormatTimer(secs int64) string {
	for _, u := range []struct {
		n    int64
		name string
	}{{7 * 86400, "w"}, {86400, "d"}, {3600, "h"}, {60, "m"}} {
		if secs%u.n == 0 {
			return fmt.Sprintf("%d%s", secs/u.n, u.name)
		}
	}
	return fmt.Sprintf("%ds", secs)
}

func checkTimer(s string, d time.Duration) (time.Duration, error) {
	if d < time.Second || d > node.MaxTimer || d%time.Second != 0 {
		return 0, invalid("timer %q: whole seconds from 1s to %v, or off", s, node.MaxTimer)
	}
	return d, nil
}

// TimerResult is the answer of "disappearing".
type TimerResult struct {
	PeerID string `json:"peer_id"`
	Timer  int64  `json:"timer"` // seconds; 0: off
}

// Profile is the answer of "profile" and "profile.set": the user's
// display name, which contacts see unless they named us themselves.
type Profile struct {
	Name string `json:"name"`
}

// ProfileParams are the params of "profile.set"; an empty name removes
// it.
type ProfileParams struct {
	Name string `json:"name"`
}

// SearchParams are the params of "search": messages whose text holds
// every word of Query, newest first, in the conversation with Peer (or
// all), at most Limit (default 50, at most 1000).
type SearchParams struct {
	Query string `json:"query"`
	Peer  string `json:"peer,omitempty"`
	Limit int    `json:"limit,omitempty"`
}

func (p SearchParams) check() error {
	if strings.TrimSpace(p.Query) == "" {
		return invalid("nothing to search for: give a word")
	}
	if p.Limit < 0 || p.Limit > node.MaxSearch {
		return invalid("limit %d: 1 to %d", p.Limit, node.MaxSearch)
	}
	return nil
}

// Changed is the answer of "edit", "delete" and "react".
type Changed struct {
	ID string `json:"id"`
}

// change resolves a change's peer and message.
func (s *Server) changeTarget(p ChangeParams) (peer.ID, node.MessageID, error) {
	to, err := s.n.Resolve(p.Peer)
	if err != nil {
		return "", node.MessageID{}, err
	}
	id, err := node.ParseMessageID(p.ID)
	if err != nil {
		return "", node.MessageID{}, withCode(CodeInvalid, err)
	}
	return to, id, nil
}

func (s *Server) edit(_ context.Context, p ChangeParams) (Changed, error) {
	to, id, err := s.changeTarget(p)
	if err != nil {
		return Changed{}, err
	}
	return Changed{ID: p.ID}, s.n.Edit(to, id, p.Text)
}

func (s *Server) delete(_ context.Context, p ChangeParams) (Changed, error) {
	to, id, err := s.changeTarget(p)
	if err != nil {
		return Changed{}, err
	}
	return Changed{ID: p.ID}, s.n.Delete(to, id)
}

func (s *Server) react(_ context.Context, p ChangeParams) (Changed, error) {
	to, id, err := s.changeTarget(p)
	if err != nil {
		return Changed{}, err
	}
	return Changed{ID: p.ID}, s.n.React(to, id, p.Emoji)
}

func (s *Server) read(_ context.Context, p ReadParams) (ReadResult, error) {
	to, err := s.n.Resolve(p.Peer)
	if err != nil {
		return ReadResult{}, err
	}
	var id node.MessageID
	if p.Until != "" {
		if id, err = node.ParseMessageID(p.Until); err != nil {
			return ReadResult{}, withCode(CodeInvalid, err)
		}
	}
	n, err := s.n.ReadUntil(to, id)
	return ReadResult{Read: n}, err
}

func (s *Server) disappearing(_ context.Context, p TimerParams) (TimerResult, error) {
	to, err := s.n.Resolve(p.Peer)
	if err != nil {
		return TimerResult{}, err
	}
	d, _ := ParseTimer(p.Timer) // checked
	if err := s.n.SetTimer(to, d); err != nil {
		return TimerResult{}, err
	}
	return TimerResult{PeerID: to.String(), Timer: int64(d / time.Second)}, nil
}

func (s *Server) profile(context.Context, None) (Profile, error) {
	name, err := s.n.Profile()
	return Profile{Name: name}, err
}

func (s *Server) setProfile(ctx context.Context, p ProfileParams) (Profile, error) {
	if err := s.n.SetProfile(ctx, p.Name); err != nil {
		return Profile{}, err
	}
	return s.profile(ctx, None{})
}

func (s *Server) search(_ context.Context, p SearchParams) ([]Message, error) {
	var to peer.ID
	if p.Peer != "" {
		var err error
		if to, err = s.n.Resolve(p.Peer); err != nil {
			return nil, err
		}
	}
	limit := p.Limit
	if limit == 0 {
		limit = 50
	}
	ms, err := s.n.Search(p.Query, to, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Message, 0, len(ms))
	contacts := map[peer.ID]node.Contact{}
	for _, m := range ms {
		c, ok := contacts[m.Peer]
		if !ok {
			c, _ = s.n.Contact(m.Peer)
			contacts[m.Peer] = c
		}
		out = append(out, messageOf(m, c))
	}
	return out, nil
}

func (c *Client) Edit(ctx context.Context, peer, id, text string) (Changed, error) {
	return call[Changed](ctx, c, "edit", ChangeParams{Peer: peer, ID: id, Text: text})
}

func (c *Client) Delete(ctx context.Context, peer, id string) (Changed, error) {
	return call[Changed](ctx, c, "delete", ChangeParams{Peer: peer, ID: id})
}

func (c *Client) React(ctx context.Context, peer, id, emoji string) (Changed, error) {
	return call[Changed](ctx, c, "react", ChangeParams{Peer: peer, ID: id, Emoji: emoji})
}

func (c *Client) Read(ctx context.Context, peer, until string) (ReadResult, error) {
	return call[ReadResult](ctx, c, "read", ReadParams{Peer: peer, Until: until})
}

func (c *Client) Disappearing(ctx context.Context, peer, timer string) (TimerResult, error) {
	return call[TimerResult](ctx, c, "disappearing", TimerParams{Peer: peer, Timer: timer})
}

func (c *Client) Profile(ctx context.Context) (Profile, error) {
	return call[Profile](ctx, c, "profile", nil)
}

func (c *Client) SetProfile(ctx context.Context, name string) (Profile, error) {
	return call[Profile](ctx, c, "profile.set", ProfileParams{Name: name})
}

func (c *Client) Search(ctx context.Context, p SearchParams) ([]Message, error) {
	return call[[]Message](ctx, c, "search", p)
}
