package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/corral-cloud/corral/api/client"
	"github.com/corral-cloud/corral/api/types"
	"github.com/corral-cloud/corral/buildinfo"
	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs corralctl with args (without the program name), writing results
// to stdout and messages to stderr, and returns the exit status. Tests call
// it in-process.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return newApp(stdout, stderr, os.Getenv).execute(ctx, args)
}

// app is one invocation of corralctl: its global flags, its outputs and,
// once a command runs, its API connection.
type app struct {
	stdout, stderr io.Writer
	stdin          io.Reader // secrets read from standard input
	getenv         func(string) string

	// Global flags.
	flags      source // --endpoint, --token, --token-file
	configPath string
	output     string
	timeout    time.Duration

	// started is set when a command's own work begins: every error before
	// that (unknown command or flag, wrong arguments, missing required
	// flags) is a usage error.
	started  bool
	api      *api
	hasToken bool // whether the settings hold a token
}

// newApp returns an app that reads the environment through getenv.
func newApp(stdout, stderr io.Writer, getenv func(string) string) *app {
	return &app{stdout: stdout, stderr: stderr, stdin: os.Stdin, getenv: getenv}
}

// errReported is returned by a command that has already printed its
// errors (delete of several objects); it only sets the exit status.
var errReported = errors.New("errors reported above")

// execute runs the command line and returns the exit status.
func (a *app) execute(ctx context.Context, args []string) int {
	root := a.rootCommand()
	if args == nil {
		args = []string{} // cobra would read os.Args
	}
	root.SetArgs(args)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var ue *usageError
	if !a.started || errors.As(err, &ue) {
		fmt.Fprintf(a.stderr, "corralctl: %v\n", err)
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitUsage
	}
	if !errors.Is(err, errReported) {
		printError(a.stderr, err)
	}
	return exitError
}

// rootCommand builds the command tree.
func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "corralctl",
		Short: "corralctl manages a Corral cloud through corrald's API",
		Long: `corralctl manages a Corral cloud through corrald's /v1 API.

The endpoint and token come from the flags, else from CORRAL_ENDPOINT,
CORRAL_TOKEN and CORRAL_TOKEN_FILE, else from the configuration file (JSON
with "endpoint", "token" and "token_file").

Exit status: 0 on success, 1 for an API or other error, 2 for a usage error.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.ArbitraryArgs,
		RunE:          groupRunE,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{msg: err.Error()} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.flags.Endpoint, "endpoint", "", "corrald URL (env "+envEndpoint+"; default "+defaultEndpoint+")")
	pf.StringVar(&a.flags.Token, "token", "", "API token (env "+envToken+")")
	pf.StringVar(&a.flags.TokenFile, "token-file", "", "file holding the API token (env "+envTokenFile+")")
	pf.StringVar(&a.configPath, "config", "", "configuration file (env "+envConfig+"; default $XDG_CONFIG_HOME/corral/config.json or ~/.config/corral/config.json)")
	pf.StringVarP(&a.output, "output", "o", formatTable, "output format: table, wide (a table with more columns), json or yaml")
	pf.DurationVar(&a.timeout, "timeout", 30*time.Second, "time limit of each request; 0 means none")
	root.AddCommand(
		a.regionCommand(), a.zoneCommand(), a.aggregateCommand(), a.flavorCommand(), a.imageCommand(),
		a.projectCommand(), a.serverCommand(), a.hostCommand(), a.tokenCommand(), a.auditCommand(),
	)
	root.AddCommand(a.nodeCommand()) // bare metal (node.go)
	root.AddCommand(a.networkCommands()...)
	root.AddCommand(a.reportCommand())
	root.AddCommand(a.versionCommand())
	return root
}

// versionCommand prints corralctl's build information. It needs no
// endpoint or token.
func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print corralctl's version, VCS revision and time, and Go version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			a.started = true
			_, err := fmt.Fprint(a.stdout, buildinfo.Read("corralctl"))
			return err
		},
	}
}

// groupRunE answers a command that only groups others, run without one
// of them or with an unknown one.
func groupRunE(cmd *cobra.Command, args []string) error {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	if len(args) == 0 {
		return usagef("%s needs a command: %s", cmd.CommandPath(), strings.Join(names, ", "))
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's default, set only on its own path
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usagef("%s", msg)
}

// group returns a command that only groups subcommands.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.ArbitraryArgs, RunE: groupRunE}
	cmd.AddCommand(subs...)
	return cmd
}

// action wraps the work of a leaf command: it marks the end of usage
// checking, reads the configuration and connects, then runs fn.
func (a *app) action(fn func(ctx context.Context, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a.started = true
		if err := a.setup(); err != nil {
			return err
		}
		err := fn(cmd.Context(), cmd, args)
		if client.Code(err) == types.CodeUnauthenticated && !a.hasToken {
			err = &hintError{err: err, hint: "no token configured: use --token, --token-file, " + envToken + ", " +
				envTokenFile + " or the configuration file"}
		}
		return err
	}
}

// setup checks the global flags and resolves the connection settings.
func (a *app) setup() error {
	if !slices.Contains(formats, a.output) {
		return usagef("--output %q: want one of %s", a.output, strings.Join(formats, ", "))
	}
	if a.flags.Token != "" && a.flags.TokenFile != "" {
		return usagef("--token and --token-file exclude each other")
	}
	if a.timeout < 0 {
		return usagef("--timeout %v: must not be negative", a.timeout)
	}
	path, optional := a.configPath, false
	if path == "" {
		path = a.getenv(envConfig)
	}
	if path == "" {
		path, optional = defaultConfigPath(a.getenv), true
	}
	file, err := loadConfigFile(path, optional)
	if err != nil {
		return err
	}
	env := source{Endpoint: a.getenv(envEndpoint), Token: a.getenv(envToken), TokenFile: a.getenv(envTokenFile)}
	s, err := resolveSettings(a.flags, env, file, os.ReadFile)
	if err != nil {
		return err
	}
	a.api, a.hasToken = newAPI(s, a.timeout), s.Token != ""
	return nil
}

// printObject prints one object: its JSON or YAML, or "key: value"
// lines (which show every field, in table and wide output alike).
func (a *app) printObject(raw json.RawMessage) error {
	switch a.output {
	case formatJSON:
		return writeJSON(a.stdout, raw)
	case formatYAML:
		return writeYAML(a.stdout, raw)
	}
	fields, err := flattenObject(raw)
	if err != nil {
		return err
	}
	return writeFields(a.stdout, fields)
}

// tabular reports whether the output is a table (table or wide), where
// commands also print short confirmations such as "deleted server web-1".
func (a *app) tabular() bool { return a.output == formatTable || a.output == formatWide }

// notef writes a message for people to stderr.
func (a *app) notef(format string, args ...any) {
	fmt.Fprintf(a.stderr, "corralctl: "+format+"\n", args...)
}
