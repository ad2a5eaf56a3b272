package chat

import "charm.land/bubbles/v2/key"

// keyMap is every key binding of the screen; help is made from it.
type keyMap struct {
	Send, Newline, Next, Prev, Select, Up, Down, PageUp, PageDown, Top, Bottom key.Binding
	Accept, Block, Edit, Delete, React, Reply, Back, Quit, Yes, No             key.Binding
}

func newKeyMap() keyMap {
	b := func(help, desc string, keys ...string) key.Binding {
		return key.NewBinding(key.WithKeys(keys...), key.WithHelp(help, desc))
	}
	return keyMap{
		Send:     b("enter", "send", "enter"),
		Newline:  b("alt+enter", "new line", "alt+enter", "ctrl+j"),
		Next:     b("ctrl+n", "next chat", "ctrl+n", "alt+down"),
		Prev:     b("ctrl+p", "previous chat", "ctrl+p", "alt+up"),
		Select:   b("tab", "pick a message", "tab"),
		Up:       b("↑", "older", "up", "k"),
		Down:     b("↓", "newer", "down", "j"),
		PageUp:   b("pgup", "scroll up", "pgup"),
		PageDown: b("pgdn", "scroll down", "pgdown"),
		Top:      b("home", "oldest", "home"),
		Bottom:   b("end", "latest", "end"),
		Accept:   b("alt+a", "accept request", "alt+a"),
		Block:    b("alt+x", "block request", "alt+x"),
		Edit:     b("e", "edit", "e"),
		Delete:   b("d", "delete", "d"),
		React:    b("+", "react", "+"),
		Reply:    b("r", "reply", "r"),
		Back:     b("esc", "back", "esc"),
		Quit:     b("ctrl+c", "quit", "ctrl+c"),
		Yes:      b("y", "yes", "y", "Y"),
		No:       b("n", "no", "n", "N", "esc"),
	}
}
