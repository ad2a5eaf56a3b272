package mailbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/node/wire"
)

// The client side of both protocols, for owners and depositors. Each call
// opens its own stream on h (the caller connects h to the mailbox, or
// leaves it to libp2p with the mailbox's addresses in the peerstore).

// ErrUnexpected is a reply of a type the request does not expect.
var ErrUnexpected = errors.New("mailbox: unexpected reply")

// stream opens a stream of proto to the mailbox, bound to ctx.
func stream(ctx context.Context, h host.Host, mbox peer.ID, proto protocol.ID) (network.Stream, func(), error) {
	st, err := h.NewStream(ctx, mbox, proto)
	if err != nil {
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		st.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { st.Reset() })
	return st, func() { stop(); st.Close() }, nil
}

func send(st network.Stream, m Msg) error {
	_, err := st.Write(wire.AppendFrame(nil, m.Append(nil)))
	return err
}

func receive(r *bufio.Reader) (Msg, error) {
	b, err := wire.ReadFrame(r, MaxFrame)
	if err != nil {
		return nil, err
	}
	m, err := Decode(b)
	if err != nil {
		return nil, err
	}
	if e, ok := m.(*Error); ok {
		return nil, e
	}
	return m, nil
}

// Call sends one owner's request and returns the reply; a refusal is an
// *Error.
func Call(ctx context.Context, h host.Host, mbox peer.ID, req Msg) (Msg, error) {
	st, done, err := stream(ctx, h, mbox, OwnerProtocol)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := send(st, req); err != nil {
		return nil, err
	}
	return receive(bufio.NewReader(st))
}

// Partial, returned by a Collect handler, acknowledges the deposits of
// the page it names (their sequence numbers), and then ends the
// subscription with Err: the others come again with the next one.
type Partial struct {
	Ack []uint64
	Err error
}

func (p *Partial) Error() string { return p.Err.Error() }
func (p *Partial) Unwrap() error { return p.Err }

// Collect subscribes to the owner's deposits: it takes those after after, and new ones as they
// come, until ctx ends or the stream fails. For each page it calls
// handle, which must store the deposits it accepts durably (and drop
// those it never will) before it returns nil: then the page is
// acknowledged, and the mailbox deletes it. An error from handle ends the
// subscription without the acknowledgement, so the page comes again; a
// *Partial acknowledges part of it first.
func Collect(ctx context.Context, h host.Host, mbox peer.ID, after uint64, pageBytes uint32, handle func([]Stored) error) error {
	st, done, err := stream(ctx, h, mbox, OwnerProtocol)
	if err != nil {
		return err
	}
	defer done()
	st.SetDeadline(time.Time{}) // a subscription lasts
	if err := send(st, Subscribe{After: after, PageBytes: pageBytes}); err != nil {
		return err
	}
	r := bufio.NewReaderSize(st, 64<<10)
	for {
		m, err := receive(r)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		page, ok := m.(Page)
		if !ok || len(page.Deposits) == 0 {
			return fmt.Errorf("%w: %T in a subscription", ErrUnexpected, m)
		}
		if err := handle(page.Deposits); err != nil {
			var part *Partial
			if errors.As(err, &part) && len(part.Ack) > 0 {
				if err := send(st, Ack{Seqs: part.Ack}); err != nil {
					return err
				}
				// The mailbox deletes them once it reads the ack: wait
				// for it to read (its answer is the stream's end or a
				// page), not to cut the stream before.
				st.CloseWrite()
				st.SetReadDeadline(time.Now().Add(10 * time.Second))
				for {
					if _, err := receive(r); err != nil {
						break
					}
				}
			}
			return err
		}
		seqs := make([]uint64, len(page.Deposits))
		for i, d := range page.Deposits {
			seqs[i] = d.Seq
		}
		if err := send(st, Ack{Seqs: seqs}); err != nil {
			return err
		}
	}
}

// FetchPrekeys asks for an inbox's bundle and one-time prekeys.
func FetchPrekeys(ctx context.Context, h host.Host, mbox peer.ID, inbox [e2e.InboxIDSize]byte) (Prekeys, error) {
	st, done, err := stream(ctx, h, mbox, DepositProtocol)
	if err != nil {
		return Prekeys{}, err
	}
	defer done()
	if err := send(st, GetPrekeys{Inbox: inbox}); err != nil {
		return Prekeys{}, err
	}
	m, err := receive(bufio.NewReader(st))
	if err != nil {
		return Prekeys{}, err
	}
	p, ok := m.(Prekeys)
	if !ok {
		return Prekeys{}, fmt.Errorf("%w: %T to GET_PREKEYS", ErrUnexpected, m)
	}
	return p, nil
}

// Deposits sends the deposits on one stream, pipelined, and returns each
// one's result status, in order. On an error the results are those that
// came before it.
func Deposits(ctx context.Context, h host.Host, mbox peer.ID, ds []Deposit) ([]byte, error) {
	st, done, err := stream(ctx, h, mbox, DepositProtocol)
	if err != nil {
		return nil, err
	}
	defer done()
	wrote := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(st, 64<<10)
		for _, d := range ds {
			if _, err := w.Write(wire.AppendFrame(nil, d.Append(nil))); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- w.Flush()
	}()
	r := bufio.NewReader(st)
	out := make([]byte, 0, len(ds))
	for range ds {
		m, err := receive(r)
		if err != nil {
			st.Reset()
			<-wrote
			return out, err
		}
		res, ok := m.(Result)
		if !ok {
			st.Reset()
			<-wrote
			return out, fmt.Errorf("%w: %T to DEPOSIT", ErrUnexpected, m)
		}
		out = append(out, res.Status)
	}
	return out, <-wrote
}
