package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/cloud"
	"github.com/flapjack-dev/flapjack/core/local"
	"github.com/flapjack-dev/flapjack/core/webhook"
)

// Defaults of the local runtime's limits.
const (
	defaultMaxConcurrentRuns = 4
	defaultStallTimeout      = 15 * time.Minute
	defaultRunTimeout        = 2 * time.Hour
	defaultWorkspaceTTL      = 7 * 24 * time.Hour
	defaultKillGrace         = 5 * time.Second
)

// settings is everything a process that opens the data directory takes from
// its environment. It is read once (readSettings) and handed on explicitly:
// to the runtimes, the Service, the runner, and a detached runner, which gets
// it on its stdin rather than from whatever environment its starter had.
// The secret fields never reach a log: the redactor knows them.
type settings struct {
	// MasterKey is FLAPJACK_MASTER_KEY (secret); empty means the key file.
	MasterKey string `json:"master_key,omitempty"`
	// CursorKey is CURSOR_API_KEY (secret): the key of sessions started without one.
	CursorKey string `json:"cursor_key,omitempty"`
	// Runtime is FLAPJACK_RUNTIME: what a template that names none runs on.
	Runtime string `json:"runtime"`
	// CursorAPIURL is FLAPJACK_CURSOR_API_URL.
	CursorAPIURL string `json:"cursor_api_url"`
	// ACPPermissions is FLAPJACK_ACP_PERMISSIONS: workspace, allow-all or read-only.
	ACPPermissions string `json:"acp_permissions,omitempty"`
	// WebhookAllowPrivate is FLAPJACK_WEBHOOK_ALLOW_PRIVATE (testing only).
	WebhookAllowPrivate bool `json:"webhook_allow_private,omitempty"`
	// RunnerIdle is FLAPJACK_RUNNER_IDLE_TIMEOUT: a foreground runner's default --idle-timeout.
	RunnerIdle time.Duration `json:"runner_idle"`

	// The local runtime.
	LocalAgent   string        `json:"local_agent"`             // FLAPJACK_LOCAL_AGENT
	LocalBin     string        `json:"local_bin,omitempty"`     // FLAPJACK_LOCAL_AGENT_BIN
	LocalCommand []string      `json:"local_command,omitempty"` // FLAPJACK_LOCAL_AGENT_COMMAND
	KillGrace    time.Duration `json:"kill_grace"`              // FLAPJACK_KILL_GRACE
	GitHubToken  string        `json:"github_token,omitempty"`  // GITHUB_TOKEN (secret)
	GitHubAPIURL string        `json:"github_api_url"`          // FLAPJACK_GITHUB_API_URL
	// AgentEnv is FLAPJACK_AGENT_ENV: more variables the agents may see.
	AgentEnv []string `json:"agent_env,omitempty"`
	// Limits are FLAPJACK_MAX_CONCURRENT_RUNS, FLAPJACK_STALL_TIMEOUT and FLAPJACK_RUN_TIMEOUT.
	Limits core.RunLimits `json:"limits"`
	// WorkspaceTTL is FLAPJACK_WORKSPACE_TTL.
	WorkspaceTTL time.Duration `json:"workspace_ttl"`
}

