//go:build unix

package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests run the binary with the local runtime's settings in its
// environment: the agent adapters, pushing and pull requests, expiry, the
// concurrency, stall and time limits, and "flapjack runner status".

// TestDefaultAgentMissing: with no agent configured the default is
// cursor-agent; when it is not installed the MCP server still starts, and a
// start is a VALIDATION_ERROR that says what to do.
func TestDefaultAgentMissing(t *testing.T) {
	s := startServer(t, newDataDir(t), "FLAPJACK_LOCAL_AGENT=", "FLAPJACK_LOCAL_AGENT_COMMAND=", "PATH="+t.TempDir())
	var ag struct{ ID string }
	if e := s.call(t, "flapjack_create_code_agent", map[string]any{"defaultRepoUrl": makeRepo(t), "runtime": "local"}, &ag); e != "" {
		t.Fatal(e)
	}
	e := s.call(t, "flapjack_start_code_session", map[string]any{"codeAgentId": ag.ID, "prompt": "x"}, nil)
	if !strings.HasPrefix(e, "VALIDATION_ERROR") || !strings.Contains(e, "agent or cursor-agent not found on PATH; install Cursor's CLI") {
		t.Errorf("start = %q", e)
	}
}

// githubFake is a minimal GitHub REST API for pull requests, as documented.
type githubFake struct {
	srv    *httptest.Server
	mu     sync.Mutex
	calls  []string
	prs    map[string]int // head branch → number
	bodies map[int]string
}

