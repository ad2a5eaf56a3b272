package dht

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// The few bytes of libp2p-record's pb.Record that the Store reads: key
// (field 1), value (2), time received (5), and the sender tag
// (senderField) that onRequest adds. Parsed by hand because dht may not
// import the protobuf runtime (internal/deps), and the layout is the plain
// protobuf wire format: a varint tag (field << 3 | wire type) before each
// field.

var errRecordWire = errors.New("not a well-formed record")

type parsedRecord struct {
	key, value []byte
	received   time.Time // zero if absent or unreadable
	sender     peer.ID   // from the tag; empty if untagged
	clean      []byte    // the record without the tag
}

func appendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// parseRecord reads a marshalled record. Fields it does not know are
// kept in clean; a repeated field keeps its last value, as protobuf does.
func parseRecord(data []byte) (parsedRecord, error) {
	var r parsedRecord
	tagStart, tagEnd := -1, -1
	for i := 0; i < len(data); {
		start := i
		tag, n := binary.Uvarint(data[i:])
		if n <= 0 {
			return r, fmt.Errorf("%w: bad tag at byte %d", errRecordWire, i)
		}
		i += n
		field, wire := tag>>3, tag&7
		var body []byte
		switch wire {
		case 0: // varint
			_, n := binary.Uvarint(data[i:])
			if n <= 0 {
				return r, fmt.Errorf("%w: bad varint at byte %d", errRecordWire, i)
			}
			i += n
		case 1: // 64-bit
			i += 8
		case 5: // 32-bit
			i += 4
		case 2: // length-delimited
			l, n := binary.Uvarint(data[i:])
			if n <= 0 || l > uint64(len(data)-i-n) {
				return r, fmt.Errorf("%w: bad length at byte %d", errRecordWire, i)
			}
			body = data[i+n : i+n+int(l)]
			i += n + int(l)
		default:
			return r, fmt.Errorf("%w: wire type %d at byte %d", errRecordWire, wire, start)
		}
		if i > len(data) {
			return r, fmt.Errorf("%w: truncated at byte %d", errRecordWire, start)
		}
		if wire != 2 {
			continue
		}
		switch field {
		case 1:
			r.key = body
		case 2:
			r.value = body
		case 5:
			r.received, _ = time.Parse(time.RFC3339Nano, string(body))
		case senderField:
			if tagStart >= 0 {
				return r, fmt.Errorf("%w: two sender tags", errRecordWire)
			}
			if len(body) == 0 {
				// onRequest always tags with a peer ID; an empty tag would
				// read as "from this node" yet be cut from clean.
				return r, fmt.Errorf("%w: empty sender tag", errRecordWire)
			}
			r.sender, tagStart, tagEnd = peer.ID(body), start, i
		}
	}
	r.clean = data
	if tagStart >= 0 {
		r.clean = append(append(make([]byte, 0, len(data)-(tagEnd-tagStart)), data[:tagStart]...), data[tagEnd:]...)
	}
	return r, nil
}
