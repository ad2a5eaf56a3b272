// Package dht will keep prekey bundles in p2pmsg's private Kademlia DHT
// (/p2pmsg/kad/1.0.0): the record key scheme, the validator that checks
// bundles with e2e.VerifyBundle, publishing and lookup (DESIGN §4).
//
// Not built yet; it holds no code.
package dht
