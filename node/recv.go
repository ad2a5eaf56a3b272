package node

import (
	"bufio"
	"errors"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

const (
	// recvWindow bounds the envelopes of one stream that are read but not
	// yet acknowledged, and recvWindowKiB their size: beyond either the
	// reader waits for the store.
	recvWindow    = 1024
	recvWindowKiB = 4096
	// maxRejects: a stream that sends this many refused frames in a row
	// is reset; its peer may open another, but each costs it a round
	// trip, and ours stays cheap.
	maxRejects = 64
	// streamIdle: a stream that sends nothing for this long is closed.
	streamIdle = 2 * time.Minute
	// ackWriteTimeout: a peer that reads no acks for this long loses its
	// stream.
	ackWriteTimeout = 30 * time.Second
)

// handleMsg serves /p2pmsg/msg/1.0.0: it reads envelopes, hands them to
// the peer's conv in order (which decrypts and commits them in batches),
// and acknowledges each, in order, after its commit.
func (n *Node) handleMsg(s network.Stream) {
	c, err := n.conv(s.Conn().RemotePeer())
	if err != nil {
		s.Reset()
		return
	}
	pending := make(chan *op, recvWindow)
	kib := make(chan struct{}, recvWindowKiB) // one token per KiB read and not yet acknowledged
	acked := make(chan error, 1)
	if !n.spawn(func() {
		err := n.writeAcks(s, pending, kib)
		if err != nil {
			s.Reset() // stops the reader too
		}
		acked <- err
	}) {
		s.Reset()
		return
	}
	defer func() {
		close(pending)
		if err := <-acked; err != nil {
			s.Reset()
		} else {
			s.Close()
		}
	}()
	r := bufio.NewReaderSize(s, 64<<10)
	for {
		s.SetReadDeadline(time.Now().Add(streamIdle))
		frame, err := readFrame(r, maxFrame)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				n.log.Debug("envelope stream ends", "peer", c.key, "err", err)
			}
			return
		}
		for range frameKiB(frame) {
			select {
			case kib <- struct{}{}:
			case err := <-acked:
				acked <- err // for the deferred close
				return
			}
		}
		o := &op{kind: opRecv, env: frame}
		c.submit(o)
		select {
		case pending <- o:
		case err := <-acked:
			acked <- err
			return
		}
	}
}

// writeAcks answers each op once its batch committed, in the order the
// envelopes came.
func (n *Node) writeAcks(s network.Stream, pending <-chan *op, kib <-chan struct{}) error {
	w := bufio.NewWriter(s)
	rejects := 0
	for o := range pending {
		<-o.done
		for range frameKiB(o.env) {
			<-kib
		}
		if o.status == ackRejected {
			n.log.Debug("envelope refused", "peer", s.Conn().RemotePeer().ShortString(), "reason", o.reason)
			if rejects++; rejects >= maxRejects {
				return errors.New("node: too many refused envelopes")
			}
		} else {
			rejects = 0
		}
		if _, err := w.Write(ack{status: o.status, reason: o.code, id: o.id}.append(nil)); err != nil {
			return err
		}
		// Flush when nothing else is ready: one write per burst. A peer
		// that stops reading its acks loses the stream.
		if len(pending) == 0 {
			s.SetWriteDeadline(time.Now().Add(ackWriteTimeout))
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
	s.SetWriteDeadline(time.Now().Add(ackWriteTimeout))
	return w.Flush()
}

func frameKiB(frame []byte) int { return len(frame)/1024 + 1 }
