package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Version is the only "jsonrpc" member the server accepts.
const Version = "2.0"

// NotifyMethod is the method of every notification a handler sends
// through notify, and the only one a Subscription delivers. Notifications
// carry no subscription id (so that `socat` users see plain events), which
// is why a Client has at most one subscription at a time.
const NotifyMethod = "event"

// CancelMethod is the one method the package itself serves: params
// {"id": ID} end the context of the request with that id on the same
// connection. The "rpc." prefix is reserved by JSON-RPC 2.0 for such
// extensions, so no API method can collide with it; a server that does
// not know it ignores it (it comes as a notification).
const CancelMethod = "rpc.cancel"

// The error codes of JSON-RPC 2.0, and the one this package adds.
// -32768..-32000 are reserved by the specification; an API's own codes
// should be outside that range, except CodeInvalidParams, which a
// handler returns for params it cannot use.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
	// CodeServerError is for a handler's error when Server.ErrorCode is
	// nil, and for a connection refused at MaxConns.
	CodeServerError = -32000
)

// Limits. Every one bounds what a local client can make the daemon (or a
// client, the daemon) hold; the package doc says what happens at each.
const (
	// MaxLineBytes bounds a request line, the newline excluded. The
	// largest request the API has is a message to send: at most 64 KiB
	// of text, which JSON escaping can make six times longer.
	MaxLineBytes = 1 << 20

	// MaxInFlight bounds the requests a connection has running at once,
	// on the server and, so that its rpc.cancel notifications are always
	// read, on the Client. Each holds a goroutine and its params, and its
	// answer until the client reads it. On the server a batch counts as
	// its length, up to MaxInFlight/2: it runs in one goroutine, but
	// holds all its answers.
	MaxInFlight = 64

	// MaxBatchLen bounds the requests in a batch, because a batch's
	// answers are all held until its last one is ready.
	MaxBatchLen = 64

	// MaxConns bounds the connections served at once: each holds a
	// goroutine, a read buffer that can grow to MaxLineBytes, and up to
	// MaxInFlight requests.
	MaxConns = 64

	// MaxAnswerBytes bounds an answer line read by a Client: a page of
	// events or history can be large, but not without bound.
	MaxAnswerBytes = 64 << 20

	// MaxBufferedNotifications bounds the notifications a Subscription
	// holds that Next has not taken. Beyond it the Client stops reading
	// the connection, so the server's notify blocks: a slow reader slows
	// the server and loses nothing.
	MaxBufferedNotifications = 64
)

// ErrClosed is what calls and subscriptions return once their
// connection has ended, whichever side ended it. When the server gave a
// reason (an answer with a null id: too many connections, a line too
// long) the error also wraps that *Error.
var ErrClosed = errors.New("jsonrpc: connection closed")

// ErrProtocol is what a Client's calls also return (with ErrClosed) when
// it ended the connection because the server broke the protocol: an
// answer that is not JSON, or longer than MaxAnswerBytes. The server may
// be alive: it is not the connection that went away.
var ErrProtocol = errors.New("jsonrpc: the server broke the protocol")

// Error is a JSON-RPC error object. A handler returns one (errors.As
// finds it in a chain) to choose the answer's code, message and data
// itself; a Client returns one for every error answer.
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("jsonrpc: error %d", e.Code)
	}
	return e.Message
}

// response is one answer. ID is always written: a nil ID is null, for a
// request whose id could not be read.
type response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
}

type notification struct {
	JSONRPC string          `json:"jsonrpc"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// marshal encodes v on one line, newline included. HTML characters are
// left alone: the socket is read by people with socat as well as by
// programs, and "<" reads better than "\u003c".
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// marshalValue is marshal for a value embedded in a message.
func marshalValue(v any) (json.RawMessage, error) {
	b, err := marshal(v)
	return bytes.TrimSuffix(b, []byte("\n")), err
}
