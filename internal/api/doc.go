// Package api is the node's local API: what the daemon serves on its
// UNIX socket (DATA/p2pmsg.sock, mode 0600) as JSON-RPC 2.0, one JSON
// value per line (package jsonrpc frames it). Every client goes through
// it: the command's verbs, the chat screen, scripts with socat, and later
// a browser UI.
//
// The package has three parts: the wire types (types.go), a Server with
// one typed method per RPC method, registered through one generic adapter
// that decodes params strictly (adapter.go, server.go), and a typed
// Client with a Watcher for the event stream (client.go). With no daemon
// running, the command serves the same Server in this process over a
// node opened without a host (Offline): the methods that read the store
// answer as the daemon would, and the others answer CodeNoDaemon. So
// every verb has one implementation.
//
// # Methods
//
//	id                                    peer ID, addresses, fingerprint
//	send {peer, text, wait, timeout}      queue a message; with wait, answer once delivered or failed
//	resend {id}                           a failed message again, as a new message
//	history {peer, before|after|oldest, limit}   a page of a conversation, oldest first
//	message {id}                          one message
//	events {since, kinds, limit}          a page of the event log
//	subscribe {since, kinds}              the event log, then live: "event" notifications
//	last_event_id                         where the log ends now
//	resolve {peer}                        a peer ID or contact name to a peer ID
//	verify {peer}                         the safety number
//	status                                reachability, relays, contacts' paths, DHT, bundle,
//	                                      pending requests, peers' clock skews
//	contacts.list
//	contacts.add {peer, name}             add or accept; no name keeps the name
//	contacts.rename {peer, name}          no name removes it
//	contacts.remove {peer}                the contact, its sessions and its history
//	contacts.requests                     pending contact requests, the oldest first
//	contacts.clear_requests               delete them all with their messages: {deleted}
//	contacts.accept|block|unblock {peer}
//	contacts.verified {peer, verified}    record that safety numbers were compared
//	trust {peer}                          accept a contact's new identity key after a key change
//	mailbox.allow {peer, quota, quota_bytes, ttl_max}
//	                                      admit an owner to this mailbox (daemon --mailbox)
//	mailbox.invite {quota, quota_bytes, ttl_max, valid}
//	                                      a one-time invitation: {code, expires}
//	mailbox.list                          the owners and their use
//	mailbox.revoke {peer}                 remove an owner and all kept for it: {peer_id, revoked}
//
// A peer is a peer ID or a contact's name; a message id is 32 hex digits.
//
// # Contract
//
// Params are one JSON object (or absent for methods that take none). A
// field the method does not know is refused, with its name and the
// fields the method takes; so are a blank peer and an empty text. Lists
// are [] when empty, never null. Errors carry a code in error.data.code:
// the p2pmsg command's exit code (CodeFailed to CodeExists); invalid
// params also use JSON-RPC's -32602 as error.code. send with wait that
// times out or fails still names the message: error.data.result holds
// {id, state, error}.
//
// Events carry what a client shows: a message event has the message id,
// the peer and its contact name, the direction, the text, the sender's
// time, the time it was stored and its state then; so a bot needs no
// second call.
package api
