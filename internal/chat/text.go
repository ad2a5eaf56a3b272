package chat

import (
	"strings"
	"unicode"
)

// clean makes text from a peer safe to lay out on the screen: control
// characters (ESC above all: a message could otherwise move the cursor,
// retitle the window or write the clipboard) become U+FFFD, tabs become
// spaces (their width depends on the column), carriage returns go, and
// line breaks stay unless oneLine.
func clean(s string, oneLine bool) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n':
			if oneLine {
				return ' '
			}
			return r
		case r == '\t':
			return ' '
		case r == '\r':
			return -1
		case unicode.IsControl(r), r == '\u2028', r == '\u2029', unicode.Is(unicode.Bidi_Control, r):
			return '\uFFFD'
		}
		return r
	}, s)
}

// short is the end of a peer ID, where no name is known.
func short(peerID string) string {
	if len(peerID) > 10 {
		return "…" + peerID[len(peerID)-8:]
	}
	return peerID
}
