package main

import (
	"strings"
	"unicode"
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
