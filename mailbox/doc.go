// Package mailbox is p2pmsg's offline delivery (docs/mailbox.md): a node
// that is always online keeps sealed envelopes for the owners it admits
// until they collect them, and hands out their one-time prekeys.
//
// This file set holds the wire format of its two protocols (wire.go) and
// the bundle extension through which an owner names its mailboxes
// (extension.go); the server, its store and the client follow.
package mailbox
