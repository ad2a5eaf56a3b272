// Package node will be the one place where the libp2p host, the crypto of
// package e2e and the store of package db meet: protocols, the send and
// receive pipelines, the outbox, discovery, NAT traversal and events
// (DESIGN §1, §7, §8).
//
// Not built yet; it holds no code.
package node
