// Package mailbox is p2pmsg's offline delivery (docs/mailbox.md): a node
// that is always online keeps sealed envelopes for the owners it admits
// until they collect them, and hands out their one-time prekeys.
//
// Its parts: the wire format of its two protocols (wire.go), the bundle
// extension through which an owner names its mailboxes (extension.go),
// the contacts' tokens and strangers' proof of work that authorise a
// deposit (auth.go), the server that serves both protocols from a
// db.Mailbox store (server.go) and the calls of owners and depositors
// (client.go). Package node runs the server (Config.Mailbox), and builds
// on the rest: naming its mailboxes in its bundle, depositing for peers
// it cannot reach, collecting what waits for it.
package mailbox
