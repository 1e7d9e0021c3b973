//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/flapjack-dev/flapjack/core/coretest"
)

// flapjackBin is the binary under test, built once by TestMain.
var flapjackBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flapjack-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	flapjackBin = filepath.Join(dir, "flapjack")
	if out, err := exec.Command("go", "build", "-o", flapjackBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building flapjack: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// lockedBuffer collects a child's stderr safely.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// server is one flapjack MCP process and the client talking to it.
type server struct {
	cs     *mcp.ClientSession
	stderr *lockedBuffer
	// outputs records every tool result text, to scan for secrets.
	outputs *[]string
}

// startServer runs the binary over stdio as an MCP client would.
func startServer(t *testing.T, dataDir string, env ...string) *server {
	t.Helper()
	cmd := exec.Command(flapjackBin, "mcp")
	cmd.Env = append(os.Environ(), "FLAPJACK_DATA_DIR="+dataDir, "FLAPJACK_RUNTIME=local", "FLAPJACK_LOCAL_AGENT=exec", "FLAPJACK_LOG_LEVEL=debug")
	cmd.Env = append(cmd.Env, env...)
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connect: %v\nstderr:\n%s", err, stderr)
	}
	t.Cleanup(func() { cs.Close() })
	return &server{cs: cs, stderr: stderr, outputs: new([]string)}
}

// call invokes a tool; it returns the error text for tool errors.
func (s *server) call(t *testing.T, name string, args map[string]any, out any) (toolErr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := s.cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			*s.outputs = append(*s.outputs, tc.Text)
		}
	}
	if res.IsError {
		return res.Content[0].(*mcp.TextContent).Text
	}
	if out != nil {
		raw, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s: decoding %s: %v", name, raw, err)
		}
	}
	return ""
}

type event struct {
	Seq     int64           `json:"seq"`
	Type    string          `json:"event_type"`
	Payload json.RawMessage `json:"payload"`
}

// waitTerminal follows the log from since until a terminal status event and
// returns the events seen.
func (s *server) waitTerminal(t *testing.T, id string, since int64) ([]event, int64) {
	t.Helper()
	var seen []event
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var page struct {
			Events  []event `json:"events"`
			LastSeq int64   `json:"last_seq"`
		}
		if e := s.call(t, "flapjack_list_code_session_events", map[string]any{"codeSessionId": id, "since": since, "waitSeconds": 2}, &page); e != "" {
			t.Fatal(e)
		}
		for _, e := range page.Events {
			if e.Seq != since+1 {
				t.Fatalf("event seq %d after %d: gap or duplicate", e.Seq, since)
			}
			since = e.Seq
			seen = append(seen, e)
			if e.Type == "status" && isTerminalStatus(statusOf(e)) {
				return seen, since
			}
		}
	}
	t.Fatalf("session %s did not end; events: %v\nstderr:\n%s", id, seen, s.stderr)
	return nil, 0
}

func statusOf(e event) string {
	var p struct{ Status string }
	json.Unmarshal(e.Payload, &p)
	return p.Status
}

func isTerminalStatus(s string) bool {
	return s == "finished" || s == "error" || s == "cancelled" || s == "expired"
}

// makeRepo creates a git repository with one commit on main.
func makeRepo(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("hello\n"), 0o644)
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "."}, {"-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init"}} {
		if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	return dir
}

