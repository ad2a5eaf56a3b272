// Command p2pmsg is the p2pmsg messenger: a daemon that runs the node, and
// signal-cli-style verbs that talk to it over JSON-RPC 2.0 on a UNIX
// socket in the data directory.
//
// Usage and exit codes: p2pmsg help, or usageText below.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes, documented in usageText and the README.
const (
	exitOK         = 0
	exitError      = 1 // anything else; the message says what
	exitUsage      = 2 // bad command line
	exitNoDaemon   = 3 // the verb needs a running daemon and none answers
	exitNotFound   = 4 // unknown peer or contact, or not found in the DHT
	exitTimeout    = 5 // --wait ran out
	exitLocked     = 6 // another process (a daemon) holds the data directory
	exitPassphrase = 7 // passphrase missing or wrong
	exitExists     = 8 // init: an identity exists already
)

const usageText = `p2pmsg: serverless end-to-end encrypted chat

Usage: p2pmsg [global flags] COMMAND [flags] [arguments]
Flags may come before or after the arguments.

PEER is a peer ID or a contact's name. Without a daemon, the commands
that only read (id, history, message, receive, contacts list, verify)
read the store; the others need one.

Commands:
  init                         create the identity and the database
  id                           peer ID, addresses and fingerprint
  daemon                       run the node in the foreground
      --listen MULTIADDR         listen there (repeatable; default: TCP and QUIC on all interfaces)
      --bootstrap MULTIADDR      join the DHT through this peer (repeatable); a bootstrap peer that
                                 is a relay (--relay) also makes this node reachable behind NAT
      --relay-via MULTIADDR      pin a relay to hold a reservation on (repeatable; any connected
                                 relay is used without it)
      --relay                    serve as a circuit relay v2 and DHT server (a node with a public address)
      --mailbox                  keep messages for the owners you admit while they are offline, and
                                 serve the DHT (a node with a public address; docs/mailbox.md)
      --no-mdns                  no discovery on the LAN
      --no-port-map              no UPnP/NAT-PMP port mapping
      --dht-mode auto|server|client
                                 the internet DHT: auto serves it once reachable from the internet;
                                 the LAN DHT (private and loopback networks) is always served, but
                                 with client
      --reachability auto|public|private   override AutoNAT (auto: private at once when no address is public)
      --log-level debug|info|warn|error    what the daemon logs on stderr (never keys or texts)
  send PEER [TEXT... | -] [--reply-to ID] [--wait [--timeout D]]
                               send TEXT to PEER (peer ID or contact name); without TEXT, or
                               with -, the text is read from stdin; --wait: until delivered, or
                               mailboxed (kept at one of PEER's mailboxes)
  history PEER [--limit N] [--before ID | --after ID | --oldest]
                               a page of the conversation (default: the latest 50), oldest first
  message ID                   one message
  edit PEER ID [TEXT... | -]   replace the text of a message of yours, for both of you
  delete PEER ID               delete a message of yours for everyone (a tombstone stays)
  react PEER ID EMOJI | react PEER ID --remove
                               react to a message (one reaction each), or take it back
  read PEER [--until ID]       mark the conversation read (PEER is told, unless read_receipts = false)
  disappearing PEER DURATION|off
                               delete new messages from both sides DURATION (30s, 1h, 7d, 4w)
                               after they are read
  search WORD... [--peer PEER] [--limit N]
                               messages that hold every word, newest first
  profile [--name NAME]        your display name, which your contacts see
  receive [--follow] [--since ID] [--kind KIND]...
                               the event stream, from after event ID
  contacts list
  invite                       one line (and a QR code) that a friend adds you with
  contacts add PEER|INVITATION [--name NAME]
                               add or accept (without --name the name is kept)
  contacts rename PEER NAME
  contacts remove PEER [--yes]      delete the contact with its history (asks first)
  contacts accept PEER | block PEER | unblock PEER
  verify PEER                  safety number to compare with PEER
  trust PEER [--verified NUMBER]
                               accept PEER's new identity key after a key change;
                               --verified: record that you compared safety numbers (NUMBER:
                               the one you compared, checked against yours)
  resend MESSAGE_ID            send a failed message again, as a new message
  status                       the running node's state
  mailbox allow PEER_ID [--quota N] [--quota-bytes N] [--ttl-max D]
                               admit an owner to this daemon's mailbox (--mailbox)
  mailbox invite [--valid D] [--quota N] [--quota-bytes N] [--ttl-max D]
                               print a one-time code that admits whoever redeems it
  mailbox list | revoke PEER_ID
                               the owners and their use; remove one with all it keeps here
  mailboxes add CODE|MULTIADDR keep your messages at a mailbox while you are offline (up to 3):
                               an invitation code, or its address if it admitted your peer ID
  mailboxes list | remove PEER_ID
                               your mailboxes: reachable, waiting, one-time keys left; stop using one
  backup FILE                  an encrypted copy of the store, also while the daemon runs (under the
                               store's passphrase, or one you choose when it has none)
  restore FILE [--data DIR]    restore a backup into a new directory; new sessions start by themselves
  passphrase [--new-passphrase-file FILE | --remove]
                               set, change or remove the passphrase that seals the store
  chat [PEER]                  the chat screen: contacts, conversation, delivery states
  demo                         a small network on this machine, two users chatting
  version                      this p2pmsg's version (also --version)
  completion bash|zsh|fish     a shell completion script: source <(p2pmsg completion bash)

Each command's --help shows its flags and an example.

Global flags:
  --data DIR      data directory (default $P2PMSG_DATA, else $XDG_DATA_HOME/p2pmsg, else ~/.local/share/p2pmsg)
  --config FILE   TOML configuration (default DIR/config.toml when it exists)
  --json          machine-readable output
  --passphrase-file FILE, --passphrase-fd N
                  the passphrase that seals the keys (without a final line break)

The passphrase that seals the keys comes from --passphrase-file FILE,
--passphrase-fd N, $P2PMSG_PASSPHRASE (which the daemon removes from its
environment at start), or a prompt on a terminal.

Exit codes:
  0 ok   1 error   2 usage   3 no daemon running   4 peer not found
  5 timeout   6 data directory in use   7 passphrase missing or wrong
  8 identity exists
`

