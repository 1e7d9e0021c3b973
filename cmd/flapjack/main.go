// Command flapjack runs coding agents for editors, scripts and servers: an MCP
// server over stdio (the default), the REST API, and the runner that drives
// sessions. This package only wires flags, environment and signals to the core.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/flapjack-dev/flapjack/core"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// globals are the flags every command shares.
type globals struct {
	dataDir  string
	logLevel string
	// logLevelSet records an explicit --log-level or FLAPJACK_LOG_LEVEL.
	logLevelSet bool
	stdin       io.Reader
	stdout      io.Writer
	stderr      io.Writer
	logger      *slog.Logger
	level       slog.Level // of logger, from --log-level
	// redactor hides every secret in play (keys from the environment, the
	// master key, each session's key while it is handled) from every log
	// record and from what the Service and runner return and store.
	redactor *core.Redactor
	// cfg is the process's settings once read (see settings).
	cfg *settings
	// starting is the detached runner this process started and that has not
	// taken the lock yet, so its kick and its watch do not start two.
	startMu  sync.Mutex
	starting *runnerStart
}

// secretEnv names the variables whose values are secrets wherever they show up.
var secretEnv = []string{"CURSOR_API_KEY", "GITHUB_TOKEN", "GH_TOKEN", "FLAPJACK_MASTER_KEY", "FLAPJACK_TOKEN",
	"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"}

// newRedactor builds the process's redactor from the secrets in its environment.
func newRedactor() *core.Redactor {
	r := core.NewRedactor()
	for _, name := range secretEnv {
		r.Add(os.Getenv(name))
	}
	return r
}

// run executes the command line and returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		return exitStatus(stderr, err)
	}
	return 0
}

// exitStatus reports err on stderr and maps it to the exit status: 2 for bad
// usage, 4 when the server cannot be reached, a command's own status, else 1.
func exitStatus(stderr io.Writer, err error) int {
	// Messages can quote what a server or another user sent.
	fmt.Fprintln(stderr, "flapjack:", safeText(err.Error()))
	var (
		ue usageError
		ur unreachableError
		ee exitError
	)
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ur):
		return exitUnreachable
	case errors.As(err, &ee):
		return ee.code
	}
	return exitFailed
}

// usageError marks bad command-line usage (exit status 2).
type usageError struct{ error }

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "flapjack",
		Short: "Run coding agents from your editor, a script or a server",
		Long: `flapjack implements the Code Agents API: reusable code agent templates and
sessions that clone a repository, run a coding agent on a prompt, take follow-ups,
and log every step as events.

Without a subcommand it runs the MCP server over stdio (same as "flapjack mcp").`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          usageArgs(cobra.NoArgs),
		Example:       "  flapjack                      # MCP server on stdio\n  flapjack sessions start --agent ca-... --prompt 'Fix the bug' --wait",
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			_, inEnv := os.LookupEnv("FLAPJACK_LOG_LEVEL")
			g.logLevelSet = inEnv || cmd.Flags().Changed("log-level")
			return g.setup()
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMCP(cmd.Context(), g)
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	// --version and -v print what "flapjack version" prints.
	v, c := buildVersion()
	root.Version = v + " (commit " + c + ")"
	root.SetVersionTemplate("flapjack {{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVar(&g.dataDir, "data-dir", envOr("FLAPJACK_DATA_DIR", defaultDataDir()), "data directory (env FLAPJACK_DATA_DIR)")
	pf.StringVar(&g.logLevel, "log-level", envOr("FLAPJACK_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env FLAPJACK_LOG_LEVEL)")
	root.AddCommand(newMCPCmd(g), newRunnerCmd(g), newVersionCmd(g), newServeCmd(g), newTokenCmd(g), newOrgCmd(g), newUserCmd(g))
	root.AddCommand(newAgentsCmd(g), newSessionsCmd(g), newWebhookCmd(g), newDoctorCmd(g), newSetupCmd(g))
	return root
}

// setup configures logging: always to stderr, because stdout of the MCP server
// carries JSON-RPC only.
func (g *globals) setup() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return usageError{fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", g.logLevel)}
	}
	if g.redactor == nil {
		g.redactor = newRedactor()
	}
	g.level = level
	g.logger = slog.New(core.RedactHandler(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}), g.redactor))
	if g.dataDir == "" {
		return usageError{errors.New("--data-dir: no data directory (set FLAPJACK_DATA_DIR or HOME)")}
	}
	abs, err := filepath.Abs(g.dataDir)
	if err != nil {
		return err
	}
	g.dataDir = abs
	return nil
}

// quietUnlessAsked raises the log level to warn for the scripting commands
// unless a level was chosen: a script's stderr should hold its errors, not
// notes about runners.
func (g *globals) quietUnlessAsked() {
	if g.logLevelSet {
		return
	}
	g.logger = slog.New(core.RedactHandler(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}), g.redactor))
}

// envOr returns the environment variable's value, or def when it is unset.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// defaultDataDir is $XDG_DATA_HOME/flapjack, else ~/.local/share/flapjack.
func defaultDataDir() string {
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "flapjack")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".local", "share", "flapjack")
}

// Set at link time by release builds (make dist), which build without VCS
// information so the archives are reproducible.
var (
	stampedVersion string
	stampedCommit  string
)

// buildVersion reads the version and commit from the build information, so
// go install and a plain go build report them too; a release build's
// stamped values come first.
func buildVersion() (version, commit string) {
	if stampedVersion != "" {
		return stampedVersion, cmp.Or(stampedCommit, "unknown")
	}
	version, commit = "(devel)", "unknown"
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	if v := info.Main.Version; v != "" {
		version = v
	}
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty {
		commit += "-dirty"
	}
	return
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version and commit",
		Example: "  flapjack version",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, c := buildVersion()
			_, err := fmt.Fprintf(g.stdout, "flapjack %s (commit %s)\n", v, strings.TrimSpace(c))
			return err
		},
	}
}
