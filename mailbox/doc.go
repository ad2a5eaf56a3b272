// Package mailbox is p2pmsg's offline delivery (docs/mailbox.md): a node
// that is always online keeps sealed envelopes for the owners it admits
// until they collect them, and hands out their one-time prekeys.
//
// So far it holds the wire format of its two protocols (wire.go), the
// bundle extension through which an owner names its mailboxes
// (extension.go), and the contacts' tokens and strangers' proof of work
// that authorise a deposit (auth.go); the server, its store and the
// client follow.
package mailbox
