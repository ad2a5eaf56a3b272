package mailbox

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pmsg/p2pmsg/e2e"
)

// The bundle extension that names an owner's mailboxes, signed with the
// rest of its bundle, so that a sender finds them without another lookup
// and a mailbox cannot be swapped for another:
//
//	n (1, 1 to MaxMailboxes), then for each mailbox:
//	peer ID length (1) || peer ID (its bytes) || inbox (16) || flags (1: bit 0 strangers may deposit)
//	|| proof-of-work bits (1) || address count (1, at most MaxAddrs) || (length (2) || multiaddr bytes) × count
//
// A flag bit this version does not know makes the extension malformed: a
// later version that needs one publishes another extension type.

const (
	// ExtensionType is the extension's type in a bundle.
	ExtensionType = 1
	// MaxMailboxes is how many mailboxes an owner names at most.
	MaxMailboxes = 3
	// MaxAddrs bounds the addresses given for one mailbox.
	MaxAddrs = 8

	flagStrangers = 1 << 0
	maxAddrLen    = 1024
)

// Entry is one mailbox an owner names.
type Entry struct {
	Peer      peer.ID
	Inbox     [e2e.InboxIDSize]byte
	Strangers bool  // strangers may deposit, with proof of work
	PowBits   uint8 // the work a stranger's deposit needs
	Addrs     []ma.Multiaddr
}

// EncodeExtension is the bundle extension naming the mailboxes.
func EncodeExtension(entries []Entry) (e2e.Extension, error) {
	if len(entries) == 0 || len(entries) > MaxMailboxes {
		return e2e.Extension{}, fmt.Errorf("mailbox: %d mailboxes, 1 to %d", len(entries), MaxMailboxes)
	}
	b := []byte{byte(len(entries))}
	for i, e := range entries {
		for _, o := range entries[:i] {
			if o.Peer == e.Peer {
				return e2e.Extension{}, fmt.Errorf("mailbox %s named twice", e.Peer)
			}
		}
		id := []byte(e.Peer)
		if len(id) == 0 || len(id) > 255 || len(e.Addrs) > MaxAddrs || e.PowBits > MaxPowBits {
			return e2e.Extension{}, fmt.Errorf("mailbox %s: a peer ID, at most %d addresses and %d bits of work", e.Peer, MaxAddrs, MaxPowBits)
		}
		b = append(b, byte(len(id)))
		b = append(b, id...)
		b = append(b, e.Inbox[:]...)
		var flags byte
		if e.Strangers {
			flags |= flagStrangers
		}
		b = append(b, flags, e.PowBits, byte(len(e.Addrs)))
		for _, a := range e.Addrs {
			ab := a.Bytes()
			if len(ab) == 0 || len(ab) > maxAddrLen {
				return e2e.Extension{}, fmt.Errorf("mailbox %s: an address of %d bytes", e.Peer, len(ab))
			}
			b = binary.BigEndian.AppendUint16(b, uint16(len(ab)))
			b = append(b, ab...)
		}
	}
	return e2e.Extension{Type: ExtensionType, Value: b}, nil
}

// Mailboxes returns the mailboxes a verified bundle names: none when it
// has no such extension, ErrMalformed when the extension is damaged.
func Mailboxes(b *e2e.Bundle) ([]Entry, error) {
	for _, ext := range b.Extensions {
		if ext.Type == ExtensionType {
			return DecodeExtension(ext.Value)
		}
	}
	return nil, nil
}

// DecodeExtension reads the extension's value.
func DecodeExtension(v []byte) ([]Entry, error) {
	r := reader{b: v}
	n := int(r.u8())
	if n == 0 || n > MaxMailboxes {
		return nil, malformed("mailbox count")
	}
	out := make([]Entry, 0, n)
	for range n {
		var e Entry
		id, err := peer.IDFromBytes(r.next(int(r.u8())))
		if r.bad || err != nil {
			return nil, malformed("mailbox peer ID")
		}
		e.Peer = id
		copy(e.Inbox[:], r.next(e2e.InboxIDSize))
		flags := r.u8()
		if flags&^flagStrangers != 0 {
			return nil, malformed("mailbox flags")
		}
		e.Strangers = flags&flagStrangers != 0
		e.PowBits = r.u8()
		if e.PowBits > MaxPowBits {
			return nil, malformed("mailbox proof of work over MaxPowBits")
		}
		na := int(r.u8())
		if na > MaxAddrs {
			return nil, malformed("mailbox address count")
		}
		for range na {
			l := int(r.u16())
			if l == 0 || l > maxAddrLen {
				return nil, malformed("mailbox address length")
			}
			raw := r.next(l)
			a, err := ma.NewMultiaddrBytes(raw)
			if r.bad || err != nil || !bytes.Equal(a.Bytes(), raw) {
				// Only its one encoding: the signed bytes and what a
				// reader acts on must not differ.
				return nil, malformed("mailbox address")
			}
			e.Addrs = append(e.Addrs, a)
		}
		for _, o := range out {
			if o.Peer == e.Peer {
				return nil, malformed("a mailbox named twice")
			}
		}
		out = append(out, e)
	}
	if r.bad || len(r.b) != 0 {
		return nil, malformed("mailbox extension length")
	}
	return out, nil
}
