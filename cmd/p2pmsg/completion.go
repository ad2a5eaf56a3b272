package main

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
)

// Shell completion: `p2pmsg completion bash|zsh|fish` prints a script
// that completes the verbs, the contacts and mailboxes sub-verbs, and
// each verb's flags. The flags are read off each verb's own --help, so
// that the script never drifts from the flags the verbs take.

// subVerbs are the second words of the verbs that have them.
var subVerbs = map[string][]string{
	"contacts":  {"list", "requests", "add", "rename", "remove", "accept", "block", "unblock"},
	"mailbox":   {"allow", "invite", "list", "revoke"},
	"mailboxes": {"add", "list", "remove"},
}

// verbFlags returns each verb's own flags and the global ones, as --name.
func verbFlags() (map[string][]string, []string) {
	out := map[string][]string{}
	for name := range commands {
		var buf bytes.Buffer
		run([]string{name, "--help"}, &buf, io.Discard)
		for _, line := range strings.Split(buf.String(), "\n") {
			if f, ok := strings.CutPrefix(line, "  --"); ok {
				if i := strings.IndexByte(f, ' '); i > 0 {
					out[name] = append(out[name], "--"+f[:i])
				}
			}
		}
	}
	var global []string
	for f := range globalFlags {
		if f != "passphrase-pipe" { // the daemon's, to itself
			global = append(global, "--"+f)
		}
	}
	sort.Strings(global)
	return out, global
}

func verbNames() []string {
	var names []string
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func cmdCompletion(e *env, args []string) error {
	fs := e.flags("completion")
	pos, err := e.parse(fs, args, 1, "p2pmsg completion bash|zsh|fish")
	if err != nil {
		return err
	}
	flags, global := verbFlags()
	verbs := verbNames()
	var b strings.Builder
	switch pos[0] {
	case "bash", "zsh":
		if pos[0] == "zsh" {
			// zsh runs the bash function through its bashcompinit (with
			// ksharrays: the arrays index from 0, as bash's).
			b.WriteString("(( $+functions[compdef] )) || { autoload -U +X compinit && compinit -u; }\n")
			b.WriteString("autoload -U +X bashcompinit && bashcompinit\n")
		}
		b.WriteString("_p2pmsg() {\n\tlocal cur=${COMP_WORDS[COMP_CWORD]} verb= i\n")
		b.WriteString("\tfor ((i = 1; i < COMP_CWORD; i++)); do\n\t\tcase ${COMP_WORDS[i]} in\n")
		b.WriteString("\t\t--data|--config|--passphrase-file|--passphrase-fd) ((i++)) ;;\n\t\t-*) ;;\n")
		b.WriteString("\t\t*) verb=${COMP_WORDS[i]}; break ;;\n\t\tesac\n\tdone\n")
		b.WriteString("\tif [[ -z $verb ]]; then\n")
		fmt.Fprintf(&b, "\t\tCOMPREPLY=($(compgen -W %q -- \"$cur\"))\n\t\treturn\n\tfi\n", strings.Join(append(slices.Clone(verbs), global...), " "))
		b.WriteString("\tlocal words= sub=\n\tcase $verb in\n")
		for _, v := range verbs {
			words := append(slices.Clone(flags[v]), global...)
			if subs, ok := subVerbs[v]; ok {
				fmt.Fprintf(&b, "\t%s) if ((i + 1 == COMP_CWORD)); then words=%q sub=1; else words=%q; fi ;;\n", v,
					strings.Join(subs, " "), strings.Join(words, " "))
				continue
			}
			fmt.Fprintf(&b, "\t%s) words=%q ;;\n", v, strings.Join(words, " "))
		}
		b.WriteString("\tesac\n\tCOMPREPLY=()\n\tif [[ -n $sub || $cur == -* ]]; then\n\t\tCOMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n\tfi\n}\n")
		b.WriteString("complete -o default -F _p2pmsg p2pmsg\n")
	case "fish":
		b.WriteString("complete -c p2pmsg -f\n")
		for _, v := range verbs {
			fmt.Fprintf(&b, "complete -c p2pmsg -n __fish_use_subcommand -a %s\n", v)
		}
		for _, g := range global {
			fmt.Fprintf(&b, "complete -c p2pmsg -l %s\n", strings.TrimPrefix(g, "--"))
		}
		for _, v := range verbs {
			for _, s := range subVerbs[v] {
				fmt.Fprintf(&b, "complete -c p2pmsg -n '__fish_seen_subcommand_from %s' -a %s\n", v, s)
			}
			for _, f := range flags[v] {
				fmt.Fprintf(&b, "complete -c p2pmsg -n '__fish_seen_subcommand_from %s' -l %s\n", v, strings.TrimPrefix(f, "--"))
			}
		}
	default:
		return fail(exitUsage, "completion for %q: bash, zsh or fish", pos[0])
	}
	fmt.Fprint(e.stdout, b.String())
	return nil
}

// init registers the verb: it reads the table of verbs, which cannot
// name it in its own initializer.
func init() {
	commands["completion"] = cmdCompletion
	examples["completion"] = "source <(p2pmsg completion bash)"
}
