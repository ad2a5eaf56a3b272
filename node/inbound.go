package node

import (
	"bufio"
	"errors"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/p2pmsg/p2pmsg/node/wire"
)

// handleMsg serves /p2pmsg/msg/1.0.0 (docs/design.md §7.1): it reads
// envelopes, hands them to the peer's conversation in order (which
// decrypts and commits them in batches: decrypt.go), and acknowledges
// each, in order, after its commit. What a stream may make us hold is
// bounded by recvWindow, recvWindowKiB, maxRejects, frameTimeout,
// streamIdle, ackWriteTimeout and msgStreamsPerPeer (limits.go).
func (n *Node) handleMsg(s network.Stream) {
	p := s.Conn().RemotePeer()
	idle := streamIdle
	if !n.isAccepted(p) {
		// Strangers share a few streams, and keep them only while they
		// send; contacts always get theirs.
		release, ok := n.admitStranger(p)
		if !ok {
			s.Reset()
			return
		}
		defer release()
		idle = frameTimeout
	}
	// After the gate: a refused stranger leaves nothing in memory.
	c, err := n.conv(p)
	if err != nil {
		s.Reset()
		return
	}
	pending := make(chan *recvOp, recvWindow)
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
	r := bufio.NewReaderSize(s, recvBufSize)
	for first := true; ; first = false {
		if !first {
			// Between frames a stream may idle; the next frame, once
			// begun, must come whole within frameTimeout.
			s.SetReadDeadline(time.Now().Add(idle))
			if _, err := r.Peek(1); err != nil {
				if !errors.Is(err, io.EOF) {
					n.log.Debug("envelope stream ends", "peer", c.key, "err", err)
				}
				return
			}
		}
		s.SetReadDeadline(time.Now().Add(frameTimeout))
		length, err := wire.ReadLength(r, wire.MaxFrame)
		var frame []byte
		if err == nil {
			frame, err = readBody(s, r, length)
		}
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
		o := newRecvOp(frame)
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
func (n *Node) writeAcks(s network.Stream, pending <-chan *recvOp, kib <-chan struct{}) error {
	w := bufio.NewWriter(s)
	rejects := 0
	for o := range pending {
		o.wait()
		for range frameKiB(o.env) {
			<-kib
		}
		if o.status == wire.Rejected && o.code != wire.ReasonNotAccepted {
			n.log.Debug("envelope refused", "peer", s.Conn().RemotePeer().ShortString(), "reason", o.reason)
			if rejects++; rejects >= maxRejects {
				return errors.New("node: too many refused envelopes")
			}
		} else if o.status != wire.Rejected {
			rejects = 0
		}
		if _, err := w.Write(wire.Ack{Status: o.status, Reason: o.code, ID: o.id}.Append(nil)); err != nil {
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

// readBody reads a frame's body of n bytes at no less than minFrameRate
// on average after the first frameTimeout: the deadline moves on with
// every byte that comes, so a slow link finishes a long message, and a
// stream that trickles is closed within about frameTimeout.
func readBody(s network.Stream, r *bufio.Reader, n int) ([]byte, error) {
	b := make([]byte, n)
	start := time.Now()
	for got := 0; got < n; {
		s.SetReadDeadline(start.Add(frameTimeout + time.Duration(got)*time.Second/minFrameRate))
		k, err := r.Read(b[got:])
		got += k
		if err != nil && got < n {
			return nil, err
		}
	}
	return b, nil
}
