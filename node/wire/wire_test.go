package wire

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/p2pmsg/p2pmsg/e2e"
)

// A frame's length is checked before anything is allocated: a length
// prefix over the limit is refused however few bytes follow it.
func TestFrameOverTheLimitIsRefused(t *testing.T) {
	huge := []byte{0xff, 0xff, 0xff, 0xff, 0x0f} // a uvarint of 4 GiB, nothing after
	if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(huge)), MaxFrame); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("a 4 GiB length: %v", err)
	}
	ok := AppendFrame(nil, make([]byte, MaxFrame))
	if f, err := ReadFrame(bufio.NewReader(bytes.NewReader(ok)), MaxFrame); err != nil || len(f) != MaxFrame {
		t.Fatalf("a frame of exactly MaxFrame: %d bytes, %v", len(f), err)
	}
}

// FuzzFrame: any bytes read as frames never panic, a frame is never over
// the limit, and what is read re-encodes to the bytes it came from.
func FuzzFrame(f *testing.F) {
	f.Add(AppendFrame(AppendFrame(nil, []byte("one")), []byte("two")))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		var again []byte
		for {
			frame, err := ReadFrame(r, 1024)
			if err != nil {
				break
			}
			if len(frame) > 1024 {
				t.Fatalf("a frame of %d bytes, limit 1024", len(frame))
			}
			again = AppendFrame(again, frame)
		}
		if !bytes.HasPrefix(b, again) {
			t.Fatalf("frames read from %x re-encode to %x", b, again)
		}
	})
}

// FuzzAck: any 18 bytes are either an ack that re-encodes to themselves,
// or refused; nothing else is read.
func FuzzAck(f *testing.F) {
	f.Add(Ack{Status: Stored, ID: e2e.MessageID{1}}.Append(nil))
	f.Add(Ack{Status: Rejected, Reason: ReasonNoSession}.Append(nil))
	f.Add(make([]byte, AckSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ReadAck(bytes.NewReader(b))
		if err != nil {
			return
		}
		if a.Status < Stored || a.Status > Retry {
			t.Fatalf("status %d accepted", a.Status)
		}
		if got := a.Append(nil); !bytes.Equal(got, b[:AckSize]) {
			t.Fatalf("%x read as %+v, re-encoded as %x", b[:AckSize], a, got)
		}
		_ = a.Reason.String() // every reason, known or not, has a sentence
	})
}

// FuzzContent: any plaintext decodes without panicking, to valid UTF-8;
// text and control content of our kinds round-trip.
func FuzzContent(f *testing.F) {
	f.Add(EncodeContent(1733112000123, "hello"))
	f.Add(EncodeControl(1733112000123, ControlAccepted))
	f.Add([]byte{3, 0, 0, 0, 0, 0, 0, 0, 0, 'x'})
	f.Add([]byte{ContentText})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, ok := DecodeContent(b)
		if !utf8.ValidString(c.Text) {
			t.Fatalf("%x decoded to invalid UTF-8", b)
		}
		switch {
		case !ok:
			if c != (Content{Text: Unreadable}) {
				t.Fatalf("%x refused, but gave %+v", b, c)
			}
		case c.Control != 0:
			if c.Text != "" || !bytes.HasPrefix(b, EncodeControl(c.Sent, c.Control)) {
				t.Fatalf("%x decoded to %+v, which encodes otherwise", b, c)
			}
		case c.Kind == ContentMessage:
			// FuzzMessageContent's.
		case utf8.Valid(b[ContentHeader:]) && !bytes.Equal(EncodeContent(c.Sent, c.Text), b):
			t.Fatalf("%x decoded to %+v, which encodes otherwise", b, c)
		}
	})
}