// writeAgent writes an executable agent script and returns its path.
func writeAgent(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// stopRunner stops the detached runner of a data directory and waits until it
// is gone, so no test leaves a process behind.
func stopRunner(t testing.TB, dataDir string) {
	t.Helper()
	// A runner started just before (a kick, a server's hand-over) takes the
	// lock a few milliseconds after it was spawned: look a few times.
	for range 5 {
		if stopHeldRunner(t, dataDir) {
			return
		}
		time.Sleep(40 * time.Millisecond)
	}
}

// stopHeldRunner stops the runner holding the lock, if any, and reports
// whether there was one.
func stopHeldRunner(t testing.TB, dataDir string) bool {
	t.Helper()
	f, err := os.Open(filepath.Join(dataDir, "runner.lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB) == nil {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return false
	}
	raw, _ := os.ReadFile(f.Name())
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 1 {
		t.Errorf("runner.lock holds no pid: %q", raw)
		return true
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for range 200 {
		if syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB) == nil {
			syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	t.Errorf("runner %d did not stop on SIGTERM", pid)
	return true
}

func newDataDir(t testing.TB) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "data")
	t.Cleanup(func() { stopRunner(t, d) })
	return d
}

func TestStdioListsExactlyTheThirteenTools(t *testing.T) {
	s := startServer(t, newDataDir(t))
	res, err := s.cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tool := range res.Tools {
		got = append(got, tool.Name)
	}
	slices.Sort(got)
	want := []string{
		"flapjack_archive_code_session", "flapjack_cancel_code_session", "flapjack_create_code_agent",
		"flapjack_delete_code_agent", "flapjack_get_code_agent", "flapjack_get_code_session",
		"flapjack_list_code_agents", "flapjack_list_code_session_events", "flapjack_list_code_sessions",
		"flapjack_send_code_session_message", "flapjack_start_code_session", "flapjack_update_code_agent",
		"flapjack_update_code_session",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tools (-want +got):\n%s", diff)
	}
}

const streamAgent = `
prompt=$(cat)
printf '{"type":"system","subtype":"init","session_id":"chat-1","model":"%s"}\n' "$FLAPJACK_MODEL"
printf '{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"working on it"}]},"session_id":"chat-1"}\n'
printf '{"type":"tool_call","subtype":"started","call_id":"c1","tool_call":{"writeToolCall":{"args":{"path":"notes.txt"}}}}\n'
echo "$prompt" >> notes.txt
printf '{"type":"tool_call","subtype":"completed","call_id":"c1","tool_call":{"writeToolCall":{"args":{"path":"notes.txt"},"result":{"success":{}}}}}\n'
echo "plain output line"
echo "a warning" >&2
case "$prompt" in *sleep*) sleep 30 ;; esac
case "$prompt" in *slow*) sleep 2 ;; esac
case "$prompt" in *fail*) echo "it broke" >&2; exit 3 ;; esac
printf '{"type":"result","subtype":"success","is_error":false,"duration_ms":5,"result":"done: %s","session_id":"chat-1"}\n' "$FLAPJACK_MESSAGE_ID"
`

func TestStdioSessionLifecycle(t *testing.T) {
	dataDir := newDataDir(t)
	repo := makeRepo(t)
	s := startServer(t, dataDir, "FLAPJACK_LOCAL_AGENT_COMMAND="+writeAgent(t, streamAgent), "FLAPJACK_KILL_GRACE=1s")

	var ag struct{ ID string }
	if e := s.call(t, "flapjack_create_code_agent", map[string]any{"name": "e2e", "defaultRepoUrl": repo, "runtime": "local"}, &ag); e != "" {
		t.Fatal(e)
	}
	var st struct {
		SessionID string `json:"session_id"`
		MessageID string `json:"message_id"`
	}
	if e := s.call(t, "flapjack_start_code_session", map[string]any{"codeAgentId": ag.ID, "prompt": "first task"}, &st); e != "" {
		t.Fatal(e)
	}
	evs, last := s.waitTerminal(t, st.SessionID, 0)
	var statuses, types []string
	for _, e := range evs {
		types = append(types, e.Type)
		if e.Type == "status" {
			statuses = append(statuses, statusOf(e))
		}
	}
	if diff := cmp.Diff([]string{"pending", "creating", "running", "finished"}, statuses); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	for _, want := range []string{"user_message", "assistant", "tool_call", "stdout", "stderr", "result", "file_edit"} {
		if !slices.Contains(types, want) {
			t.Errorf("no %s event in %v", want, types)
		}
	}

	// A follow-up runs in the same workspace, on the same branch.
	var sent struct {
		MessageID string `json:"message_id"`
	}
	if e := s.call(t, "flapjack_send_code_session_message", map[string]any{"codeSessionId": st.SessionID, "prompt": "second task"}, &sent); e != "" {
		t.Fatal(e)
	}
	s.waitTerminal(t, st.SessionID, last)
	ws := filepath.Join(dataDir, "workspaces", st.SessionID)
	out, err := exec.Command("git", "-C", ws, "log", "--format=%s", "main..flapjack/"+st.SessionID).Output()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("second task\nfirst task\n", string(out)); diff != "" {
		t.Errorf("commits on the session branch (-want +got):\n%s", diff)
	}
	notes, _ := os.ReadFile(filepath.Join(ws, "notes.txt"))
	if !strings.Contains(string(notes), "first task") || !strings.Contains(string(notes), "second task") {
		t.Errorf("notes.txt = %q, want both prompts", notes)
	}

	var sess struct {
		Status   string `json:"status"`
		Messages []struct {
			ID         string  `json:"id"`
			Status     string  `json:"status"`
			ResultText *string `json:"result_text"`
		} `json:"messages"`
	}
	s.call(t, "flapjack_get_code_session", map[string]any{"codeSessionId": st.SessionID}, &sess)
	if sess.Status != "finished" || len(sess.Messages) != 2 || sess.Messages[1].ResultText == nil || *sess.Messages[1].ResultText != "done: "+sent.MessageID {
		t.Errorf("session after follow-up = %+v", sess)
	}

	// Cancel refuses a finished session; archive wipes it; send then refuses.
	if e := s.call(t, "flapjack_cancel_code_session", map[string]any{"codeSessionId": st.SessionID}, nil); !strings.HasPrefix(e, "SESSION_NOT_ACTIVE") {
		t.Errorf("cancel finished = %q, want SESSION_NOT_ACTIVE", e)
	}
	if e := s.call(t, "flapjack_archive_code_session", map[string]any{"codeSessionId": st.SessionID}, nil); e != "" {
		t.Fatal(e)
	}
	if e := s.call(t, "flapjack_send_code_session_message", map[string]any{"codeSessionId": st.SessionID, "prompt": "more"}, nil); !strings.HasPrefix(e, "SESSION_ARCHIVED") {
		t.Errorf("send archived = %q, want SESSION_ARCHIVED", e)
	}

	// Cancel a running agent: answered only once the agent is gone.
	if e := s.call(t, "flapjack_start_code_session", map[string]any{"codeAgentId": ag.ID, "prompt": "please sleep"}, &st); e != "" {
		t.Fatal(e)
	}
	waitStatus(t, s, st.SessionID, "running")
	if e := s.call(t, "flapjack_archive_code_session", map[string]any{"codeSessionId": st.SessionID}, nil); !strings.HasPrefix(e, "SESSION_ACTIVE") {
		t.Errorf("archive running = %q, want SESSION_ACTIVE", e)
	}
	var cr struct {
		OK     bool   `json:"ok"`
		Status string `json:"status"`
	}
	if e := s.call(t, "flapjack_cancel_code_session", map[string]any{"codeSessionId": st.SessionID}, &cr); e != "" || !cr.OK || cr.Status != "cancelled" {
		t.Fatalf("cancel = %+v %q", cr, e)
	}
	if pids := agentProcesses(t, "please sleep"); len(pids) > 0 {
		t.Errorf("agent processes still alive after cancel: %v", pids)
	}
	evs, _ = s.waitTerminal(t, st.SessionID, 0)
	if got := statusOf(evs[len(evs)-1]); got != "cancelled" {
		t.Errorf("final status = %s, want cancelled", got)
	}
}

// agentProcesses lists processes whose environment names this prompt.
func agentProcesses(t *testing.T, prompt string) []int {
	t.Helper()
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, []byte("FLAPJACK_PROMPT="+prompt)) {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if fields := strings.Fields(string(stat)); len(fields) > 2 && fields[2] == "Z" {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

func waitStatus(t *testing.T, s *server, id, want string) {
	t.Helper()
	for range 300 {
		var sess struct{ Status string }
		s.call(t, "flapjack_get_code_session", map[string]any{"codeSessionId": id}, &sess)
		if sess.Status == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("session %s never reached %s\nstderr:\n%s", id, want, s.stderr)
}

// TestSessionOutlivesTheMCPProcess: the runner is detached, so closing the
// editor (the MCP process) does not stop a session.
func TestSessionOutlivesTheMCPProcess(t *testing.T) {
	dataDir := newDataDir(t)
	repo := makeRepo(t)
	agent := "FLAPJACK_LOCAL_AGENT_COMMAND=" + writeAgent(t, streamAgent)
	s := startServer(t, dataDir, agent)
	var ag struct{ ID string }
	s.call(t, "flapjack_create_code_agent", map[string]any{"defaultRepoUrl": repo, "runtime": "local"}, &ag)
	var st struct {
		SessionID string `json:"session_id"`
	}
	if e := s.call(t, "flapjack_start_code_session", map[string]any{"codeAgentId": ag.ID, "prompt": "slow work"}, &st); e != "" {
		t.Fatal(e)
	}
	waitStatus(t, s, st.SessionID, "running")
	if err := s.cs.Close(); err != nil && !errors.Is(err, context.Canceled) {
		t.Logf("close: %v", err)
	}
	// The MCP process is gone; the session must still finish.
	s2 := startServer(t, dataDir, agent)
	evs, _ := s2.waitTerminal(t, st.SessionID, 0)
	if got := statusOf(evs[len(evs)-1]); got != "finished" {
		t.Errorf("final status = %s, want finished", got)
	}
}

// TestCanaryKeyNeverLeaks runs a session whose agent prints its key everywhere
// and then checks the key is in no output, event, log or database byte.
func TestCanaryKeyNeverLeaks(t *testing.T) {
	const canary = "cursor_CANARY_5f0e2d7c9b1a4e8f"
	dataDir := newDataDir(t)
	repo := makeRepo(t)
	agent := writeAgent(t, `
echo "key is $CURSOR_API_KEY"
echo "stderr key $CURSOR_API_KEY" >&2
printf '{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"%s"}]}}\n' "$CURSOR_API_KEY"
echo "Authorization: Basic $(printf '%s:' "$CURSOR_API_KEY" | base64 -w0)"
echo "base64 $(printf '%s' "$CURSOR_API_KEY" | base64 -w0)"
printf '{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"escaped \\u0063%s"}]}}\n' "${CURSOR_API_KEY#?}"
echo "cut off ${CURSOR_API_KEY%???????????}"
echo "$CURSOR_API_KEY" > leaked.txt
exit 1
`)
	s := startServer(t, dataDir, "FLAPJACK_LOCAL_AGENT_COMMAND="+agent)
	var ag struct{ ID string }
	s.call(t, "flapjack_create_code_agent", map[string]any{"defaultRepoUrl": repo, "runtime": "local"}, &ag)
	var st struct {
		SessionID string `json:"session_id"`
	}
	if e := s.call(t, "flapjack_start_code_session", map[string]any{"codeAgentId": ag.ID, "prompt": "leak it", "cursorApiKey": canary}, &st); e != "" {
		t.Fatal(e)
	}
	evs, _ := s.waitTerminal(t, st.SessionID, 0)
	if len(evs) < 5 {
		t.Fatalf("too few events: %v", evs)
	}
	redacted := false
	for _, e := range evs {
		redacted = redacted || bytes.Contains(e.Payload, []byte("[REDACTED]"))
	}
	if !redacted {
		t.Error("the agent printed the key but no event shows [REDACTED]: is the key reaching the agent?")
	}
	s.call(t, "flapjack_get_code_session", map[string]any{"codeSessionId": st.SessionID}, nil)
	s.call(t, "flapjack_list_code_sessions", map[string]any{}, nil)
	if e := s.call(t, "flapjack_archive_code_session", map[string]any{"codeSessionId": st.SessionID}, nil); e != "" {
		t.Fatal(e)
	}
	// The workspace (and leaked.txt, the agent's own doing) goes with archive.
	s.cs.Close()
	stopRunner(t, dataDir)

	var leaks []string
	for _, out := range *s.outputs {
		leaks = append(leaks, coretest.FindLeaks("tool output", []byte(out), canary)...)
	}
	leaks = append(leaks, coretest.FindLeaks("server log", []byte(s.stderr.String()), canary)...)
	fileLeaks, scanned, err := coretest.FindLeaksInDir(dataDir, canary)
	if err != nil {
		t.Fatal(err)
	}
	leaks = append(leaks, fileLeaks...)
	if len(leaks) > 0 {
		t.Errorf("the key leaked:\n%s", strings.Join(leaks, "\n"))
	}
	if scanned < 3 {
		t.Errorf("scanned only %d files in %s", scanned, dataDir)
	}
}

// TestStartWithoutAgentCommandIsRefused: a server without an agent command
// answers at once, and creates no session.
func TestStartWithoutAgentCommandIsRefused(t *testing.T) {
	s := startServer(t, newDataDir(t))
	var ag struct{ ID string }
	s.call(t, "flapjack_create_code_agent", map[string]any{"defaultRepoUrl": makeRepo(t), "runtime": "local"}, &ag)
	e := s.call(t, "flapjack_start_code_session", map[string]any{"codeAgentId": ag.ID, "prompt": "x"}, nil)
	if !strings.HasPrefix(e, "VALIDATION_ERROR") || !strings.Contains(e, "FLAPJACK_LOCAL_AGENT_COMMAND") {
		t.Errorf("start = %q, want VALIDATION_ERROR naming FLAPJACK_LOCAL_AGENT_COMMAND", e)
	}
	var list struct {
		Sessions []any `json:"code_sessions"`
	}
	s.call(t, "flapjack_list_code_sessions", map[string]any{}, &list)
	if len(list.Sessions) != 0 {
		t.Errorf("%d sessions after a refused start", len(list.Sessions))
	}
}

// TestRunnerIsASingletonAndExitsWhenIdle: a second runner on the same data
// directory leaves at once, and a runner with --idle-timeout exits by itself.
func TestRunnerIsASingletonAndExitsWhenIdle(t *testing.T) {
	dataDir := newDataDir(t)
	first := exec.Command(flapjackBin, "runner", "--data-dir", dataDir, "--idle-timeout", "1500ms")
	var firstErr lockedBuffer
	first.Stderr = &firstErr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- first.Wait() }()
	t.Cleanup(func() { first.Process.Kill() })
	// Wait until it holds the lock.
	for i := 0; ; i++ {
		if held, _ := runnerUp(dataDir); held {
			break
		}
		if i > 200 {
			t.Fatalf("first runner never took the lock:\n%s", firstErr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	second := exec.Command(flapjackBin, "runner", "--data-dir", dataDir)
	out, err := second.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "another runner holds this data directory") {
		t.Errorf("second runner: %v\n%s", err, out)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("idle runner exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("runner with --idle-timeout 1.5s did not exit")
	}
	if !strings.Contains(firstErr.String(), "idle") {
		t.Errorf("runner log does not say it exited idle:\n%s", firstErr.String())
	}
	if held, _ := runnerUp(dataDir); held {
		t.Error("the lock is still held after the runner exited")
	}
}

// TestKilledRunnerIsAdopted: SIGKILL the runner mid-run; the next runner (here
// started by a new MCP server) adopts the session, stops the orphaned agent and
// ends the session in error with a clear reason.
func TestKilledRunnerIsAdopted(t *testing.T) {
	dataDir := newDataDir(t)
	repo := makeRepo(t)
	agent := "FLAPJACK_LOCAL_AGENT_COMMAND=" + writeAgent(t, streamAgent)
	s := startServer(t, dataDir, agent, "FLAPJACK_KILL_GRACE=1s")
	var ag struct{ ID string }
	s.call(t, "flapjack_create_code_agent", map[string]any{"defaultRepoUrl": repo, "runtime": "local"}, &ag)
	var st struct {
		SessionID string `json:"session_id"`
	}
	if e := s.call(t, "flapjack_start_code_session", map[string]any{"codeAgentId": ag.ID, "prompt": "orphan sleep"}, &st); e != "" {
		t.Fatal(e)
	}
	waitStatus(t, s, st.SessionID, "running")
	// "running" is recorded just before the agent starts; wait for the agent.
	for i := 0; len(agentProcesses(t, "orphan sleep")) == 0; i++ {
		if i > 400 {
			t.Fatal("the agent never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	raw, _ := os.ReadFile(filepath.Join(dataDir, "runner.lock"))
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; ; i++ {
		if held, _ := runnerUp(dataDir); !held {
			break
		}
		if i > 200 {
			t.Fatal("the killed runner still holds the lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.cs.Close()
	// A new MCP server finds the active session and starts a runner, which adopts it.
	s2 := startServer(t, dataDir, agent, "FLAPJACK_KILL_GRACE=1s")
	evs, _ := s2.waitTerminal(t, st.SessionID, 0)
	last := evs[len(evs)-1]
	if statusOf(last) != "error" || !strings.Contains(string(last.Payload), "runner stopped") {
		t.Errorf("final status event = %s, want error saying the runner stopped", last.Payload)
	}
	if pids := agentProcesses(t, "orphan sleep"); len(pids) > 0 {
		t.Errorf("orphaned agent processes still alive: %v", pids)
	}
}

// runnerUp reports whether a runner is alive, from its liveness record (tests
// never probe the lock: a probe could make a starting runner leave).
func runnerUp(dataDir string) (bool, error) {
	_, alive := runnerAlive(dataDir)
	return alive, nil
}
