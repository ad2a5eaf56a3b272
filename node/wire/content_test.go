package wire

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/p2pmsg/p2pmsg/e2e"
)

// A message with a reply, a timer or a display name goes as kind 3 and
// comes back whole; one with none goes as kind 1, which older versions
// read.
func TestMessageRoundTrip(t *testing.T) {
	for _, m := range []Message{
		{Text: "plain"},
		{Text: "a reply", ReplyTo: e2e.MessageID{7}},
		{Text: "soon gone", Timer: 3600},
		{Text: "hello, I am", Profile: "Alice ✨", HasProfile: true},
		{Text: "", Profile: "", HasProfile: true},
		{Text: "all", ReplyTo: e2e.MessageID{1}, Timer: 5, Profile: "Bob", HasProfile: true},
	} {
		b, err := EncodeMessage(99, m)
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		c, ok := DecodeContent(b)
		if !ok || c.Sent != 99 || !reflect.DeepEqual(c.Message(), m) {
			t.Fatalf("%+v came back as %+v (%v)", m, c, ok)
		}
		plain := m.ReplyTo == e2e.MessageID{} && m.Timer == 0 && !m.HasProfile
		if plain != (b[0] == ContentText) {
			t.Fatalf("%+v went as kind %d", m, b[0])
		}
	}
	if _, err := EncodeMessage(1, Message{Text: "x", Profile: strings.Repeat("n", MaxProfileName+1), HasProfile: true}); err == nil {
		t.Fatal("a display name too long was encoded")
	}
	// The longest text fits one envelope with every field.
	b, err := EncodeMessage(1, Message{Text: strings.Repeat("x", MaxTextSize), ReplyTo: e2e.MessageID{1}, Timer: 1,
		Profile: strings.Repeat("n", MaxProfileName), HasProfile: true})
	if err != nil || len(b) != e2e.MaxPlaintextSize {
		t.Fatalf("the longest message: %d bytes, want %d (%v)", len(b), e2e.MaxPlaintextSize, err)
	}
}

// A newer peer's kind, or kind 3 with flags this version does not know,
// reads as the placeholder, never as an error.
func TestUnknownContentIsPlaceholder(t *testing.T) {
	reply, _ := EncodeMessage(1, Message{Text: "x", ReplyTo: e2e.MessageID{1}})
	unknownFlag := bytes.Clone(reply)
	unknownFlag[ContentHeader] |= 0x80
	for name, b := range map[string][]byte{
		"kind 9":         append([]byte{9}, make([]byte, 12)...),
		"unknown flag":   unknownFlag,
		"reply cut":      reply[:ContentHeader+5],
		"zero reply":     append(append([]byte{ContentMessage}, make([]byte, 8)...), append([]byte{flagReply}, make([]byte, 16)...)...),
		"zero timer":     append(append([]byte{ContentMessage}, make([]byte, 8)...), flagTimer, 0, 0, 0, 0),
		"profile cut":    append(append([]byte{ContentMessage}, make([]byte, 8)...), flagProfile, 5, 'a'),
		"profile binary": append(append([]byte{ContentMessage}, make([]byte, 8)...), flagProfile, 1, 0xff),
		"no flags byte":  append([]byte{ContentMessage}, make([]byte, 8)...),
	} {
		if c, ok := DecodeContent(b); ok || c.Text != Unreadable || c.Control != 0 {
			t.Errorf("%s: %+v, %v", name, c, ok)
		}
	}
}

