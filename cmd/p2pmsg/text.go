package main

import (
	"io"
	"os"
	"strings"
	"unicode"

	"charm.land/lipgloss/v2"
	"golang.org/x/term"
)

// printable makes text from a peer safe to show on a terminal: control
// characters (ESC above all: a message could otherwise move the cursor,
// retitle the window or write the clipboard) become U+FFFD; with
// oneLine, line breaks and tabs become spaces too.
func printable(s string, oneLine bool) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			if oneLine {
				return ' '
			}
			return r
		case unicode.IsControl(r), r == '\u2028', r == '\u2029', unicode.Is(unicode.Bidi_Control, r):
			return '\uFFFD'
		}
		return r
	}, s)
}

// continuation marks the lines of a message after its first: no text
// from a peer can begin a line of plain output, so none can pass for a
// line of our own (another message, a state, an event).
const continuation = "    │ "

// multiline makes text from a peer safe to print as a block in plain
// output: printable, with every line after the first marked.
func multiline(s string) string {
	return strings.ReplaceAll(printable(strings.ReplaceAll(s, "\r", ""), false), "\n", "\n"+continuation)
}

// fitWidth breaks the lines of block that are wider than width columns,
// marking each piece after the first as a continuation: a terminal would
// wrap them itself, and a peer who pads its text to the width could then
// begin a screen line with text of its choosing. width 0 leaves block as
// it is (not a terminal).
func fitWidth(block string, width int) string {
	cw := lipgloss.Width(continuation)
	if width <= cw+8 {
		return block
	}
	var out strings.Builder
	for i, line := range strings.Split(block, "\n") {
		if i > 0 {
			out.WriteByte('\n')
		}
		col := 0
		for _, r := range line {
			w := lipgloss.Width(string(r))
			if col+w > width {
				out.WriteString("\n" + continuation)
				col = cw
			}
			out.WriteRune(r)
			col += w
		}
	}
	return out.String()
}

// terminalWidth is w's width in columns when it is a terminal, else 0.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0
	}
	return width
}
