package main

import (
	"strings"
	"testing"
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