// cliError carries an exit code with the message.
type cliError struct {
	code int
	err  error
}

func (e *cliError) Error() string { return e.err.Error() }
func (e *cliError) Unwrap() error { return e.err }

func fail(code int, format string, args ...any) error {
	return &cliError{code: code, err: fmt.Errorf(format, args...)}
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// commands maps a verb to its implementation.
var commands = map[string]func(e *env, args []string) error{
	"init":         cmdInit,
	"id":           cmdID,
	"daemon":       cmdDaemon,
	"send":         cmdSend,
	"history":      cmdHistory,
	"receive":      cmdReceive,
	"contacts":     cmdContacts,
	"verify":       cmdVerify,
	"trust":        cmdTrust,
	"status":       cmdStatus,
	"mailbox":      cmdMailbox,
	"mailboxes":    cmdMailboxes,
	"chat":         cmdChat,
	"resend":       cmdResend,
	"message":      cmdMessage,
	"demo":         cmdDemo,
	"version":      cmdVersion,
	"edit":         cmdEdit,
	"delete":       cmdDelete,
	"react":        cmdReact,
	"read":         cmdRead,
	"disappearing": cmdDisappearing,
	"profile":      cmdProfile,
	"search":       cmdSearch,
	"invite":       cmdInvite,
	"backup":       cmdBackup,
	"restore":      cmdRestore,
	"passphrase":   cmdPassphrase,
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version") {
		args = []string{"version"}
	}
	name, rest := splitCommand(args)
	if name == "" || name == "help" || name == "-h" || name == "--help" || name == "-help" {
		fmt.Fprint(stdout, usageText)
		if name == "" {
			return exitUsage
		}
		return exitOK
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "p2pmsg: unknown command %q; see p2pmsg help\n", name)
		return exitUsage
	}
	e := &env{stdout: stdout, stderr: stderr}
	err := cmd(e, rest)
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	code := exitCodeOf(err)
	if e.json {
		// A script that asked for JSON reads its errors as JSON too: one
		// object on one line, with the exit code.
		b, _ := json.Marshal(struct {
			Command string `json:"command"`
			Error   string `json:"error"`
			Code    int    `json:"code"`
		}{name, err.Error(), code})
		fmt.Fprintln(stderr, string(b))
		return code
	}
	fmt.Fprintf(stderr, "p2pmsg %s: %v\n", name, err)
	return code
}

// splitCommand finds the verb: the first argument that is neither a
// global flag nor a global flag's value.
func splitCommand(args []string) (string, []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return a, append(append([]string{}, args[:i]...), args[i+1:]...)
		}
		name := strings.TrimLeft(a, "-")
		if (name == "data" || name == "config" || name == "passphrase-file" || name == "passphrase-fd" || name == "passphrase-pipe") && i+1 < len(args) {
			i++ // its value
		}
	}
	return "", nil
}

// env is what every command shares: the global flags, resolved.
type env struct {
	stdout, stderr io.Writer
	data           string
	configFile     string
	json           bool
	passFile       string // --passphrase-file
	passFD         int    // --passphrase-fd; -1: none
	passPipe       int    // --passphrase-pipe (the daemon's re-exec: raw bytes); -1: none
	columns        int    // the terminal's width for plain output (0: not a terminal); see width
	pass           []byte // the passphrase, once passRead (nil: none given)
	passRead       bool
}

