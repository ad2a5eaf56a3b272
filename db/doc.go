// Package db will be the SQLite store of a node: identity, prekeys,
// sessions as opaque blobs, contacts, the outbox, message history and the
// event log, in one file (DESIGN §7).
//
// Not built yet; it holds no code.
package db