func TestContentControlsRoundTrip(t *testing.T) {
	id := e2e.MessageID{3, 1, 4}
	b, err := EncodeProfile(5, "Zoë")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeProfile(b); err != nil || got != "Zoë" {
		t.Fatalf("profile: %q, %v", got, err)
	}
	if c, _ := DecodeContent(b); c.Control != ControlProfile || !c.Control.Lasting() || c.Sent != 5 {
		t.Fatalf("profile as content: %+v", c)
	}
	e := Edit{ID: id, Text: "fixed the typo"}
	if b, err = EncodeEdit(6, e); err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeEdit(b); err != nil || got != e {
		t.Fatalf("edit: %+v, %v", got, err)
	}
	if b, err = EncodeDelete(7, id); err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeDelete(b); err != nil || got != id {
		t.Fatalf("delete: %x, %v", got, err)
	}
	for _, r := range []Reaction{{ID: id, Emoji: "👍🏽"}, {ID: id}} {
		if b, err = EncodeReaction(8, r); err != nil {
			t.Fatal(err)
		}
		if got, err := DecodeReaction(b); err != nil || got != r {
			t.Fatalf("reaction: %+v, %v", got, err)
		}
	}
	if got, err := DecodeTimer(EncodeTimer(9, 86400)); err != nil || got != 86400 {
		t.Fatalf("timer: %d, %v", got, err)
	}
	if ControlReceipt.Lasting() || ControlGrant.Lasting() || ControlAccepted.Lasting() {
		t.Fatal("receipts, grants and acceptances end at a mailbox's store")
	}
	for name, f := range map[string]func() error{
		"long name":   func() error { _, err := EncodeProfile(1, strings.Repeat("n", MaxProfileName+1)); return err },
		"binary name": func() error { _, err := EncodeProfile(1, "\xff"); return err },
		"edit no id":  func() error { _, err := EncodeEdit(1, Edit{Text: "x"}); return err },
		"edit empty":  func() error { _, err := EncodeEdit(1, Edit{ID: id}); return err },
		"edit long": func() error {
			_, err := EncodeEdit(1, Edit{ID: id, Text: strings.Repeat("x", MaxEditText+1)})
			return err
		},
		"delete no id": func() error { _, err := EncodeDelete(1, e2e.MessageID{}); return err },
		"react long": func() error {
			_, err := EncodeReaction(1, Reaction{ID: id, Emoji: strings.Repeat("x", MaxEmoji+1)})
			return err
		},
	} {
		if f() == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}

func TestContentControlsMalformed(t *testing.T) {
	id := e2e.MessageID{1}
	p, _ := EncodeProfile(1, "ann")
	e, _ := EncodeEdit(1, Edit{ID: id, Text: "t"})
	d, _ := EncodeDelete(1, id)
	r, _ := EncodeReaction(1, Reaction{ID: id, Emoji: "x"})
	tm := EncodeTimer(1, 3)
	for name, c := range map[string]struct {
		b   []byte
		dec func([]byte) error
	}{
		"profile cut":    {p[:len(p)-1], func(b []byte) error { _, err := DecodeProfile(b); return err }},
		"profile longer": {append(bytes.Clone(p), 'x'), func(b []byte) error { _, err := DecodeProfile(b); return err }},
		"edit no text":   {e[:len(e)-1], func(b []byte) error { _, err := DecodeEdit(b); return err }},
		"edit binary":    {append(bytes.Clone(e), 0xff), func(b []byte) error { _, err := DecodeEdit(b); return err }},
		"delete cut":     {d[:len(d)-1], func(b []byte) error { _, err := DecodeDelete(b); return err }},
		"delete zero":    {append(bytes.Clone(d[:ContentHeader+1]), make([]byte, 16)...), func(b []byte) error { _, err := DecodeDelete(b); return err }},
		"reaction cut":   {r[:ContentHeader+10], func(b []byte) error { _, err := DecodeReaction(b); return err }},
		"reaction long":  {append(bytes.Clone(r), make([]byte, MaxEmoji)...), func(b []byte) error { _, err := DecodeReaction(b); return err }},
		"timer cut":      {tm[:len(tm)-1], func(b []byte) error { _, err := DecodeTimer(b); return err }},
		"edit as delete": {e, func(b []byte) error { _, err := DecodeDelete(b); return err }},
	} {
		if err := c.dec(c.b); !errors.Is(err, ErrMalformedControl) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzMessageContent: the content decoders never panic; what they accept
// encodes back to the same bytes (kind 3 and the content controls), and
// valid text stays valid UTF-8.
func FuzzMessageContent(f *testing.F) {
	m, _ := EncodeMessage(1, Message{Text: "hi", ReplyTo: e2e.MessageID{1}, Timer: 9, Profile: "Al", HasProfile: true})
	p, _ := EncodeProfile(2, "Al")
	e, _ := EncodeEdit(3, Edit{ID: e2e.MessageID{2}, Text: "new"})
	d, _ := EncodeDelete(4, e2e.MessageID{3})
	r, _ := EncodeReaction(5, Reaction{ID: e2e.MessageID{4}, Emoji: "🎉"})
	for _, b := range [][]byte{m, p, e, d, r, EncodeTimer(6, 60), EncodeContent(7, "text")} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, ok := DecodeContent(b)
		if ok && !strings.Contains(c.Text, "\uFFFD") && c.Kind == ContentMessage {
			again, err := EncodeMessage(c.Sent, c.Message())
			if err != nil {
				t.Fatalf("message %x does not encode: %v", b, err)
			}
			if again[0] == ContentMessage && !bytes.Equal(again, b) {
				t.Fatalf("message %x encodes to %x", b, again)
			}
		}
		if !ok && c.Text != Unreadable {
			t.Fatalf("unreadable %x gave %+v", b, c)
		}
		check := func(name string, again []byte, err error) {
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("%s %x encodes to %x (%v)", name, b, again, err)
			}
		}
		if v, err := DecodeProfile(b); err == nil {
			again, err := EncodeProfile(c.Sent, v)
			check("profile", again, err)
		}
		if v, err := DecodeEdit(b); err == nil {
			again, err := EncodeEdit(c.Sent, v)
			check("edit", again, err)
		}
		if v, err := DecodeDelete(b); err == nil {
			again, err := EncodeDelete(c.Sent, v)
			check("delete", again, err)
		}
		if v, err := DecodeReaction(b); err == nil {
			again, err := EncodeReaction(c.Sent, v)
			check("reaction", again, err)
		}
		if v, err := DecodeTimer(b); err == nil {
			check("timer", EncodeTimer(c.Sent, v), nil)
		}
	})
}