// width is the terminal's width, asked once (a test sets columns).
func (e *env) width() int {
	if e.columns == 0 {
		e.columns = terminalWidth(e.stdout)
		if e.columns == 0 {
			e.columns = -1
		}
	}
	return max(e.columns, 0)
}

// flags returns a flag set with the global flags registered.
func (e *env) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse errors are reported once, by run
	fs.StringVar(&e.data, "data", "", "data directory")
	fs.StringVar(&e.configFile, "config", "", "TOML configuration file")
	fs.BoolVar(&e.json, "json", false, "machine-readable output")
	fs.StringVar(&e.passFile, "passphrase-file", "", "read the passphrase from this file")
	fs.IntVar(&e.passFD, "passphrase-fd", -1, "read the passphrase from this file descriptor")
	fs.IntVar(&e.passPipe, "passphrase-pipe", -1, "(the daemon to itself) the passphrase, raw, on this descriptor")
	fs.Usage = func() {} // --help: parse prints the verb's own help
	return fs
}

// globalFlags are the flags every verb takes: its help leaves them to
// `p2pmsg help`.
var globalFlags = map[string]bool{"data": true, "config": true, "json": true, "passphrase-file": true, "passphrase-fd": true, "passphrase-pipe": true}

// help prints a verb's usage, its own flags and an example, on stdout.
func (e *env) help(fs *flag.FlagSet, usage string) {
	fmt.Fprintf(e.stdout, "usage: %s\n", usage)
	first := true
	fs.VisitAll(func(f *flag.Flag) {
		if globalFlags[f.Name] {
			return
		}
		if first {
			fmt.Fprintln(e.stdout, "\nflags:")
			first = false
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(e.stdout, "  --%-14s %s%s\n", f.Name, f.Usage, def)
	})
	if ex, ok := examples[fs.Name()]; ok {
		fmt.Fprintf(e.stdout, "\nexample:\n  %s\n", ex)
	}
	fmt.Fprintln(e.stdout, "\nGlobal flags (--data, --config, --json, --passphrase-file, --passphrase-fd) and exit codes: p2pmsg help")
}

// examples are the verbs' examples, for their --help.
var examples = map[string]string{
	"init":         "p2pmsg init",
	"id":           "p2pmsg id --json",
	"daemon":       "p2pmsg daemon --bootstrap /ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...",
	"send":         "p2pmsg send bob 'on my way' --wait",
	"resend":       "p2pmsg resend 3f2a...",
	"history":      "p2pmsg history bob --limit 20",
	"message":      "p2pmsg message 3f2a... --json",
	"receive":      "p2pmsg receive --follow --kind message",
	"contacts":     "p2pmsg contacts add 12D3KooW... --name bob",
	"verify":       "p2pmsg verify bob",
	"trust":        "p2pmsg trust bob --verified '12345 67890 ...'",
	"status":       "p2pmsg status",
	"mailbox":      "p2pmsg mailbox invite --valid 24h",
	"mailboxes":    "p2pmsg mailboxes add p2pmsg-mbox:...@/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...",
	"chat":         "p2pmsg chat bob",
	"demo":         "p2pmsg demo",
	"version":      "p2pmsg version",
	"edit":         "p2pmsg edit bob 3f2a... 'on my way, 10 min late'",
	"delete":       "p2pmsg delete bob 3f2a...",
	"react":        "p2pmsg react bob 3f2a... 👍",
	"read":         "p2pmsg read bob",
	"disappearing": "p2pmsg disappearing bob 7d",
	"profile":      "p2pmsg profile --name 'Alice Liddell'",
	"search":       "p2pmsg search dinner --peer bob",
	"invite":       "p2pmsg invite",
	"backup":       "p2pmsg backup ~/p2pmsg-2026-12-03.backup",
	"restore":      "p2pmsg restore ~/p2pmsg-2026-12-03.backup --data ~/.local/share/p2pmsg-restored",
	"passphrase":   "p2pmsg passphrase",
}

// parse parses flags anywhere among the arguments, as git-style tools
// do, and returns the positional arguments; want is how many there must
// be (-1: any).
func (e *env) parse(fs *flag.FlagSet, args []string, want int, usage string) ([]string, error) {
	var pos, literal []string
	for i, a := range args {
		if a == "--" { // the rest is arguments, even if it starts with -
			args, literal = args[:i], args[i+1:]
			break
		}
	}
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				e.help(fs, usage)
				return nil, err
			}
			return nil, fail(exitUsage, "%v; usage: %s", err, usage)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	pos = append(pos, literal...)
	if want >= 0 && len(pos) != want {
		return nil, fail(exitUsage, "usage: %s", usage)
	}
	if e.data == "" {
		d, err := dataDir()
		if err != nil {
			return nil, err
		}
		e.data = d
	}
	return pos, nil
}
