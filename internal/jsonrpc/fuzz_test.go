package jsonrpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// FuzzServerLine sends one arbitrary line to a server and checks that it
// does not panic, and that the answers are exactly what JSON-RPC 2.0
// says: one well-formed response per request that is not a
// notification, in a batch's array for a batch, and nothing else.
func FuzzServerLine(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"echo","params":[1]}`,
		`{"jsonrpc":"2.0","id":"a","method":"echo"}`,
		`{not json`,
		`{"jsonrpc":"2.0","id":{"x":1},"method":"echo"}`,
		`{"jsonrpc":"2.0","id":2}`,
		`{"jsonrpc":"1.0","id":3,"method":"echo"}`,
		`{"jsonrpc":"2.0","id":4,"method":"nope"}`,
		`[]`,
		`[{"jsonrpc":"2.0","id":5,"method":"echo"},{"jsonrpc":"2.0","method":"echo"},{"jsonrpc":"2.0","id":6,"method":"nope"}]`,
		`{"jsonrpc":"2.0","method":"nope"}`,
		`[{"jsonrpc":"2.0","method":"echo"}]`,
		`{"jsonrpc":"2.0","id":7,"method":"notify","params":{"a":"<\u2028>"}}`,
		`{"jsonrpc":"2.0","id":null,"method":"fail"}`,
		`[1,"x",null,{"jsonrpc":"2.0","id":-0.5e-3,"method":"fail"}]`,
		`{"jsonrpc":"2.0","method":"rpc.cancel","params":{"id":1}}`,
		`[{"jsonrpc":"2.0","id":8,"method":"rpc.cancel","params":[]}]`,
		"\t  ",
	} {
		f.Add([]byte(seed))
	}
	srv := NewServer()
	srv.Handle("echo", echo)
	srv.Handle("fail", func(context.Context, json.RawMessage, func(any) error) (any, error) {
		return nil, errors.New("failed")
	})
	srv.Handle("notify", func(_ context.Context, p json.RawMessage, notify func(any) error) (any, error) {
		notify(p)
		return p, notify(p)
	})
	path := start(f, srv)

	f.Fuzz(func(t *testing.T, line []byte) {
		line = bytes.ReplaceAll(line, []byte("\n"), []byte(" ")) // one line
		if len(line) > MaxLineBytes {
			t.Skip()
		}
		want := expectAnswers(line)

		nc, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(failsafe))
		if _, err := nc.Write(append(line, '\n')); err != nil {
			t.Fatal(err)
		}
		// The server answers what it has read, then closes.
		nc.(*net.UnixConn).CloseWrite()
		var got [][]byte
		r := bufio.NewReader(nc)
		for {
			l, err := r.ReadBytes('\n')
			if err == io.EOF && len(l) == 0 {
				break
			}
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if !isNotification(l) {
				got = append(got, l)
			}
		}

		switch {
		case want == nil && len(got) != 0:
			t.Fatalf("%q: answered %q, want no answer", line, got)
		case want == nil:
		case len(got) != 1:
			t.Fatalf("%q: %d answer lines %q, want 1", line, len(got), got)
		case want.batch:
			var items []json.RawMessage
			if err := json.Unmarshal(got[0], &items); err != nil {
				t.Fatalf("%q: answer %q, want an array: %v", line, got[0], err)
			}
			var ids []string
			for _, it := range items {
				ids = append(ids, string(checkResponse(t, it)))
			}
			slices.Sort(ids)
			if !slices.Equal(ids, want.ids) {
				t.Fatalf("%q: answer ids %q, want %q", line, ids, want.ids)
			}
		default:
			if id := string(checkResponse(t, got[0])); id != want.ids[0] {
				t.Fatalf("%q: answer id %s, want %s", line, id, want.ids[0])
			}
		}
	})
}

type answers struct {
	batch bool
	ids   []string // sorted; "null" for an unreadable id
}

// expectAnswers says what JSON-RPC 2.0 (and this package's limits) make
// of a line, without the server's code: nil for no answer at all.
func expectAnswers(line []byte) *answers {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil
	}
	if !json.Valid(line) {
		return &answers{ids: []string{"null"}}
	}
	if line[0] != '[' {
		id, ok := expectID(line)
		if !ok {
			return nil
		}
		return &answers{ids: []string{id}}
	}
	var items []json.RawMessage
	json.Unmarshal(line, &items)
	if len(items) == 0 || len(items) > MaxBatchLen {
		return &answers{ids: []string{"null"}}
	}
	a := &answers{batch: true}
	for _, it := range items {
		if id, ok := expectID(it); ok {
			a.ids = append(a.ids, id)
		}
	}
	if len(a.ids) == 0 {
		return nil
	}
	slices.Sort(a.ids)
	return a
}

// expectID gives the id the answer to one request has, and false for a
// notification: an object without an "id" member.
func expectID(v json.RawMessage) (string, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(v, &m) != nil || m == nil {
		return "null", true
	}
	id, ok := m["id"]
	if !ok {
		return "", false
	}
	var x any
	json.Unmarshal(id, &x) // a number too large for a float64 leaves x nil
	switch x.(type) {
	case string, float64, nil:
		return string(id), true
	}
	return "null", true
}

// isNotification reports whether a line the server wrote is one of the
// notifications of the "notify" method.
func isNotification(l []byte) bool {
	var m map[string]json.RawMessage
	json.Unmarshal(l, &m)
	_, hasID := m["id"]
	return string(m["method"]) == `"event"` && !hasID
}

// checkResponse fails unless v is one JSON-RPC 2.0 response, and returns
// its id.
func checkResponse(t *testing.T, v []byte) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(v, &m); err != nil || m == nil {
		t.Fatalf("a response that is not an object: %q", v)
	}
	if string(m["jsonrpc"]) != `"2.0"` {
		t.Fatalf("jsonrpc: %q", v)
	}
	id, ok := m["id"]
	if !ok {
		t.Fatalf("no id: %q", v)
	}
	_, hasResult := m["result"]
	rawErr, hasError := m["error"]
	if hasResult == hasError || len(m) != 3 {
		t.Fatalf("want id and one of result and error: %q", v)
	}
	if hasError {
		var e struct {
			Code    *int
			Message *string
		}
		if err := json.Unmarshal(rawErr, &e); err != nil || e.Code == nil || e.Message == nil {
			t.Fatalf("error object: %q", v)
		}
	}
	return id
}
