// Package chat is the chat screen of p2pmsg chat: conversations on the
// left, ordered by their last message, with unread counts; the selected
// conversation on the right, word-wrapped, with dates, delivery and read
// ticks, replies, reactions and edits, scrolled back a page at a time;
// a composer that keeps a draft per conversation.
//
// The model talks to the daemon through Client (the API client, or a
// test's), and learns of changes from the event stream, which its caller
// feeds in as EventMsg, and of the daemon's comings and goings as
// ConnMsg; it never blocks on the network in Update. Its key bindings
// are declared once, in keys.go, and the help line is made from them.
package chat
