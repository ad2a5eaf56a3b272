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
