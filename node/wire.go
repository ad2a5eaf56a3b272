package node

import "github.com/p2pmsg/p2pmsg/node/wire"

// Protocol IDs (docs/design.md §4, §7.1). What the message protocol
// carries is in package wire.
const (
	MsgProtocol    = "/p2pmsg/msg/1.0.0"
	BundleProtocol = "/p2pmsg/bundle/1.0.0"
)

// MaxTextSize is the longest message text, in bytes.
const MaxTextSize = wire.MaxTextSize
