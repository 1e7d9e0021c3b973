// Package local is the runtime that runs an agent CLI (cursor-agent, Claude
// Code, Codex, or any command) in a git workspace on this machine: one git
// worktree per session on a cached clone per repository, one branch per
// session, the agent's changes committed after every run, the branch pushed
// and, on GitHub, a pull request opened.
package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// DefaultKillGrace is how long a cancelled agent gets between SIGTERM and SIGKILL.
const DefaultKillGrace = 5 * time.Second

// Config configures a Runtime.
type Config struct {
	// WorkspaceRoot holds one workspace per session (<data-dir>/workspaces).
	WorkspaceRoot string
	// RepoRoot holds the cached clone of each repository the workspaces are
	// worktrees of (<data-dir>/repos); empty means "repos" beside WorkspaceRoot.
	RepoRoot string
	// Agent names the default agent CLI (see AvailableAgents); empty means
	// cursor-agent. A session's modelParams.agent overrides it.
	Agent string
	// Bin is the default agent's executable, instead of looking its name up
	// on the search path.
	Bin string
	// Command is the exec agent's argv (see ParseCommand).
	Command []string
	// SearchPath is the PATH agents are looked up in; empty means $PATH.
	SearchPath string
	// KillGrace is the time between SIGTERM and SIGKILL; 0 means DefaultKillGrace.
	KillGrace time.Duration
	// GitHubToken opens pull requests (GITHUB_TOKEN); empty means none are.
	GitHubToken string
	// GitHubAPIURL is GitHub's REST API; empty means DefaultGitHubAPIURL.
	GitHubAPIURL string
	// HTTPClient calls GitHub; nil means one with a 30 s timeout.
	HTTPClient *http.Client
	// Sessions lets Cancel see the run's handle as the runner records it, so
	// it answers only once the run is over; nil limits Cancel to the handle
	// it was given.
	Sessions SessionGetter
	Logger   *slog.Logger
	Clock    core.Clock
	// ACPPermissions is the default permission policy of ACP agents
	// (FLAPJACK_ACP_PERMISSIONS); empty means PermissionsWorkspace.
	ACPPermissions string
	// Version is flapjack's, told to ACP agents in initialize.
	Version string
	// AgentEnv names variables agents get besides their defaults
	// (FLAPJACK_AGENT_ENV, see ParseAgentEnv).
	AgentEnv []string
	// FetchReuse is how long a starting ref fetched for one session is used
	// as it is for the next ones on the repository, so a burst of starts
	// makes one fetch; 0 means DefaultFetchReuse, negative fetches always.
	FetchReuse time.Duration
}

// DefaultFetchReuse: a burst of sessions started on one ref (a script, a
// fan-out) fetches it once; a push more than two seconds old is seen.
const DefaultFetchReuse = 2 * time.Second

// SessionGetter reads a session (core.Store has it).
type SessionGetter interface {
	GetSession(ctx context.Context, id string) (core.Session, error)
}

// Runtime runs sessions with an agent CLI in local git workspaces.
type Runtime struct {
	root       string
	repos      string
	agent      string
	bin        string
	command    []string
	searchPath string
	killGrace  time.Duration
	github     *githubClient
	sessions   SessionGetter
	log        *slog.Logger
	clock      core.Clock
	acpPolicy  string
	version    string
	agentEnv   []string
	// redactor hides the GitHub token in what git prints.
	redactor *core.Redactor
	// versions caches agent CLIs' --version by executable.
	versionsMu sync.Mutex
	versions   map[string]string
	fetchReuse time.Duration
	// fetched is when each cached clone's refs were last fetched, by
	// "<cache>\x00<ref>"; newBranches counts session branches made since
	// each clone's refs were last packed. Both under its repository lock.
	cacheMu     sync.Mutex
	fetched     map[string]time.Time
	newBranches map[string]int
}

var (
	_ core.Runtime            = (*Runtime)(nil)
	_ core.WorkspaceHolder    = (*Runtime)(nil)
	_ core.ModelParamsChecker = (*Runtime)(nil)
)

