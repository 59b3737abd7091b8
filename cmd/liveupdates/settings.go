package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/nostressplanner/liveupdates/env"
)

// envVar is one setting: an environment variable and, unless it is a
// secret, its flag.
type envVar struct {
	Name    string // LIVE_NATS_URL
	Default string // shown in help; the loaders own the real defaults
	Help    string
	// Secret settings are never echoed, and come from the environment
	// only: a process's arguments are readable by every local user (ps,
	// /proc/<pid>/cmdline), so a flag would publish the secret.
	Secret bool
	// readers are the commands that read it (vars.go).
	readers readers
}

// flagName turns LIVE_NATS_URL into nats-url and PUSHER_APP_ID into
// pusher-app-id: the flag of the same meaning.
func flagName(env string) string {
	n := strings.TrimPrefix(env, "LIVE_")
	return strings.ReplaceAll(strings.ToLower(n), "_", "-")
}

var errHelp = errors.New("help shown")

// settings resolves a setting from its flag, then the environment.
// Secret settings have no flag: the environment only.
type settings struct {
	flags  map[string]*string
	set    map[string]bool
	getenv func(string) string
	extra  map[string]*string // command-only flags without a variable
	bools  map[string]*bool
	stdin  io.Reader // confirmations (dlq purge)
	stdout io.Writer // results (tail, publish)
	stderr io.Writer // logs
}

// Getenv has the signature every LoadConfig takes.
func (s *settings) Getenv(name string) string {
	if s.set[name] {
		return *s.flags[name]
	}
	return s.getenv(name)
}

// reader reads the settings (a flag, else its variable) with the one
// parser of every role's configuration.
func (s *settings) reader() *env.Reader { return env.NewReader(s.Getenv) }

// flagReader reads command-only flags (--limit, --seq) with the same
// parser; its errors name the flag: --limit="x": want ...
func (s *settings) flagReader() *env.Reader {
	return env.NewReader(func(name string) string { return s.Flag(strings.TrimPrefix(name, "--")) })
}

// Flag returns a command-only flag's value.
func (s *settings) Flag(name string) string { return *s.extra[name] }

// Bool returns a command-only boolean flag.
func (s *settings) Bool(name string) bool { return *s.bools[name] }

type extraFlag struct {
	name, def, help string
	isBool          bool
}

var commandFlags = map[string][]extraFlag{
	"publish": {
		{name: "event", help: "the eventId (required)"},
		{name: "type", help: "the change type, such as vote.updated (required)"},
		{name: "data", def: "{}", help: "the change's data, JSON"},
		{name: "id", help: "the change id (idempotency key); generated when empty"},
		{name: "socket-id", help: "Pusher socket id of the sender, excluded by the relay"},
		{name: "api-url", help: "publish through the ingest API at this base URL instead of NATS (uses LIVE_API_KEY)"},
	},
	"dlq list": {
		{name: "event", help: "only the dead letters of this eventId"},
		{name: "limit", def: "100", help: "print at most this many (0: all)"},
	},
	"dlq show": {
		{name: "seq", help: "the dead letter's seq in LIVE_DLQ (required; see dlq list)"},
	},
	"dlq replay": {
		{name: "seq", help: "replay this dead letter (its seq in LIVE_DLQ)"},
		{name: "event", help: "replay every dead letter of this eventId"},
		{name: "all", help: "replay every dead letter", isBool: true},
		{name: "keep", help: "keep replayed dead letters in LIVE_DLQ (default: delete each once stored again)", isBool: true},
	},
	"dlq purge": {
		{name: "seq", help: "delete this dead letter (its seq in LIVE_DLQ)"},
		{name: "event", help: "delete every dead letter of this eventId"},
		{name: "all", help: "delete every dead letter", isBool: true},
		{name: "yes", help: "do not ask for confirmation", isBool: true},
	},
	"status": {
		{name: "json", help: "print JSON instead of text", isBool: true},
	},
	"tail": {
		{name: "event", help: "the eventId to follow (required)"},
		{name: "type", help: "only this change type"},
		{name: "from-start", help: "print what the stream still holds first", isBool: true},
		{name: "limit", def: "0", help: "exit after this many envelopes (0: follow until interrupted)"},
	},
}

func parseSettings(c command, args []string, getenv func(string) string, stderr io.Writer) (*settings, error) {
	fs := flag.NewFlagSet("liveupdates "+c.name, flag.ContinueOnError)
	// The flag package prints its own errors; they go through a buffer so
	// that a secret's flag gets the message that says where it belongs.
	var out bytes.Buffer
	fs.SetOutput(&out)
	s := &settings{flags: map[string]*string{}, set: map[string]bool{}, getenv: getenv,
		extra: map[string]*string{}, bools: map[string]*bool{}}
	byFlag := map[string]string{}
	secretFlags := map[string]string{} // flag name: its variable
	var secrets []envVar
	for _, v := range c.vars {
		if v.Secret {
			secretFlags[flagName(v.Name)] = v.Name
			secrets = append(secrets, v)
			continue
		}
		help := v.Help + " (env " + v.Name
		if v.Default != "" {
			help += ", default " + v.Default
		}
		help += ")"
		s.flags[v.Name] = fs.String(flagName(v.Name), "", help)
		byFlag[flagName(v.Name)] = v.Name
	}
	for _, f := range commandFlags[c.name] {
		if f.isBool {
			s.bools[f.name] = fs.Bool(f.name, false, f.help)
		} else {
			s.extra[f.name] = fs.String(f.name, f.def, f.help)
		}
	}
	fs.Usage = func() {
		fmt.Fprintf(&out, "usage: liveupdates %s [flags]\n\n%s\n\n", c.name, c.summary)
		fs.PrintDefaults()
		if len(secrets) > 0 {
			fmt.Fprintf(&out, "\nSecrets, from the environment only (never a flag: arguments are visible to every local user):\n")
			for _, v := range secrets {
				fmt.Fprintf(&out, "  %s\n    \t%s\n", v.Name, v.Help)
			}
		}
	}
	err := fs.Parse(args)
	var undefined string
	if err != nil {
		_, _ = fmt.Sscanf(err.Error(), "flag provided but not defined: -%s", &undefined)
	}
	if env, ok := secretFlags[undefined]; ok {
		fmt.Fprintf(stderr, "liveupdates %s: --%s is not accepted: set %s in the environment instead (a secret in the arguments is visible to every local user, in ps and /proc)\n", c.name, undefined, env)
		return nil, errUsage
	}
	_, _ = stderr.Write(out.Bytes())
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "liveupdates %s: unexpected argument %q\n", c.name, fs.Arg(0))
		return nil, errUsage
	}
	fs.Visit(func(f *flag.Flag) {
		if env, ok := byFlag[f.Name]; ok {
			s.set[env] = true
		}
	})
	return s, nil
}
