package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
)

// sessionRecord is everything a node keeps to talk with one peer: up to
// maxSessions sessions (limits.go), the current one first, the one that
// sends (docs/node-decisions.md, 1).
type sessionRecord struct {
	sessions []*e2e.Session
}

const recordVersion = 1

func (r *sessionRecord) current() *e2e.Session {
	if r == nil || len(r.sessions) == 0 {
		return nil
	}
	return r.sessions[0]
}

// push makes s the current session, keeping the newest older ones.
func (r *sessionRecord) push(s *e2e.Session) {
	r.sessions = append([]*e2e.Session{s}, r.sessions...)
	if len(r.sessions) > maxSessions {
		r.sessions = r.sessions[:maxSessions]
	}
}

// promote makes the i-th session current.
func (r *sessionRecord) promote(i int) {
	if i == 0 {
		return
	}
	s := r.sessions[i]
	copy(r.sessions[1:i+1], r.sessions[:i])
	r.sessions[0] = s
}

// byBaseKey finds the responder session of the handshake with base key k.
func (r *sessionRecord) byBaseKey(k e2e.DHPublicKey) int {
	for i, s := range r.sessions {
		if !s.Initiator() && s.BaseKey() == k {
			return i
		}
	}
	return -1
}

// MarshalBinary: version, count, then each session's state prefixed with
// its length.
func (r *sessionRecord) MarshalBinary() ([]byte, error) {
	b := []byte{recordVersion, byte(len(r.sessions))}
	for _, s := range r.sessions {
		blob, err := s.MarshalBinary()
		if err != nil {
			return nil, err
		}
		b = binary.AppendUvarint(b, uint64(len(blob)))
		b = append(b, blob...)
	}
	return b, nil
}

var errBadRecord = errors.New("node: malformed session record")

func (r *sessionRecord) UnmarshalBinary(b []byte) error {
	if len(b) < 2 || b[0] != recordVersion || int(b[1]) > maxSessions {
		return errBadRecord
	}
	n := int(b[1])
	b = b[2:]
	r.sessions = make([]*e2e.Session, 0, n)
	for range n {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return errBadRecord
		}
		s := new(e2e.Session)
		if err := s.UnmarshalBinary(b[k : k+int(l)]); err != nil {
			return fmt.Errorf("%w: %v", errBadRecord, err)
		}
		r.sessions = append(r.sessions, s)
		b = b[k+int(l):]
	}
	if len(b) != 0 {
		return errBadRecord
	}
	return nil
}

// loadRecord reads a peer's session record from the store; an empty one
// when there is none.
func loadRecord(r *db.ReadTx, key string, log *slog.Logger) (*sessionRecord, error) {
	rec := new(sessionRecord)
	blob, err := r.Session(key)
	if errors.Is(err, db.ErrNotFound) {
		return rec, nil
	}
	if err != nil {
		return nil, err
	}
	if err := rec.UnmarshalBinary(blob); err != nil {
		// A record we cannot read is useless, and refusing every message
		// from the peer forever would be worse: start afresh (the peer's
		// next prekey message starts a new session) and say so.
		log.Error("unreadable session record replaced by an empty one", "peer", key, "err", err)
		return new(sessionRecord), nil
	}
	return rec, nil
}