// New checks cfg and returns a Runtime. Relative paths are made absolute here,
// because the agent runs with the workspace as its working directory. A
// missing agent executable is not an error here but in Ready, so a server
// that never runs local sessions still starts.
func New(cfg Config) (*Runtime, error) {
	if cfg.Agent == "" {
		cfg.Agent = AgentCursor
	}
	if _, ok := adapterFor(cfg.Agent); !ok {
		return nil, fmt.Errorf("unknown local agent %q; available: %s", cfg.Agent, strings.Join(AvailableAgents(), ", "))
	}
	if cfg.WorkspaceRoot == "" {
		return nil, errors.New("local runtime: workspace root is required")
	}
	root, err := filepath.Abs(cfg.WorkspaceRoot)
	if err != nil {
		return nil, fmt.Errorf("local runtime: workspace root: %w", err)
	}
	repos := cfg.RepoRoot
	if repos == "" {
		repos = filepath.Join(filepath.Dir(root), "repos")
	}
	if repos, err = filepath.Abs(repos); err != nil {
		return nil, fmt.Errorf("local runtime: repository cache: %w", err)
	}
	if cfg.KillGrace < 0 {
		return nil, errors.New("local runtime: kill grace must not be negative")
	}
	command := append([]string(nil), cfg.Command...)
	if len(command) > 0 && command[0] == "" {
		return nil, errors.New("the exec agent's command is empty")
	}
	if len(command) > 0 {
		if command[0], err = absIfRelative(command[0]); err != nil {
			return nil, fmt.Errorf("local runtime: agent command: %w", err)
		}
	}
	bin := cfg.Bin
	if bin != "" {
		if bin, err = absIfRelative(bin); err != nil {
			return nil, fmt.Errorf("local runtime: agent executable: %w", err)
		}
	}
	gh, err := newGitHubClient(cfg.GitHubAPIURL, cfg.GitHubToken, cfg.HTTPClient)
	if err != nil {
		return nil, err
	}
	r := &Runtime{
		root: root, repos: repos, agent: cfg.Agent, bin: bin, command: command, searchPath: cfg.SearchPath,
		killGrace: cfg.KillGrace, github: gh, sessions: cfg.Sessions, log: cfg.Logger, clock: cfg.Clock,
		acpPolicy: cfg.ACPPermissions, version: cfg.Version, agentEnv: cfg.AgentEnv, redactor: core.NewRedactor(cfg.GitHubToken), versions: map[string]string{},
		fetchReuse: cfg.FetchReuse, fetched: map[string]time.Time{}, newBranches: map[string]int{},
	}
	if r.fetchReuse == 0 {
		r.fetchReuse = DefaultFetchReuse
	}
	if r.acpPolicy == "" {
		r.acpPolicy = PermissionsWorkspace
	}
	if err := ValidPermissions(r.acpPolicy); err != nil {
		return nil, fmt.Errorf("FLAPJACK_ACP_PERMISSIONS: %w", err)
	}
	if r.version == "" {
		r.version = "dev"
	}
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

// absIfRelative makes a path with a slash absolute; a bare name stays a name
// to look up on PATH.
func absIfRelative(p string) (string, error) {
	if strings.Contains(p, "/") && !filepath.IsAbs(p) {
		return filepath.Abs(p)
	}
	return p, nil
}

// Name returns "local".
func (r *Runtime) Name() string { return core.RuntimeLocal }

// NeedsCursorKey is false: an exec agent needs no key, claude and codex use
// their own credentials, and a cursor-agent may have its own login.
func (r *Runtime) NeedsCursorKey() bool { return false }

// AllowsLocalRepos is true: cloning a path on this machine is the point.
func (r *Runtime) AllowsLocalRepos() bool { return true }

// Ready says what is missing to run the default agent: its executable, or
// the exec agent's command.
func (r *Runtime) Ready() error {
	_, err := r.resolveAgent(r.agent)
	return err
}

// CheckModelParams refuses modelParams this runtime cannot run with: an
// unknown modelParams.agent, an agent (that one, or the default) that is not
// installed, an unknown modelParams.permissions (core.ModelParamsChecker).
func (r *Runtime) CheckModelParams(params map[string]any) error {
	name, err := r.agentName(core.Session{ModelParams: params})
	if err != nil {
		return err
	}
	if _, err := r.resolveAgent(name); err != nil {
		return fmt.Errorf("the %s agent cannot run: %w", name, err)
	}
	if _, err := r.permissionsOf(core.Session{ModelParams: params}); err != nil {
		return err
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

// Archive removes the session's workspace and its branch in the cached clone
// at once. Commits that were pushed live on in the remote; the Service only
// archives terminal sessions.
func (r *Runtime) Archive(ctx context.Context, s core.Session) error {
	return r.release(ctx, s, true)
}

// ReleaseWorkspace removes an expired session's workspace (core.WorkspaceHolder).
func (r *Runtime) ReleaseWorkspace(ctx context.Context, s core.Session) error {
	return r.release(ctx, s, false)
}

// release removes the workspace, then unregisters the worktree and deletes
// the session branch in the cached clone. always forces the git clean-up even
// when the workspace is already gone (archive); the expiry sweep repeats
// release for every expired session, so it stays a stat when nothing is left.
func (r *Runtime) release(ctx context.Context, s core.Session, always bool) error {
	ws, err := r.workspace(s.ID)
	if err != nil {
		return err
	}
	exists, err := pathExists(ws)
	if err != nil {
		return fmt.Errorf("workspace of session %s: %w", s.ID, err)
	}
	if !exists && !always {
		return nil
	}
	r.removeTempDirs(s.ID)
	if err := removeAll(ws); err != nil {
		return fmt.Errorf("remove workspace of session %s: %w", s.ID, err)
	}
	if err := r.dropWorktree(ctx, s); err != nil {
		return fmt.Errorf("remove the branch of session %s: %w", s.ID, err)
	}
	if exists {
		r.log.InfoContext(ctx, "workspace removed", "session", s.ID)
	}
	return nil
}

// pathExists reports whether p exists.
func pathExists(p string) (bool, error) {
	_, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
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
