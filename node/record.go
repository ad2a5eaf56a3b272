package node

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/p2pmsg/p2pmsg/e2e"
)

// maxSessions is how many sessions a record keeps per peer: the current
// one and the ones it replaced. When both sides start a session at once,
// each ends up with two; envelopes already queued under either must still
// decrypt, and a successful decryption under an older session makes it
// current again, so both sides converge on one (Signal's session records).
const maxSessions = 5

// sessionRecord is everything a node keeps to talk with one peer. The
// first session is the one that sends.
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
