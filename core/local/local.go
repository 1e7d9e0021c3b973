// Package local is the runtime that runs an agent CLI in a git workspace on this
// machine: one clone per session under <data-dir>/workspaces, one branch per
// session, the agent's changes committed after every run.
package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// Agent names.
const (
	// AgentExec runs any command: prompt on stdin and in FLAPJACK_PROMPT.
	AgentExec = "exec"
)

// errNoCommand is why runs fail when no agent command is configured.
const errNoCommand = "no local agent command is configured; set FLAPJACK_LOCAL_AGENT_COMMAND"

// DefaultKillGrace is how long a cancelled agent gets between SIGTERM and SIGKILL.
const DefaultKillGrace = 5 * time.Second

// Config configures a Runtime.
type Config struct {
	// WorkspaceRoot holds one workspace per session (<data-dir>/workspaces).
	WorkspaceRoot string
	// Agent names the agent CLI; only "exec" exists so far.
	Agent string
	// Command is the exec agent's argv (see ParseCommand). Without one, runs
	// fail with errNoCommand.
	Command []string
	// KillGrace is the time between SIGTERM and SIGKILL; 0 means DefaultKillGrace.
	KillGrace time.Duration
	Logger    *slog.Logger
	Clock     core.Clock
}

// Runtime runs sessions with an agent CLI in local git workspaces.
type Runtime struct {
	root      string
	command   []string
	killGrace time.Duration
	log       *slog.Logger
	clock     core.Clock
}

var _ core.Runtime = (*Runtime)(nil)

// AvailableAgents lists the agent names New accepts.
func AvailableAgents() []string { return []string{AgentExec} }

// New checks cfg and returns a Runtime. A relative command path is made absolute
// here, because the agent runs with the workspace as its working directory.
func New(cfg Config) (*Runtime, error) {
	if cfg.Agent != AgentExec {
		return nil, fmt.Errorf("unknown local agent %q; available: %s", cfg.Agent, strings.Join(AvailableAgents(), ", "))
	}
	if cfg.WorkspaceRoot == "" {
		return nil, errors.New("local runtime: workspace root is required")
	}
	root, err := filepath.Abs(cfg.WorkspaceRoot)
	if err != nil {
		return nil, fmt.Errorf("local runtime: workspace root: %w", err)
	}
	if cfg.KillGrace < 0 {
		return nil, errors.New("local runtime: kill grace must not be negative")
	}
	// No command is allowed, so a server that never runs local sessions still
	// starts; Prepare then says what is missing.
	command := append([]string(nil), cfg.Command...)
	if len(command) > 0 && command[0] == "" {
		return nil, errors.New("the exec agent's command is empty")
	}
	if len(command) > 0 && strings.Contains(command[0], "/") && !filepath.IsAbs(command[0]) {
		abs, err := filepath.Abs(command[0])
		if err != nil {
			return nil, fmt.Errorf("local runtime: agent command: %w", err)
		}
		command[0] = abs
	}
	r := &Runtime{root: root, command: command, killGrace: cfg.KillGrace, log: cfg.Logger, clock: cfg.Clock}
	if r.killGrace == 0 {
		r.killGrace = DefaultKillGrace
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.clock == nil {
		r.clock = core.SystemClock{}
	}
	return r, nil
}

// Name returns "local".
func (r *Runtime) Name() string { return core.RuntimeLocal }

// NeedsCursorKey is false: an exec agent needs no key, and a cursor-agent may
// have its own login.
func (r *Runtime) NeedsCursorKey() bool { return false }

// AllowsLocalRepos is true: cloning a path on this machine is the point.
func (r *Runtime) AllowsLocalRepos() bool { return true }

// Ready fails when no agent command is configured.
func (r *Runtime) Ready() error {
	if len(r.command) == 0 {
		return errors.New(errNoCommand)
	}
	return nil
}

// workspace returns the session's workspace directory. The id becomes a path
// component, so anything but a plain name is refused.
func (r *Runtime) workspace(sessionID string) (string, error) {
	if !plainName(sessionID) {
		return "", fmt.Errorf("invalid session id %q", sessionID)
	}
	return filepath.Join(r.root, sessionID), nil
}

// plainName reports whether s is a non-empty name of letters, digits, '-' and
// '_', not starting with '-'.
func plainName(s string) bool {
	if s == "" || len(s) > 128 || s[0] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Archive removes the session's workspace. Its commits live only there, so
// this is final; the Service only archives terminal sessions.
func (r *Runtime) Archive(ctx context.Context, s core.Session) error {
	ws, err := r.workspace(s.ID)
	if err != nil {
		return err
	}
	r.removeTempClones(s.ID)
	if err := removeAll(ws); err != nil {
		return fmt.Errorf("remove workspace of session %s: %w", s.ID, err)
	}
	r.log.InfoContext(ctx, "workspace removed", "session", s.ID)
	return nil
}

// removeAll is os.RemoveAll that also copes with directories an agent made
// read-only (Go's module cache does that), which would block removal.
func removeAll(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// displayURL hides user info (a token in an https URL) in a repository URL
// shown to clients.
func displayURL(raw string) string {
	if !strings.Contains(raw, "://") {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = nil
	return u.String()
}
