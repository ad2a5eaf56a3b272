// Package jsonrpc is the JSON-RPC 2.0 framing of the daemon's API: a
// Server that reads requests from its connections and hands them to
// registered Handlers, and a Client that makes calls and follows one
// subscription on a connection. It knows no method: the API does, on top
// of it. It imports only the standard library.
//
// # Framing
//
// Each message is one JSON value, UTF-8, on one line ending in "\n"
// (what signal-cli's socket mode does, and what socat and a shell can
// speak). A line may be a request object or a batch (an array of them);
// blank lines are skipped. An object without an "id" member is a
// notification: it runs if it is a valid request, and is never answered,
// not even when it is not one.
// Every other request gets exactly one answer, whose "id" is the
// request's, or null when it could not be read. Ids must be strings,
// numbers or null, "jsonrpc" must be "2.0". Errors: -32700 for a line
// that is not JSON, -32600 for a value that is not a request (and an
// empty batch), -32601 for an unknown method, -32602 for params a
// handler cannot use. A batch of notifications only gets no answer.
//
// A connection's requests run concurrently (a batch's one after the
// other), so a connection that subscribed still takes requests; answers
// come in the order they are ready, matched by id. Writes to a connection
// are serialised, one whole message at a time.
//
// # Subscriptions
//
// A handler may send notifications, method NotifyMethod ("event"),
// before its answer; a subscription is a handler that does so until its
// context ends. Its context ends when the client goes (the connection's
// reader sees it), when the client sends the notification
// {"jsonrpc":"2.0","method":"rpc.cancel","params":{"id":ID}} for it, or
// when the server closes. rpc.cancel (CancelMethod) is the one method the
// package serves itself; the connection's reader handles it without a
// slot, so it gets through whenever the reader reads, but a reader that
// waits for slots (all MaxInFlight taken, or fewer free than a batch
// takes) reads nothing until they free.
// The Client keeps at most MaxInFlight requests on the wire, so its own
// cancels are always read.
//
// # Errors
//
// A handler that returns an *Error (errors.As finds it) has it sent as it
// is: that is how a handler answers -32602 with a readable message. Any
// other error is sent with its Error() as message and the code and data
// that Server.ErrorCode gives, so an API maps its own errors to codes in
// one place, and can put in data whatever a client needs despite the
// error (the result of a send that timed out). A Client returns every
// error answer as an *Error, with Data left for the API to decode.
//
// # Limits
//
// Everything a local client can make the daemon hold is bounded, so that
// a broken or runaway client cannot exhaust it:
//
//   - MaxLineBytes (1 MiB) per request line: longer, and the server
//     answers -32600 with a null id, then ends the connection (the rest
//     of the line cannot be told from the next request). The Client
//     refuses to send such a request instead.
//   - MaxInFlight (64) requests running per connection, a batch counting
//     as its length up to MaxInFlight/2 (its answers are held together):
//     beyond it the connection's reader waits for one to end, and so
//     stops reading; the client's writes then block. Nothing is dropped.
//     A request ends once its answer is written, so a client that sends
//     and never reads makes the server hold at most 2 × MaxInFlight
//     answers (two batches of MaxBatchLen), then stops being read. The Client
//     keeps to the same limit itself, counting a request until its
//     answer comes, so that its rpc.cancel notifications are always read.
//   - MaxBatchLen (64) requests per batch: beyond it the whole batch is
//     answered with one -32600, because its answers are held until the
//     last one is ready.
//   - MaxConns (64) connections at once: beyond it a new connection is
//     accepted, answered with one CodeServerError error with a null id
//     ("too many connections") and closed at once, so that a client
//     learns why rather than hanging. A Client reports that as an error
//     that is both ErrClosed and that *Error.
//
// At worst the server holds MaxConns × (MaxInFlight + 1) lines of
// MaxLineBytes (4 GiB, with every slot of every connection held by a
// handler that waits, each with a maximal request), and as many
// goroutines; what answers hold is for the API to bound (it pages), times
// at most 2 × MaxInFlight per connection.
//
// A Client holds at most one answer line of MaxAnswerBytes (64 MiB) being
// read, beyond which it ends the connection, and MaxBufferedNotifications
// (64) notifications that Next has not taken, beyond which it stops
// reading: the server's notify then blocks, and calls on the same Client
// wait for their answers until Next is called again. A slow reader slows
// the server; it never loses a notification.
//
// A client that fills all its slots with requests that never end and
// then goes away is noticed when one of them writes (a notification
// fails) or the server closes, not before: while its reader waits for a
// slot, nothing reads the socket's end.
package jsonrpc
