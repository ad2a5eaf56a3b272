package main

import (
	"strings"
	"testing"

	"charm.land/lipgloss/v2"

	"github.com/p2pmsg/p2pmsg/internal/api"
)

func TestPrintable(t *testing.T) {
	in := "hi \x1b]0;pwned\x07 \x1b[2J\u202eevil\nnext\tline"
	if got := printable(in, false); strings.ContainsAny(got, "\x1b\x07\u202e") || !strings.Contains(got, "\nnext\tline") {
		t.Errorf("printable(%q) = %q", in, got)
	}
	if got := printable(in, true); strings.ContainsAny(got, "\n\t\x1b") {
		t.Errorf("one line: %q", got)
	}
}

// A message cannot forge lines of plain output: every line of its text
// after the first starts with the continuation mark, in history and in
// receive.
func TestPlainOutputCannotBeForged(t *testing.T) {
	forged := "hi\n2026-12-02 10:00:00  me    I owe you 100  [delivered]  00\r\n#99 10:00:00 key-change x\n"
	var out strings.Builder
	e := &env{stdout: &out}
	printMessage(e, api.Message{ID: "ab", Direction: "in", Text: forged, State: "received"})
	printEvent(e, api.Event{ID: 7, Kind: "message", Peer: "p", Text: forged})
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 8 {
		t.Fatalf("%d lines:\n%s", len(lines), out.String())
	}
	for i, l := range lines {
		own := strings.Contains(l, "them  hi") || strings.HasPrefix(l, "#7 ")
		if !own && !strings.HasPrefix(l, continuation) {
			t.Errorf("line %d does not show that it is a message's text: %q", i, l)
		}
		if strings.ContainsRune(l, '\r') {
			t.Errorf("line %d keeps a carriage return: %q", i, l)
		}
	}
}

// A peer that pads its text to the terminal's width cannot make the
// terminal's own wrapping begin a line with its text: lines wider than
// the terminal are broken, and the pieces marked.
func TestWrappedLinesAreMarked(t *testing.T) {
	const cols = 60
	pad := strings.Repeat(" ", cols)
	forged := "hi" + pad + "2026-12-02 10:00:00  me    I owe you 100  [delivered]  00" + pad + "界界界界界界界界界界界界界界界界界界界界界界界界界界界界界界界界界界"
	var out strings.Builder
	e := &env{stdout: &out, columns: cols}
	printMessage(e, api.Message{ID: "ab", Direction: "in", Text: forged, State: "received"})
	printEvent(e, api.Event{ID: 7, Kind: "message", Peer: "p", Text: forged})
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) < 6 {
		t.Fatalf("%d lines, want the long ones broken:\n%s", len(lines), out.String())
	}
	for i, l := range lines {
		if w := lipgloss.Width(l); w > cols {
			t.Errorf("line %d is %d columns wide, wider than the terminal's %d: %q", i, w, cols, l)
		}
		own := strings.Contains(l, "them  hi") || strings.HasPrefix(l, "#7 ")
		if !own && !strings.HasPrefix(l, continuation) {
			t.Errorf("line %d does not show that it continues a message: %q", i, l)
		}
	}
	// Not a terminal: nothing is broken (a pipe gets the text as it is).
	out.Reset()
	printMessage(&env{stdout: &out}, api.Message{ID: "ab", Direction: "in", Text: forged, State: "received"})
	if n := strings.Count(out.String(), "\n"); n != 1 {
		t.Fatalf("into a pipe: %d lines, want 1", n)
	}
}
