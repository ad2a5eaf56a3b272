package dht

import (
	"bytes"
	"testing"
)

// FuzzParseRecord: any bytes a peer can make us store parse without
// panicking; what parses keeps its fields, and the sender tag, once
// added, is read back and taken out again byte for byte.
func FuzzParseRecord(f *testing.F) {
	rec := appendField(appendField(nil, 1, []byte("/p2pmsg-bundle/x")), 2, []byte("value"))
	f.Add(rec)
	f.Add(append(append([]byte(nil), rec...), senderTag("peer")...))
	f.Add([]byte{0x08, 0x96, 0x01, 0x11, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRecord(b)
		if err != nil {
			return
		}
		if r.sender == "" && !bytes.Equal(r.clean, b) {
			t.Fatalf("%x: untagged, but cleaned to %x", b, r.clean)
		}
		if r.sender != "" {
			return // tagged by the peer itself: onRequest replaces such tags
		}
		tagged, err := parseRecord(append(append([]byte(nil), b...), senderTag("sender")...))
		if err != nil || tagged.sender != "sender" || !bytes.Equal(tagged.clean, b) ||
			!bytes.Equal(tagged.key, r.key) || !bytes.Equal(tagged.value, r.value) {
			t.Fatalf("%x: the tag does not round-trip: %+v, %v", b, tagged, err)
		}
	})
}

func appendField(b []byte, field uint64, body []byte) []byte {
	b = appendUvarint(b, field<<3|2)
	b = appendUvarint(b, uint64(len(body)))
	return append(b, body...)
}
