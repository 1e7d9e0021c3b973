// Package cloud is the runtime that runs sessions on Cursor's Cloud Agents API
// v1: a session is one Cursor agent, each of its messages one run of that
// agent. Prepare creates the agent (first message) or a follow-up run, Execute
// follows the run's event stream into the session log, Cancel and Archive map
// to the upstream calls. The wire format is the one documented in
// spec/cursor-cloud-agents-v1.md.
package cloud

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// Runtime defaults.
const (
	// DefaultPollInterval is how often a run is polled once its stream has expired.
	DefaultPollInterval = 5 * time.Second
	// DefaultRecoverySkew is how much earlier than our own clock says a Cursor
	// agent may have been created and still be the one a crashed create call
	// made: clocks disagree.
	DefaultRecoverySkew = 2 * time.Minute
	// DefaultCancelGrace is how long a run that Cursor reports cancelled waits
	// for flapjack's own cancel to be recorded, so a cancel through flapjack
	// ends as "cancelled" rather than as a failed run.
	DefaultCancelGrace = 3 * time.Second
	// busyWaitFirst and busyWaitMax pace follow-ups that Cursor refuses with
	// agent_busy (another run of the agent is still active).
	busyWaitFirst = 5 * time.Second
	busyWaitMax   = time.Minute
	// maxReconnects is how many times in a row a dropped stream is reopened
	// without receiving anything before the run is polled instead.
	maxReconnects = 8
	// maxPollFailures is how many failed polls in a row end the run in error.
	maxPollFailures = 10
)

// SessionReader reads sessions; core.Store satisfies it. Crash recovery uses
// it to rule out Cursor agents that already belong to another session, and a
// follow-up waiting out agent_busy to notice that its session was cancelled.
type SessionReader interface {
	GetSession(ctx context.Context, id string) (core.Session, error)
	ListSessions(ctx context.Context, f core.SessionFilter) ([]core.Session, error)
}

// Config configures a Runtime.
type Config struct {
	// BaseURL is the API root (FLAPJACK_CURSOR_API_URL), DefaultBaseURL when empty.
	BaseURL string
	// Box opens the sessions' sealed Cursor keys for Cancel and Archive, which
	// run outside the runner. Required.
	Box *core.Box
	// Journal keeps the create and follow-up calls in flight, so a runner
	// that died during one lets the next find what it created. Required.
	Journal Journal
	// Sessions, optional but wired in production, lets crash recovery skip
	// agents other sessions own and a waiting follow-up notice a cancel.
	Sessions SessionReader
	// HTTPClient must have no Timeout of its own; nil means a default client.
	HTTPClient *http.Client
	// Version goes into the User-Agent: flapjack/<version>.
	Version string
	Logger  *slog.Logger
	Clock   core.Clock
	// Sleep waits between retries and polls; tests inject one that does not
	// really wait. It must return ctx's error early when ctx ends.
	Sleep func(ctx context.Context, d time.Duration) error

	RequestTimeout    time.Duration
	StreamIdleTimeout time.Duration
	MaxRetries        int
	PollInterval      time.Duration
	RecoverySkew      time.Duration
	CancelGrace       time.Duration
}

// Runtime runs sessions as Cursor cloud agents.
type Runtime struct {
	cfg   Config
	log   *slog.Logger
	clock core.Clock
	sleep func(context.Context, time.Duration) error
	// createMu is held shared by create calls and exclusively by crash
	// recovery, so recovery never sees an agent whose create call is still in
	// flight in this process (and not yet journaled) as a candidate.
	createMu sync.RWMutex
}

var _ core.Runtime = (*Runtime)(nil)