// readSettings reads the settings through lookup (os.LookupEnv in
// production). A malformed value is an error naming its variable, never a
// silent default; every bad variable is reported at once.
func readSettings(lookup func(string) (string, bool)) (settings, error) {
	get := func(name, def string) string {
		if v, ok := lookup(name); ok && v != "" {
			return v
		}
		return def
	}
	var errs []error
	duration := func(name string, def time.Duration) time.Duration {
		raw := get(name, "")
		if raw == "" {
			return def
		}
		d, err := time.ParseDuration(raw)
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a duration such as 30s, 15m or 168h (0 turns it off)", name, raw))
			return def
		}
		return d
	}
	s := settings{
		MasterKey:           get("FLAPJACK_MASTER_KEY", ""),
		CursorKey:           get("CURSOR_API_KEY", ""),
		Runtime:             get("FLAPJACK_RUNTIME", core.RuntimeCloud),
		CursorAPIURL:        get("FLAPJACK_CURSOR_API_URL", cloud.DefaultBaseURL),
		ACPPermissions:      get("FLAPJACK_ACP_PERMISSIONS", ""),
		LocalBin:            get("FLAPJACK_LOCAL_AGENT_BIN", ""),
		GitHubToken:         get("GITHUB_TOKEN", ""),
		GitHubAPIURL:        get("FLAPJACK_GITHUB_API_URL", local.DefaultGitHubAPIURL),
		AgentEnv:            local.ParseAgentEnv(get("FLAPJACK_AGENT_ENV", "")),
		RunnerIdle:          duration("FLAPJACK_RUNNER_IDLE_TIMEOUT", 0),
		KillGrace:           duration("FLAPJACK_KILL_GRACE", defaultKillGrace),
		WorkspaceTTL:        duration("FLAPJACK_WORKSPACE_TTL", defaultWorkspaceTTL),
		WebhookAllowPrivate: false,
	}
	s.Limits.StallTimeout = duration("FLAPJACK_STALL_TIMEOUT", defaultStallTimeout)
	s.Limits.RunTimeout = duration("FLAPJACK_RUN_TIMEOUT", defaultRunTimeout)
	s.Limits.MaxConcurrent = defaultMaxConcurrentRuns
	if raw := get("FLAPJACK_MAX_CONCURRENT_RUNS", ""); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("FLAPJACK_MAX_CONCURRENT_RUNS=%q: want a number of runs, 0 for no limit", raw))
		} else {
			s.Limits.MaxConcurrent = n
		}
	}
	switch v := get(webhook.AllowPrivateEnv, ""); {
	case v == "" || v == "0" || strings.EqualFold(v, "false"):
	case v == "1" || strings.EqualFold(v, "true"):
		s.WebhookAllowPrivate = true
	default:
		errs = append(errs, fmt.Errorf("%s=%q: want 1 or 0", webhook.AllowPrivateEnv, v))
	}
	if raw := get("FLAPJACK_LOCAL_AGENT_COMMAND", ""); raw != "" {
		cmd, err := local.ParseCommand(raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("FLAPJACK_LOCAL_AGENT_COMMAND: %w", err))
		}
		s.LocalCommand = cmd
	}
	// exec when only a command is given, as before there were adapters.
	def := local.AgentCursor
	if len(s.LocalCommand) > 0 {
		def = local.AgentExec
	}
	s.LocalAgent = get("FLAPJACK_LOCAL_AGENT", def)
	return s, errors.Join(errs...)
}

// secrets returns the secret values in s, for the redactor.
func (s settings) secrets() []string {
	return slices.DeleteFunc([]string{s.MasterKey, s.CursorKey, s.GitHubToken}, func(v string) bool { return v == "" })
}

// settings returns the process's settings, reading the environment on first
// use. A detached runner has them already (useSettings, from its stdin).
func (g *globals) settings() (settings, error) {
	if g.cfg == nil {
		s, err := readSettings(os.LookupEnv)
		if err != nil {
			return settings{}, usageError{err}
		}
		g.useSettings(s)
	}
	return *g.cfg, nil
}

// useSettings makes s the process's settings and its secrets known to the redactor.
func (g *globals) useSettings(s settings) {
	for _, v := range s.secrets() {
		g.redactor.Add(v)
	}
	g.cfg = &s
}

// maxSettingsBytes bounds what a detached runner reads from its stdin.
const maxSettingsBytes = 1 << 20

// readSettingsFrom reads settings as writeSettings wrote them.
func readSettingsFrom(r io.Reader) (settings, error) {
	var s settings
	dec := json.NewDecoder(io.LimitReader(r, maxSettingsBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return settings{}, fmt.Errorf("reading the runner's settings from stdin: %w", err)
	}
	return s, nil
}

// childEnv is the environment of a detached runner: this process's, without
// the variables whose values reach it in its settings instead, so it can
// only run on what it was handed (and its environment holds no flapjack
// secret).
func childEnv(environ []string) []string {
	return slices.DeleteFunc(slices.Clone(environ), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return strings.HasPrefix(strings.ToUpper(k), "FLAPJACK_") || strings.EqualFold(k, "CURSOR_API_KEY")
	})
}
