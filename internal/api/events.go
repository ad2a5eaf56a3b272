package api

import (
	"context"
	"time"

	"github.com/p2pmsg/p2pmsg/node"
)

// The event log: a page at a time, or followed live.

func kindsOf(ks []string) []node.EventKind {
	out := make([]node.EventKind, 0, len(ks))
	for _, k := range ks {
		out = append(out, node.EventKind(k))
	}
	return out
}

func eventOf(e node.Event) Event {
	ev := Event{ID: e.ID, Kind: string(e.Kind), Time: e.Time, Name: e.Name, Direction: string(e.Direction), Text: e.Text,
		Sent: e.Sent, Stored: e.Stored, State: string(e.State), Reason: e.Reason, Path: string(e.Path)}
	if e.Peer != "" {
		ev.Peer = e.Peer.String()
	}
	if !e.MessageID.IsZero() {
		ev.MessageID = e.MessageID.String()
	}
	ev.Emoji = e.Emoji
	if e.Reactor != "" {
		ev.Reactor = e.Reactor.String()
	}
	if e.Kind == node.EventTimer {
		secs := int64(e.Timer / time.Second)
		ev.Timer = &secs
	}
	if e.Kind == node.EventConnectivity {
		up := e.Path != node.PathOffline
		ev.Connected = &up
	}
	return ev
}

func (s *Server) events(_ context.Context, p EventsParams) (EventPage, error) {
	limit := p.Limit
	if limit == 0 {
		limit = node.MaxPage
	}
	evs, last, err := s.n.Events(p.Since, limit, kindsOf(p.Kinds)...)
	if err != nil {
		return EventPage{}, err
	}
	page := EventPage{Events: make([]Event, 0, len(evs)), Last: last}
	for _, e := range evs {
		page.Events = append(page.Events, eventOf(e))
	}
	return page, nil
}

func (s *Server) subscribe(ctx context.Context, p SubscribeParams, notify func(any) error) error {
	w := s.n.Watch(ctx, p.Since, kindsOf(p.Kinds)...)
	for {
		e, err := w.Next()
		if err != nil {
			return err
		}
		if err := notify(eventOf(e)); err != nil {
			return err
		}
	}
}

func (s *Server) lastEventID(context.Context, None) (int64, error) { return s.n.LastEventID() }