// New checks cfg and returns a Runtime.
func New(cfg Config) (*Runtime, error) {
	if _, err := parseBaseURL(cfg.BaseURL); err != nil {
		return nil, err
	}
	if cfg.Box == nil {
		return nil, errors.New("cloud runtime: a secrets box is required")
	}
	if cfg.Journal == nil {
		return nil, errors.New("cloud runtime: a journal is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = core.SystemClock{}
	}
	if cfg.Sleep == nil {
		cfg.Sleep = SleepContext
	}
	cfg.Version = strings.Map(func(r rune) rune {
		if r > ' ' && r < 0x7f && !strings.ContainsRune(`()<>@,;:\"/[]?={}`, r) {
			return r
		}
		return -1
	}, cfg.Version) // a User-Agent product version is an HTTP token: "(devel)" becomes "devel"
	if cfg.Version == "" {
		cfg.Version = "devel"
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.RecoverySkew <= 0 {
		cfg.RecoverySkew = DefaultRecoverySkew
	}
	if cfg.CancelGrace <= 0 {
		cfg.CancelGrace = DefaultCancelGrace
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultMaxRetries
	}
	return &Runtime{cfg: cfg, log: cfg.Logger, clock: cfg.Clock, sleep: cfg.Sleep}, nil
}

// Name returns "cloud".
func (r *Runtime) Name() string { return core.RuntimeCloud }

// NeedsCursorKey is true: every call to Cursor is made with the session's key.
func (r *Runtime) NeedsCursorKey() bool { return true }

// AllowsLocalRepos is false: Cursor clones the repository, not this machine.
func (r *Runtime) AllowsLocalRepos() bool { return false }

// Ready is nil: the key comes with each session, and Cursor's answers say the rest.
func (r *Runtime) Ready() error { return nil }

// client returns a Client with the given key.
func (r *Runtime) client(key string) *Client {
	c, err := NewClient(ClientConfig{
		BaseURL:           r.cfg.BaseURL,
		APIKey:            key,
		HTTPClient:        r.cfg.HTTPClient,
		UserAgent:         "flapjack/" + r.cfg.Version,
		RequestTimeout:    r.cfg.RequestTimeout,
		StreamIdleTimeout: r.cfg.StreamIdleTimeout,
		MaxRetries:        r.cfg.MaxRetries,
		Sleep:             r.sleep,
	})
	if err != nil {
		panic(err) // New checked the base URL
	}
	return c
}

// sessionKey opens the session's stored Cursor key. It fails when the key was
// wiped or was sealed with another master key; the error never holds the key.
func (r *Runtime) sessionKey(s core.Session) (string, error) {
	if len(s.CursorKeyCiphertext) == 0 {
		return "", errors.New("the session has no stored Cursor API key")
	}
	key, err := r.cfg.Box.Open(s.CursorKeyCiphertext, core.PurposeCursorKey, s.OrgID, s.ID)
	if err != nil {
		return "", errors.New("the session's Cursor API key cannot be decrypted with this master key")
	}
	return string(key), nil
}

// describe says what went wrong in a call to Cursor, for a client-facing
// message: Cursor's status, code and message, or that it could not be reached.
func describe(err error) string {
	var e *APIError
	if errors.As(err, &e) {
		return e.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "the Cursor API did not answer in time"
	}
	return "could not reach the Cursor API: " + err.Error()
}

// Cancel cancels the session's active run upstream and, once Cursor confirmed,
// records the session cancelled. A session whose run has not been created yet
// (pending, creating) is only recorded cancelled.
func (r *Runtime) Cancel(ctx context.Context, s core.Session, markCancelled func(context.Context) error) error {
	if s.Status != core.StatusRunning || s.CursorAgentID == nil || *s.CursorAgentID == "" || s.LatestRunID == nil || *s.LatestRunID == "" {
		return markCancelled(ctx)
	}
	agentID, runID := *s.CursorAgentID, *s.LatestRunID
	key, err := r.sessionKey(s)
	if err != nil {
		return core.Errorf(core.CodeCursorCancelFailed, "cannot cancel Cursor run %s: %v", runID, err)
	}
	c := r.client(key)
	err = c.CancelRun(ctx, agentID, runID)
	switch code := ErrorCode(err); {
	case err == nil:
	case code == "run_not_cancellable":
		// A run that has already ended (or whose cancel was retried after a
		// lost answer) leaves nothing to stop: what remains is queued messages.
		if run, gerr := c.GetRun(ctx, agentID, runID); gerr == nil && TerminalRunStatus(run.Status) {
			break
		}
		return core.Errorf(core.CodeCancelUnsupported, "Cursor cannot cancel run %s (run_not_cancellable); wait for it to finish", runID)
	case code == "run_not_found" || code == "agent_not_found":
		// Nothing runs upstream any more: there is nothing left to stop.
		r.log.WarnContext(ctx, "cancel: the run is gone upstream", "session", s.ID, "code", code)
	default:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.log.WarnContext(ctx, "cancel: upstream cancel failed", "session", s.ID, "err", err)
		return core.Errorf(core.CodeCursorCancelFailed, "cancelling Cursor run %s failed: %s; retry", runID, describe(err))
	}
	return markCancelled(ctx)
}

// Archive archives the session's Cursor agent. An agent that is already gone
// or archived is fine; a session whose key cannot be opened keeps its agent
// upstream (with a warning) rather than never being archivable.
func (r *Runtime) Archive(ctx context.Context, s core.Session) error {
	if err := r.cfg.Journal.DeleteUpstreamCalls(ctx, s.ID); err != nil {
		r.log.WarnContext(ctx, "archive: removing the create journal", "session", s.ID, "err", err)
	}
	if s.CursorAgentID == nil || *s.CursorAgentID == "" {
		return nil
	}
	agentID := *s.CursorAgentID
	key, err := r.sessionKey(s)
	if err != nil {
		r.log.WarnContext(ctx, "archive: the Cursor agent stays unarchived upstream", "session", s.ID, "agent", agentID, "reason", err.Error())
		return nil
	}
	err = r.client(key).ArchiveAgent(ctx, agentID)
	switch code := ErrorCode(err); {
	case err == nil, code == "agent_not_found", code == "agent_archived":
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		r.log.WarnContext(ctx, "archive: upstream archive failed", "session", s.ID, "err", err)
		return core.Errorf(core.CodeArchiveFailed, "archiving Cursor agent %s failed: %s; retry", agentID, describe(err))
	}
}

// sameRepo compares repository URLs as Cursor may echo them: scheme, "git@"
// form, ".git" suffix, trailing slash and case do not matter.
func sameRepo(a, b string) bool { return normRepo(a) == normRepo(b) }

func normRepo(u string) string {
	u = strings.ToLower(strings.TrimSpace(u))
	for _, p := range []string{"https://", "http://", "ssh://", "git://"} {
		u = strings.TrimPrefix(u, p)
	}
	if rest, ok := strings.CutPrefix(u, "git@"); ok {
		u = strings.Replace(rest, ":", "/", 1)
	}
	u = strings.TrimSuffix(u, "/")
	u = strings.TrimSuffix(u, ".git")
	return strings.TrimPrefix(u, "www.")
}
