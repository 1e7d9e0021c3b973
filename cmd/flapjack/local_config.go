package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/local"
)

// Defaults of the local runtime's limits.
const (
	defaultMaxConcurrentRuns = 4
	defaultStallTimeout      = 15 * time.Minute
	defaultRunTimeout        = 2 * time.Hour
	defaultWorkspaceTTL      = 7 * 24 * time.Hour
	defaultKillGrace         = 5 * time.Second
)

// localSettings are the local runtime's settings from the environment. They
// are read by every process that opens the data directory, so a bad value
// fails at once (a usage error) instead of in a detached runner's log.
type localSettings struct {
	agent       string
	bin         string
	command     []string
	killGrace   time.Duration
	githubToken string
	githubAPI   string
	// agentEnv is FLAPJACK_AGENT_ENV: more variables agents may see.
	agentEnv []string
	limits   core.RunLimits
	ttl      time.Duration
}

// readLocalSettings reads FLAPJACK_LOCAL_AGENT (cursor-agent, or exec when
// only FLAPJACK_LOCAL_AGENT_COMMAND is set, as before there were adapters),
// FLAPJACK_LOCAL_AGENT_BIN, FLAPJACK_LOCAL_AGENT_COMMAND, FLAPJACK_KILL_GRACE,
// GITHUB_TOKEN, FLAPJACK_GITHUB_API_URL, FLAPJACK_MAX_CONCURRENT_RUNS,
// FLAPJACK_STALL_TIMEOUT, FLAPJACK_RUN_TIMEOUT and FLAPJACK_WORKSPACE_TTL.
func readLocalSettings() (localSettings, error) {
	s := localSettings{
		bin:         os.Getenv("FLAPJACK_LOCAL_AGENT_BIN"),
		githubToken: os.Getenv("GITHUB_TOKEN"),
		githubAPI:   envOr("FLAPJACK_GITHUB_API_URL", local.DefaultGitHubAPIURL),
		agentEnv:    local.ParseAgentEnv(os.Getenv("FLAPJACK_AGENT_ENV")),
	}
	if raw := os.Getenv("FLAPJACK_LOCAL_AGENT_COMMAND"); raw != "" {
		var err error
		if s.command, err = local.ParseCommand(raw); err != nil {
			return s, fmt.Errorf("FLAPJACK_LOCAL_AGENT_COMMAND: %w", err)
		}
	}
	def := local.AgentCursor
	if len(s.command) > 0 {
		def = local.AgentExec
	}
	s.agent = envOr("FLAPJACK_LOCAL_AGENT", def)
	var err error
	if s.killGrace, err = envDuration("FLAPJACK_KILL_GRACE", defaultKillGrace); err != nil {
		return s, err
	}
	if s.limits.StallTimeout, err = envDuration("FLAPJACK_STALL_TIMEOUT", defaultStallTimeout); err != nil {
		return s, err
	}
	if s.limits.RunTimeout, err = envDuration("FLAPJACK_RUN_TIMEOUT", defaultRunTimeout); err != nil {
		return s, err
	}
	if s.ttl, err = envDuration("FLAPJACK_WORKSPACE_TTL", defaultWorkspaceTTL); err != nil {
		return s, err
	}
	s.limits.MaxConcurrent = defaultMaxConcurrentRuns
	if raw := os.Getenv("FLAPJACK_MAX_CONCURRENT_RUNS"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 0 {
			return s, fmt.Errorf("FLAPJACK_MAX_CONCURRENT_RUNS=%q: want a number of runs, 0 for no limit", raw)
		}
		s.limits.MaxConcurrent = n
	}
	return s, nil
}

// envDuration reads a Go duration (3s, 15m, 168h); 0 turns the limit off.
func envDuration(name string, def time.Duration) (time.Duration, error) {
	raw := os.Getenv(name)
	if raw == "" {
		return def, nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a duration such as 30s, 15m or 168h", name, raw)
	}
	return d, nil
}

// withLocalLimits adds the local runtime's limits and the workspace TTL to a
// runner's configuration. buildRuntimes has refused bad values already.
func withLocalLimits(cfg core.RunnerConfig) core.RunnerConfig {
	s, _ := readLocalSettings()
	cfg.Limits = map[string]core.RunLimits{core.RuntimeLocal: s.limits}
	cfg.WorkspaceTTL = s.ttl
	return cfg
}

// workspaceTTL is FLAPJACK_WORKSPACE_TTL as the runner applies it (openApp
// refused a malformed value already).
func workspaceTTL() time.Duration {
	ls, _ := readLocalSettings()
	return ls.ttl
}