func newGitHubFake(t *testing.T, token string) *githubFake {
	f := &githubFake{prs: map[string]int{}, bodies: map[int]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls = append(f.calls, r.Method+" "+r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"message":"Bad credentials"}`)
			return
		}
		var in map[string]any
		json.NewDecoder(r.Body).Decode(&in)
		pr := func(n int) string {
			return fmt.Sprintf(`{"number":%d,"html_url":"https://github.com/acme/widgets/pull/%d","state":"open"}`, n, n)
		}
		switch {
		case r.Method == "GET" && r.URL.Path == "/user":
			fmt.Fprint(w, `{"login":"octocat"}`)
		case r.Method == "GET" && r.URL.Path == "/repos/acme/widgets/pulls":
			_, head, _ := strings.Cut(r.URL.Query().Get("head"), ":")
			if n, ok := f.prs[head]; ok {
				fmt.Fprint(w, "["+pr(n)+"]")
				return
			}
			fmt.Fprint(w, "[]")
		case r.Method == "POST" && r.URL.Path == "/repos/acme/widgets/pulls":
			n := len(f.prs) + 1
			f.prs[in["head"].(string)] = n
			f.bodies[n] = in["body"].(string)
			w.WriteHeader(http.StatusCreated)
			fmt.Fprint(w, pr(n))
		case r.Method == "PATCH" && strings.HasPrefix(r.URL.Path, "/repos/acme/widgets/pulls/"):
			n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/repos/acme/widgets/pulls/"))
			f.bodies[n] = in["body"].(string)
			fmt.Fprint(w, pr(n))
		case r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/requested_reviewers"):
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprint(w, `{"message":"Review cannot be requested from pull request author."}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"message":"Not Found"}`)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *githubFake) count(call string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == call {
			n++
		}
	}
	return n
}

// fakeGitHubRepo makes a bare repository that https://github.com/acme/widgets.git
// reaches through insteadOf in the git configuration it returns (the
// GIT_CONFIG_GLOBAL of the server under test).
func fakeGitHubRepo(t *testing.T) (bare, gitconfig string) {
	t.Helper()
	root := t.TempDir()
	bare = filepath.Join(root, "github", "acme", "widgets.git")
	src := makeRepo(t)
	if out, err := exec.Command("git", "clone", "-q", "--bare", src, bare).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	gitconfig = filepath.Join(root, "gitconfig")
	cfg := fmt.Sprintf("[url \"file://%s/github/\"]\n\tinsteadOf = https://github.com/\n", root)
	if err := os.WriteFile(gitconfig, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return bare, gitconfig
}

// claudeStandIn installs a claude stand-in replaying the recorded claude
// transcript (success first, then follow-up), logging its calls to logs.
func claudeStandIn(t *testing.T) (bin, logs string) {
	t.Helper()
	logs = t.TempDir()
	src, _ := filepath.Abs(filepath.Join("..", "..", "testdata", "transcripts", "claude"))
	replay, _ := filepath.Abs(filepath.Join("..", "..", "testdata", "agents", "replay.sh"))
	bin = writeAgent(t, fmt.Sprintf(`t=success
[ -e %[1]q/argv.1 ] && t=follow-up
exec %[2]q %[1]q %[3]q/$t.jsonl "$@"
`, logs, replay, src))
	return bin, logs
}

// TestClaudeSessionPushesAndOpensOnePullRequest: a session with the claude
// adapter (FLAPJACK_LOCAL_AGENT, FLAPJACK_LOCAL_AGENT_BIN) on a GitHub
// repository pushes its branch and opens one pull request (GITHUB_TOKEN,
// FLAPJACK_GITHUB_API_URL); a follow-up resumes claude's conversation and
// updates the pull request. A runner started later with a tiny
// FLAPJACK_WORKSPACE_TTL expires the session at once.
func TestClaudeSessionPushesAndOpensOnePullRequest(t *testing.T) {
	const token = "ghp_e2etoken0123456789"
	dataDir := newDataDir(t)
	bare, gitconfig := fakeGitHubRepo(t)
	gh := newGitHubFake(t, token)
	bin, logs := claudeStandIn(t)
	env := []string{"FLAPJACK_LOCAL_AGENT=claude", "FLAPJACK_LOCAL_AGENT_BIN=" + bin, "GITHUB_TOKEN=" + token,
		"FLAPJACK_GITHUB_API_URL=" + gh.srv.URL, "GIT_CONFIG_GLOBAL=" + gitconfig, "GIT_CONFIG_NOSYSTEM=1"}
	s := startServer(t, dataDir, env...)
	var ag struct{ ID string }
	if e := s.call(t, "flapjack_create_code_agent", map[string]any{"defaultRepoUrl": "https://github.com/acme/widgets.git", "runtime": "local", "modelId": "claude-sonnet-4-5"}, &ag); e != "" {
		t.Fatal(e)
	}
	var st struct {
		SessionID string `json:"session_id"`
	}
	if e := s.call(t, "flapjack_start_code_session", map[string]any{"codeAgentId": ag.ID, "prompt": "Add a greeting to hello.txt"}, &st); e != "" {
		t.Fatal(e)
	}
	evs, last := s.waitTerminal(t, st.SessionID, 0)
	branch := "flapjack/" + st.SessionID
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	if statusOf(evs[len(evs)-1]) != "finished" || !strings.Contains(strings.Join(types, ","), "pr") {
		t.Fatalf("events: %v\nstderr:\n%s", types, s.stderr)
	}
	var sess struct {
		PRURL    *string `json:"pr_url"`
		PRBranch *string `json:"pr_branch"`
		Messages []struct {
			PRURL *string `json:"pr_url"`
		} `json:"messages"`
	}
	s.call(t, "flapjack_get_code_session", map[string]any{"codeSessionId": st.SessionID}, &sess)
	const url = "https://github.com/acme/widgets/pull/1"
	if sess.PRURL == nil || *sess.PRURL != url || sess.PRBranch == nil || *sess.PRBranch != branch || sess.Messages[0].PRURL == nil || *sess.Messages[0].PRURL != url {
		t.Errorf("session: pr_url %v, pr_branch %v, messages %+v", sess.PRURL, sess.PRBranch, sess.Messages)
	}
	if out, err := exec.Command("git", "-C", bare, "rev-parse", "--verify", "refs/heads/"+branch).Output(); err != nil || len(out) == 0 {
		t.Errorf("branch not pushed: %v", err)
	}
	argv, _ := os.ReadFile(filepath.Join(logs, "argv.1"))
	if !strings.Contains(string(argv), "--model=claude-sonnet-4-5\x00") || strings.Contains(string(argv), "--resume") {
		t.Errorf("first call: %q", argv)
	}

	if e := s.call(t, "flapjack_send_code_session_message", map[string]any{"codeSessionId": st.SessionID, "prompt": "Also greet the moon"}, nil); e != "" {
		t.Fatal(e)
	}
	s.waitTerminal(t, st.SessionID, last)
	argv, _ = os.ReadFile(filepath.Join(logs, "argv.2"))
	if !strings.Contains(string(argv), "--resume=5f1c7a0e-2b8d-4f4e-9c1a-6d3e8b2a7f90\x00") {
		t.Errorf("follow-up did not resume claude's conversation: %q", argv)
	}
	if n, p := gh.count("POST /repos/acme/widgets/pulls"), gh.count("PATCH /repos/acme/widgets/pulls/1"); n != 1 || p != 1 {
		t.Errorf("%d pull requests opened, %d updated; want 1 and 1", n, p)
	}
	for _, out := range *s.outputs {
		if strings.Contains(out, token) {
			t.Error("the GitHub token reached an MCP answer")
		}
	}

	// Expiry: a runner with a TTL shorter than the session's age expires it
	// as it starts.
	s.cs.Close()
	stopRunner(t, dataDir)
	runner := exec.Command(flapjackBin, "runner", "--data-dir", dataDir, "--idle-timeout", "500ms")
	runner.Env = append(append(os.Environ(), env...), "FLAPJACK_WORKSPACE_TTL=1ms")
	if out, err := runner.CombinedOutput(); err != nil {
		t.Fatalf("runner: %v\n%s", err, out)
	}
	c := newCLI(t, env...)
	c.env = append(c.env, "FLAPJACK_DATA_DIR="+dataDir)
	var got struct{ Status string }
	json.Unmarshal([]byte(c.ok("sessions", "get", st.SessionID, "-o", "json")), &got)
	if got.Status != "expired" {
		t.Errorf("status after the TTL = %q, want expired", got.Status)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "workspaces", st.SessionID)); !os.IsNotExist(err) {
		t.Errorf("workspace still there: %v", err)
	}
	r := c.run("", "sessions", "send", st.SessionID, "--prompt", "more")
	if r.code == 0 || !strings.Contains(r.stderr, "SESSION_EXPIRED") {
		t.Errorf("send after expiry: exit %d, %s", r.code, r.stderr)
	}
}

// TestLocalLimitsFromTheEnvironment: FLAPJACK_MAX_CONCURRENT_RUNS=1 keeps a
// second session pending, told its position; FLAPJACK_STALL_TIMEOUT flags a
// quiet run; FLAPJACK_RUN_TIMEOUT stops it, and the queued one runs next.
func TestLocalLimitsFromTheEnvironment(t *testing.T) {
	dataDir := newDataDir(t)
	agent := writeAgent(t, "cat >/dev/null\necho started\nsleep 30\n")
	s := startServer(t, dataDir, "FLAPJACK_LOCAL_AGENT_COMMAND="+agent, "FLAPJACK_MAX_CONCURRENT_RUNS=1",
		"FLAPJACK_STALL_TIMEOUT=300ms", "FLAPJACK_RUN_TIMEOUT=2s", "FLAPJACK_KILL_GRACE=200ms")
	var ag struct{ ID string }
	s.call(t, "flapjack_create_code_agent", map[string]any{"defaultRepoUrl": makeRepo(t), "runtime": "local", "autoCreatePR": false}, &ag)
	var ids []string
	for _, p := range []string{"first", "second"} {
		var st struct {
			SessionID string `json:"session_id"`
		}
		if e := s.call(t, "flapjack_start_code_session", map[string]any{"codeAgentId": ag.ID, "prompt": p}, &st); e != "" {
			t.Fatal(e)
		}
		ids = append(ids, st.SessionID)
		time.Sleep(5 * time.Millisecond)
	}
	for i, id := range ids {
		evs, _ := s.waitTerminal(t, id, 0)
		var stalled, queued int
		var final string
		for _, e := range evs {
			switch e.Type {
			case "stalled":
				stalled++
			case "status":
				var p struct {
					Queued   bool
					Position int `json:"queue_position"`
					Reason   string
				}
				json.Unmarshal(e.Payload, &p)
				if p.Queued && p.Position == 1 {
					queued++
				}
				final = p.Reason
			}
		}
		if stalled != 1 || final != "the run timed out: it was stopped after 2s" || queued != i {
			t.Errorf("session %d: %d stalled, %d queued events, ended %q", i+1, stalled, queued, final)
		}
	}
}

// TestRunnerStatus: "flapjack runner status" shows the runner's pid, the
// active sessions, queued messages and the workspaces' disk use, as text
// and as JSON; an exec agent set up by FLAPJACK_LOCAL_AGENT_COMMAND alone
// runs (the default adapter is exec then).
func TestRunnerStatus(t *testing.T) {
	dataDir := newDataDir(t)
	agent := writeAgent(t, "cat >/dev/null\nsleep 30\n")
	s := startServer(t, dataDir, "FLAPJACK_LOCAL_AGENT=", "FLAPJACK_LOCAL_AGENT_COMMAND="+agent, "FLAPJACK_KILL_GRACE=200ms")
	var ag struct{ ID string }
	s.call(t, "flapjack_create_code_agent", map[string]any{"defaultRepoUrl": makeRepo(t), "runtime": "local"}, &ag)
	var st struct {
		SessionID string `json:"session_id"`
	}
	if e := s.call(t, "flapjack_start_code_session", map[string]any{"codeAgentId": ag.ID, "prompt": "wait"}, &st); e != "" {
		t.Fatal(e)
	}
	waitStatus(t, s, st.SessionID, "running")
	s.call(t, "flapjack_send_code_session_message", map[string]any{"codeSessionId": st.SessionID, "prompt": "then this"}, nil)

	c := newCLI(t)
	c.env = append(c.env, "FLAPJACK_DATA_DIR="+dataDir)
	var got struct {
		Runner struct {
			Running bool
			PID     int
		}
		ActiveSessions   int            `json:"active_sessions"`
		SessionsByStatus map[string]int `json:"sessions_by_status"`
		QueuedMessages   int            `json:"queued_messages"`
		Workspaces       struct {
			Count int
			Bytes int64
		}
		RepoCache struct{ Count int } `json:"repo_cache"`
	}
	if err := json.Unmarshal([]byte(c.ok("runner", "status", "-o", "json")), &got); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dataDir, "runner.lock"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	if !got.Runner.Running || got.Runner.PID != pid || got.ActiveSessions != 1 || got.SessionsByStatus["running"] != 1 ||
		got.QueuedMessages != 1 || got.Workspaces.Count != 1 || got.Workspaces.Bytes < 4096 || got.RepoCache.Count != 1 {
		t.Errorf("status = %+v (runner pid %d)", got, pid)
	}
	text := c.ok("runner", "status", "-o", "text")
	for _, want := range []string{fmt.Sprintf("runner:              running, pid %d, up ", pid), "sessions:            1 active (1 running)", "queued messages:     1", "workspaces:          1, "} {
		if !strings.Contains(text, want) {
			t.Errorf("text status lacks %q:\n%s", want, text)
		}
	}
	if e := s.call(t, "flapjack_cancel_code_session", map[string]any{"codeSessionId": st.SessionID}, nil); e != "" {
		t.Fatal(e)
	}
}
