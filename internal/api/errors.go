package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/p2pmsg/p2pmsg/internal/jsonrpc"
	"github.com/p2pmsg/p2pmsg/node"
)

// Error codes of the API's own errors. They are the p2pmsg command's exit
// codes, so that a script gets the same number from the socket as from
// the command line; invalid params answer with JSON-RPC's -32602 and carry
// CodeInvalid in their data.
const (
	CodeFailed     = 1 // anything else; the message says what
	CodeInvalid    = 2 // params that cannot be used
	CodeNoDaemon   = 3 // the method needs a running node and none runs
	CodeNotFound   = 4 // unknown peer, contact or message; peer not found in the DHT
	CodeTimeout    = 5 // send's wait ran out
	CodeLocked     = 6 // another process holds the data directory
	CodePassphrase = 7 // the passphrase is missing or wrong
	CodeExists     = 8 // an identity exists already
)

// ErrorData is the data of the API's error answers.
type ErrorData struct {
	// Code is one of the Code constants (the command's exit code).
	Code int `json:"code"`
	// Result is what there is despite the error: send with wait names
	// the message and its state when it timed out or failed.
	Result json.RawMessage `json:"result,omitempty"`
}

// apiError is an error with its code, and a result despite it.
type apiError struct {
	code   int
	err    error
	result any
}

func (e *apiError) Error() string { return e.err.Error() }
func (e *apiError) Unwrap() error { return e.err }

func withCode(code int, err error) error { return &apiError{code: code, err: err} }

func invalid(format string, args ...any) error {
	return withCode(CodeInvalid, fmt.Errorf(format, args...))
}

// withResult attaches a result to an error answer.
func withResult(result any, err error) error {
	e := &apiError{code: CodeOf(err), err: err, result: result}
	return e
}

// CodeOf maps an error to its code: the API's own, or node's sentinels.
func CodeOf(err error) int {
	var ae *apiError
	var re *jsonrpc.Error
	switch {
	case err == nil:
		return 0
	case errors.Is(err, jsonrpc.ErrProtocol):
		return CodeFailed
	case errors.Is(err, jsonrpc.ErrClosed) && !errors.As(err, &re):
		return CodeNoDaemon // the daemon went away
	case errors.Is(err, node.ErrClosed):
		return CodeNoDaemon // the daemon is stopping
	case errors.As(err, &ae):
		return ae.code
	case errors.As(err, &re):
		var d ErrorData
		if json.Unmarshal(re.Data, &d) == nil && d.Code != 0 {
			return d.Code
		}
		if re.Code == jsonrpc.CodeInvalidParams {
			return CodeInvalid
		}
	case errors.Is(err, node.ErrNotStarted), errors.Is(err, errNoDaemon):
		return CodeNoDaemon
	case errors.Is(err, node.ErrNotFound), errors.Is(err, node.ErrPeerNotFound), errors.Is(err, node.ErrNoMailbox), errors.Is(err, node.ErrBadPeer),
		errors.Is(err, node.ErrNoIdentity):
		return CodeNotFound
	case errors.Is(err, node.ErrInvalid), errors.Is(err, node.ErrNameTaken), errors.Is(err, node.ErrTooLong),
		errors.Is(err, node.ErrInvalidConfig), errors.Is(err, node.ErrNotMailbox), errors.Is(err, node.ErrTooManyMailboxes),
		errors.Is(err, node.ErrNotYours), errors.Is(err, node.ErrBlocked), errors.Is(err, node.ErrBadInvitation), errors.Is(err, node.ErrBadBackup):
		return CodeInvalid
	case errors.Is(err, node.ErrOwnerExists), errors.Is(err, node.ErrExists):
		return CodeExists
	case errors.Is(err, context.DeadlineExceeded):
		return CodeTimeout
	case errors.Is(err, node.ErrLocked):
		return CodeLocked
	case errors.Is(err, node.ErrPassphraseRequired), errors.Is(err, node.ErrWrongPassphrase), errors.Is(err, node.ErrWrongBackupPassphrase):
		return CodePassphrase
	}
	return CodeFailed
}

// errNoDaemon answers the methods that need a running node when the
// server serves a store opened without one.
var errNoDaemon = errors.New("no daemon runs on this data directory: start one with `p2pmsg daemon`")

// errorAnswer is the jsonrpc Server's ErrorCode: the code and data of an
// answer to err.
func errorAnswer(err error) (int, any) {
	code := CodeOf(err)
	d := ErrorData{Code: code}
	var ae *apiError
	if errors.As(err, &ae) && ae.result != nil {
		if b, merr := json.Marshal(ae.result); merr == nil {
			d.Result = b
		}
	}
	wire := code
	if code == CodeInvalid {
		wire = jsonrpc.CodeInvalidParams
	}
	return wire, d
}

// ResultOf decodes into out the result that an error answer carries
// despite the error, and reports whether there was one.
func ResultOf(err error, out any) bool {
	var re *jsonrpc.Error
	if !errors.As(err, &re) {
		return false
	}
	var d ErrorData
	if json.Unmarshal(re.Data, &d) != nil || len(d.Result) == 0 {
		return false
	}
	return json.Unmarshal(d.Result, out) == nil
}
