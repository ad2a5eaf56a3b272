package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	"github.com/p2pmsg/p2pmsg/node"
)

// checker is implemented by params with rules beyond their types (a
// peer that must not be blank, say).
type checker interface{ check() error }

// method registers a typed method: its params decoded strictly into P,
// checked, and its result R answered.
func method[P, R any](s *Server, name string, needsDaemon bool, f func(context.Context, P) (R, error)) {
	s.rpc.Handle(name, func(ctx context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
		p, err := s.params(name, needsDaemon, raw, new(P))
		if err != nil {
			return nil, err
		}
		return f(ctx, *p.(*P))
	})
}

// stream registers a method that answers with notifications until its
// client goes, ctx ends or the node closes.
func stream[P any](s *Server, name string, needsDaemon bool, f func(context.Context, P, func(any) error) error) {
	s.rpc.Handle(name, func(ctx context.Context, raw json.RawMessage, notify func(any) error) (any, error) {
		p, err := s.params(name, needsDaemon, raw, new(P))
		if err != nil {
			return nil, err
		}
		return nil, f(ctx, *p.(*P), notify)
	})
}

func (s *Server) params(name string, needsDaemon bool, raw json.RawMessage, p any) (any, error) {
	if needsDaemon && s.offline {
		return nil, withCode(CodeNoDaemon, fmt.Errorf("%s: %w", name, errNoDaemon))
	}
	if err := decodeStrict(name, raw, p); err != nil {
		return nil, err
	}
	if c, ok := reflect.ValueOf(p).Elem().Interface().(checker); ok {
		if err := c.check(); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return p, nil
}

// decodeStrict reads params into p: absent or null params are the zero
// value; anything else must be one JSON object whose fields p knows.
func decodeStrict(method string, raw json.RawMessage, p any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	fields := fieldNames(p)
	if raw[0] != '{' {
		if len(fields) == 0 && string(raw) == "[]" {
			return nil
		}
		return invalid("%s: params must be an object%s", method, takes(fields))
	}
	// Field names first, exactly: encoding/json would match "PEER" to
	// "peer", and its DisallowUnknownFields would let that pass.
	var fieldsIn map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fieldsIn); err != nil {
		return invalid("%s: params: %v", method, err)
	}
	for name := range fieldsIn {
		if !slices.Contains(fields, name) {
			return invalid("%s: unknown field %q%s", method, name, takes(fields))
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	err := dec.Decode(p)
	if err == nil {
		if _, err := dec.Token(); err != io.EOF {
			return invalid("%s: params: one JSON object, and nothing after it", method)
		}
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return invalid("%s: %q must be %s, not %s", method, te.Field, jsonKind(te.Type), te.Value)
	}
	return invalid("%s: params: %v", method, err)
}

func takes(fields []string) string {
	if len(fields) == 0 {
		return " (it takes no params)"
	}
	return " (it takes " + strings.Join(fields, ", ") + ")"
}

// fieldNames lists the JSON names of the fields of the struct p points to.
func fieldNames(p any) []string {
	t := reflect.TypeOf(p).Elem()
	var out []string
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "a number"
}

var allKinds = []node.EventKind{node.EventMessage, node.EventState, node.EventContactRequest, node.EventKeyChange, node.EventConnectivity, node.EventRequestDropped,
	node.EventMailbox, node.EventEdit, node.EventDelete, node.EventReaction, node.EventProfile, node.EventTimer}

func knownKind(k string) bool { return slices.Contains(allKinds, node.EventKind(k)) }

func eventKinds() []string {
	out := make([]string, 0, len(allKinds))
	for _, k := range allKinds {
		out = append(out, string(k))
	}
	return out
}
