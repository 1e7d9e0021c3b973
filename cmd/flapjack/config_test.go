//go:build unix

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/cloud"
	"github.com/flapjack-dev/flapjack/core/local"
)

func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// TestReadSettings: every variable lands in its field; nothing set gives the
// documented defaults.
func TestReadSettings(t *testing.T) {
	got, err := readSettings(lookupIn(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := settings{
		Runtime: core.RuntimeCloud, CursorAPIURL: cloud.DefaultBaseURL, GitHubAPIURL: local.DefaultGitHubAPIURL,
		LocalAgent: local.AgentCursor, KillGrace: defaultKillGrace, WorkspaceTTL: defaultWorkspaceTTL,
		Limits: core.RunLimits{MaxConcurrent: defaultMaxConcurrentRuns, StallTimeout: defaultStallTimeout, RunTimeout: defaultRunTimeout},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}

	got, err = readSettings(lookupIn(map[string]string{
		"FLAPJACK_MASTER_KEY": "mk", "CURSOR_API_KEY": "ck", "GITHUB_TOKEN": "gt",
		"FLAPJACK_RUNTIME": "local", "FLAPJACK_CURSOR_API_URL": "http://127.0.0.1:1", "FLAPJACK_ACP_PERMISSIONS": "read-only",
		"FLAPJACK_WEBHOOK_ALLOW_PRIVATE": "true", "FLAPJACK_RUNNER_IDLE_TIMEOUT": "90s",
		"FLAPJACK_LOCAL_AGENT_BIN": "/opt/agent", "FLAPJACK_LOCAL_AGENT_COMMAND": "my-agent --fast",
		"FLAPJACK_KILL_GRACE": "2s", "FLAPJACK_GITHUB_API_URL": "http://127.0.0.1:2", "FLAPJACK_AGENT_ENV": "FOO,BAR",
		"FLAPJACK_MAX_CONCURRENT_RUNS": "0", "FLAPJACK_STALL_TIMEOUT": "1m", "FLAPJACK_RUN_TIMEOUT": "0", "FLAPJACK_WORKSPACE_TTL": "3s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want = settings{
		MasterKey: "mk", CursorKey: "ck", GitHubToken: "gt",
		Runtime: "local", CursorAPIURL: "http://127.0.0.1:1", ACPPermissions: "read-only",
		WebhookAllowPrivate: true, RunnerIdle: 90 * time.Second,
		LocalAgent: local.AgentExec, LocalBin: "/opt/agent", LocalCommand: []string{"my-agent", "--fast"},
		KillGrace: 2 * time.Second, GitHubAPIURL: "http://127.0.0.1:2", AgentEnv: []string{"FOO", "BAR"},
		Limits:       core.RunLimits{MaxConcurrent: 0, StallTimeout: time.Minute, RunTimeout: 0},
		WorkspaceTTL: 3 * time.Second,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("settings (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"mk", "ck", "gt"}, got.secrets()); diff != "" {
		t.Errorf("secrets (-want +got):\n%s", diff)
	}
}

// TestReadSettingsNamesEveryBadVariable: malformed values are errors naming
// each variable, all in one message, never silent defaults.
func TestReadSettingsNamesEveryBadVariable(t *testing.T) {
	bad := map[string]string{
		"FLAPJACK_RUNNER_IDLE_TIMEOUT": "5", "FLAPJACK_KILL_GRACE": "-1s", "FLAPJACK_STALL_TIMEOUT": "soon",
		"FLAPJACK_RUN_TIMEOUT": "2 hours", "FLAPJACK_WORKSPACE_TTL": "forever", "FLAPJACK_MAX_CONCURRENT_RUNS": "-2",
		"FLAPJACK_WEBHOOK_ALLOW_PRIVATE": "yes please", "FLAPJACK_LOCAL_AGENT_COMMAND": `agent "unclosed`,
	}
	_, err := readSettings(lookupIn(bad))
	if err == nil {
		t.Fatal("no error")
	}
	for name := range bad {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("the error does not name %s: %v", name, err)
		}
	}
}

// TestSettingsRoundTrip: what a starter writes to a detached runner's stdin
// reads back the same; anything else is refused rather than half-read.
func TestSettingsRoundTrip(t *testing.T) {
	s, err := readSettings(lookupIn(map[string]string{"CURSOR_API_KEY": "ck", "FLAPJACK_LOCAL_AGENT_COMMAND": "a b", "FLAPJACK_WORKSPACE_TTL": "3s"}))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(s); err != nil {
		t.Fatal(err)
	}
	got, err := readSettingsFrom(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	for _, in := range []string{"", "{", `{"runtime":"local","surprise":1}`, `[]`} {
		if _, err := readSettingsFrom(strings.NewReader(in)); err == nil {
			t.Errorf("settings %q read without error", in)
		}
	}
}

func TestChildEnv(t *testing.T) {
	got := childEnv([]string{"PATH=/bin", "FLAPJACK_MASTER_KEY=mk", "flapjack_data_dir=/x", "CURSOR_API_KEY=ck", "HOME=/h", "ANTHROPIC_API_KEY=ak", "CURSOR_CONFIG_DIR=/c"})
	if diff := cmp.Diff([]string{"PATH=/bin", "HOME=/h", "ANTHROPIC_API_KEY=ak", "CURSOR_CONFIG_DIR=/c"}, got); diff != "" {
		t.Errorf("child env (-want +got):\n%s", diff)
	}
}

// TestDetachedRunnerRunsOnItsStartersSettings: the runner a CLI starts runs
// on the settings the CLI read (its agent command here), handed over on
// stdin: its own environment holds no FLAPJACK_ variable and no key.
func TestDetachedRunnerRunsOnItsStartersSettings(t *testing.T) {
	const key = "cursor-key-for-the-env-test-0123456789"
	c := newCLI(t, "FLAPJACK_LOCAL_AGENT_COMMAND="+writeAgent(t, streamAgent), "CURSOR_API_KEY="+key, "FLAPJACK_WORKSPACE_TTL=1h")
	dataDir := strings.TrimPrefix(c.env[0], "FLAPJACK_DATA_DIR=")
	var ag struct{ ID string }
	if r := c.run("", "agents", "create", "--repo-url", makeRepo(t), "--runtime", "local", "-o", "json"); r.code != 0 || json.Unmarshal([]byte(r.stdout), &ag) != nil {
		t.Fatalf("agents create: %+v", r)
	}
	r := c.run("", "sessions", "start", "--agent", ag.ID, "--prompt", "quick", "--wait", "-o", "json")
	var st struct{ Status string }
	if json.Unmarshal([]byte(r.stdout), &st) != nil || st.Status != "finished" {
		t.Fatalf("start --wait: %+v", r)
	}
	b, alive := runnerAlive(dataDir)
	if !alive {
		t.Fatal("no runner after the run")
	}
	if runtime.GOOS != "linux" {
		t.Skip("inspects the runner through /proc")
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(b.PID) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(cmdline, []byte("--settings-stdin")) {
		t.Errorf("the runner was not handed its settings: %q", cmdline)
	}
	environ, err := os.ReadFile("/proc/" + strconv.Itoa(b.PID) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range bytes.Split(environ, []byte{0}) {
		if k, _, _ := strings.Cut(string(kv), "="); strings.HasPrefix(k, "FLAPJACK_") || k == "CURSOR_API_KEY" {
			t.Errorf("the runner's environment has %s", k)
		}
	}
	if bytes.Contains(environ, []byte(key)) {
		t.Error("the runner's environment holds the Cursor key")
	}
}

// TestRunnerReadsOnlyItsHandedSettings: a runner started with
// --settings-stdin runs on what it reads there, whatever its environment
// says (a malformed value in it changes nothing), and refuses a damaged
// hand-over as a usage error.
func TestRunnerReadsOnlyItsHandedSettings(t *testing.T) {
	dataDir := newDataDir(t)
	s, err := readSettings(lookupIn(map[string]string{"FLAPJACK_RUNTIME": "local"}))
	if err != nil {
		t.Fatal(err)
	}
	handed, _ := json.Marshal(s)
	run := func(stdin string) (int, string) {
		cmd := exec.Command(flapjackBin, "runner", "--data-dir", dataDir, "--idle-timeout", "100ms", "--settings-stdin")
		cmd.Env = append(os.Environ(), "FLAPJACK_MAX_CONCURRENT_RUNS=many", "FLAPJACK_WORKSPACE_TTL=forever")
		cmd.Stdin = strings.NewReader(stdin)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), errb.String()
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, errb.String()
	}
	if code, stderr := run(string(handed)); code != 0 {
		t.Errorf("runner on handed settings: exit %d, %s", code, stderr)
	}
	if code, stderr := run(`{"runtime":`); code != 2 || !strings.Contains(stderr, "settings") {
		t.Errorf("runner on damaged settings: exit %d, %s; want 2 naming the settings", code, stderr)
	}
}
