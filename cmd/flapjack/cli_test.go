//go:build unix

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
)

// cli runs the flapjack binary as a script would.
type cli struct {
	t   *testing.T
	env []string
}

func newCLI(t *testing.T, env ...string) *cli {
	dataDir := newDataDir(t)
	base := []string{"FLAPJACK_DATA_DIR=" + dataDir, "FLAPJACK_RUNTIME=local", "FLAPJACK_LOCAL_AGENT=exec", "NO_COLOR=1"}
	return &cli{t: t, env: append(base, env...)}
}

type result struct {
	stdout, stderr string
	code           int
}

func (c *cli) run(stdin string, args ...string) result {
	c.t.Helper()
	cmd := exec.Command(flapjackBin, args...)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// ok runs a command that must succeed.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	r := c.run("", args...)
	if r.code != 0 {
		c.t.Fatalf("flapjack %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func (c *cli) jsonID(args ...string) string {
	c.t.Helper()
	var v map[string]any
	out := c.ok(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		c.t.Fatalf("%v: %v\n%s", args, err, out)
	}
	for _, k := range []string{"id", "session_id"} {
		if s, ok := v[k].(string); ok {
			return s
		}
	}
	c.t.Fatalf("no id in %s", out)
	return ""
}

// normalize replaces what changes from run to run (ids, times, hashes, paths,
// durations) so output can be compared with a golden file.
func normalize(s string, paths ...string) string {
	for _, p := range paths {
		s = strings.ReplaceAll(s, p, "<PATH>")
	}
	ids := map[string]string{}
	counts := map[string]int{}
	s = regexp.MustCompile(`\b(ca|cs|msg|evt|run|org|user)-[a-z0-9]{20}\b`).ReplaceAllStringFunc(s, func(id string) string {
		if n, ok := ids[id]; ok {
			return n
		}
		prefix := id[:strings.Index(id, "-")]
		counts[prefix]++
		ids[id] = fmt.Sprintf("%s-%d", prefix, counts[prefix])
		return ids[id]
	})
	for _, r := range []struct{ re, to string }{
		{`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`, "<TIME>"},
		{`\b\d\d:\d\d:\d\d\b`, "<CLOCK>"},
		{`\b[0-9a-f]{40}\b`, "<COMMIT>"},
		{`commit [0-9a-f]{7}\b`, "commit <SHORT>"},
		{`"duration_ms": ?\d+`, `"duration_ms":0`},
	} {
		s = regexp.MustCompile(r.re).ReplaceAllString(s, r.to)
	}
	return s
}

// golden compares got with testdata/cli/<name>.golden; UPDATE_GOLDEN=1 rewrites it.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("..", "..", "testdata", "cli", name+".golden")
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with UPDATE_GOLDEN=1 to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

// scriptedSession creates an agent on a fresh repository and runs one session
// with the stream agent to the end; it returns the agent and session ids.
func scriptedSession(t *testing.T, c *cli, repo string) (string, string) {
	t.Helper()
	agent := c.jsonID("agents", "create", "--name", "fixer", "--repo-url", repo, "--runtime", "local", "--description", "Fixes bugs")
	r := c.run("", "sessions", "start", "--agent", agent, "--prompt", "first task", "--wait", "-o", "json")
	if r.code != 0 {
		t.Fatalf("start --wait: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var s struct{ ID, Status string }
	json.Unmarshal([]byte(r.stdout), &s)
	if s.Status != "finished" {
		t.Fatalf("status %q after --wait", s.Status)
	}
	return agent, s.ID
}

func TestCLIGoldenOutputs(t *testing.T) {
	repo := makeRepo(t)
	// stdout and stderr are read concurrently, so a golden run writes stdout only.
	agent := strings.ReplaceAll(streamAgent, `echo "a warning" >&2`, "")
	agentPath := writeAgent(t, agent)
	c := newCLI(t, "FLAPJACK_LOCAL_AGENT_COMMAND="+agentPath)
	_, session := scriptedSession(t, c, repo)
	for _, format := range []string{"text", "json", "jsonl"} {
		norm := func(s string) string {
			s = normalize(s, repo, agentPath)
			if format == "text" {
				// Column widths follow the raw values' lengths.
				s = regexp.MustCompile(` {2,}`).ReplaceAllString(s, "  ")
			}
			return s
		}
		golden(t, "agents-list."+format, norm(c.ok("agents", "list", "-o", format)))
		golden(t, "sessions-get."+format, norm(c.ok("sessions", "get", session, "-o", format)))
		golden(t, "sessions-events."+format, norm(c.ok("sessions", "events", session, "-o", format)))
	}
}

func TestCLIWaitExitCodes(t *testing.T) {
	repo := makeRepo(t)
	c := newCLI(t, "FLAPJACK_LOCAL_AGENT_COMMAND="+writeAgent(t, streamAgent), "FLAPJACK_KILL_GRACE=1s")
	agent := c.jsonID("agents", "create", "--repo-url", repo, "--runtime", "local")

	if r := c.run("", "sessions", "start", "--agent", agent, "--prompt", "ok", "--wait"); r.code != 0 {
		t.Errorf("finished: exit %d, want 0\n%s", r.code, r.stderr)
	}
	r := c.run("", "sessions", "start", "--agent", agent, "--prompt", "please fail", "--wait", "-o", "json")
	var s struct{ Status string }
	json.Unmarshal([]byte(r.stdout), &s)
	if r.code != 1 || s.Status != "error" {
		t.Errorf("error: exit %d status %q, want 1 and the final session on stdout", r.code, s.Status)
	}

	// Cancelled from elsewhere while a script waits: exit 3.
	cmd := exec.Command(flapjackBin, "sessions", "start", "--agent", agent, "--prompt", "sleep now", "--wait", "-o", "json")
	cmd.Env = append(os.Environ(), c.env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	id := waitForSession(t, c, "running")
	c.ok("sessions", "cancel", id)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Errorf("cancelled: %v, want exit 3", err)
	}
	if !strings.Contains(out.String(), `"status": "cancelled"`) {
		t.Errorf("cancelled: stdout %s", out.String())
	}
}

// waitForSession waits until some session is in status and returns its id.
func waitForSession(t *testing.T, c *cli, status string) string {
	t.Helper()
	for range 400 {
		var list []struct{ ID, Status string }
		json.Unmarshal([]byte(c.ok("sessions", "list", "--status", status, "-o", "json")), &list)
		if len(list) > 0 {
			return list[0].ID
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("no session reached %s", status)
	return ""
}

func TestCLIUsageAndErrors(t *testing.T) {
	c := newCLI(t)
	tests := []struct {
		args []string
		code int
	}{
		{[]string{"bogus"}, 2},
		{[]string{"agents", "list", "--nope"}, 2},
		{[]string{"agents", "get"}, 2},
		{[]string{"agents", "list", "-o", "yaml"}, 2},
		{[]string{"sessions", "start", "--prompt", "x"}, 2},
		{[]string{"sessions", "start", "--agent", "ca-x"}, 2},
		{[]string{"sessions", "start", "--agent", "ca-x", "--prompt", "x", "--prompt-file", "f"}, 2},
		{[]string{"sessions", "events", "cs-x", "--follow", "-o", "json"}, 2},
		{[]string{"sessions", "list", "--archived", "maybe"}, 2},
		{[]string{"sessions", "update", "cs-x"}, 2},
		{[]string{"agents", "get", "ca-nope"}, 1},
		{[]string{"sessions", "get", "cs-nope"}, 1},
		{[]string{"agents", "create", "--runtime", "mars"}, 1},
		{[]string{"agents", "list", "--server", "http://127.0.0.1:1"}, 4},
		{[]string{"sessions", "events", "cs-x", "--server", "http://127.0.0.1:1"}, 4},
		{[]string{"agents", "list", "--server", "ftp://x"}, 2},
		{[]string{"token", "list", "extra"}, 2},
		{[]string{"org", "create"}, 2},
		{[]string{"user", "create"}, 2},
		{[]string{"serve", "extra"}, 2},
		{[]string{"runner", "extra"}, 2},
		{[]string{"mcp", "extra"}, 2},
		{[]string{"version", "extra"}, 2},
	}
	for _, tt := range tests {
		r := c.run("", tt.args...)
		if r.code != tt.code {
			t.Errorf("flapjack %v: exit %d, want %d\nstderr: %s", tt.args, r.code, tt.code, r.stderr)
		}
		if r.code != 0 && r.stdout != "" {
			t.Errorf("flapjack %v: stdout %q, want nothing on failure", tt.args, r.stdout)
		}
		if r.code != 0 && r.stderr == "" {
			t.Errorf("flapjack %v: no error message on stderr", tt.args)
		}
	}
	if r := c.run("", "agents", "get", "ca-nope"); !strings.Contains(r.stderr, "NOT_FOUND") {
		t.Errorf("not found error does not carry its code: %s", r.stderr)
	}
}

func TestCLIPromptFromStdinAndFollowEndsByItself(t *testing.T) {
	repo := makeRepo(t)
	c := newCLI(t, "FLAPJACK_LOCAL_AGENT_COMMAND="+writeAgent(t, streamAgent))
	agent := c.jsonID("agents", "create", "--repo-url", repo, "--runtime", "local")
	r := c.run("prompt from stdin\nsecond line", "sessions", "start", "--agent", agent, "--prompt-file", "-", "--wait", "--follow", "-o", "jsonl")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var seqs []int64
	for _, l := range lines[:len(lines)-1] {
		var e struct {
			Seq  int64  `json:"seq"`
			Type string `json:"event_type"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("not an event line: %s", l)
		}
		seqs = append(seqs, e.Seq)
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("event seqs %v: gap or duplicate", seqs)
		}
	}
	var final struct {
		ID       string
		Status   string
		Messages []struct{ Prompt string }
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &final); err != nil || final.Status != "finished" {
		t.Fatalf("last line is not the final session: %s", lines[len(lines)-1])
	}
	if final.Messages[0].Prompt != "prompt from stdin\nsecond line" {
		t.Errorf("prompt = %q", final.Messages[0].Prompt)
	}
	// events --follow --since N on an ended session prints the rest and ends.
	out := c.ok("sessions", "events", final.ID, "--follow", "--since", "3", "-o", "jsonl")
	if n := strings.Count(out, "\n"); n != len(seqs)-3 {
		t.Errorf("events --follow --since 3 printed %d events, want %d", n, len(seqs)-3)
	}
}

func TestCLIInterruptLeavesSessionRunningOrCancels(t *testing.T) {
	repo := makeRepo(t)
	c := newCLI(t, "FLAPJACK_LOCAL_AGENT_COMMAND="+writeAgent(t, streamAgent), "FLAPJACK_KILL_GRACE=1s")
	agent := c.jsonID("agents", "create", "--repo-url", repo, "--runtime", "local")
	for _, cancel := range []bool{false, true} {
		args := []string{"sessions", "start", "--agent", agent, "--prompt", "sleep please", "--wait", "-o", "json"}
		if cancel {
			args = append(args, "--cancel-on-interrupt")
		}
		cmd := exec.Command(flapjackBin, args...)
		cmd.Env = append(os.Environ(), c.env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		id := waitForSession(t, c, "running")
		cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		code := -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		var s struct{ Status string }
		json.Unmarshal([]byte(c.ok("sessions", "get", id, "-o", "json")), &s)
		if !cancel {
			if code != 130 || !strings.Contains(stderr.String(), "sessions events "+id+" --follow") || s.Status != "running" {
				t.Errorf("interrupt: exit %d, status %s, stderr %s", code, s.Status, stderr.String())
			}
			c.ok("sessions", "cancel", id)
		} else if code != 3 || s.Status != "cancelled" {
			t.Errorf("interrupt with --cancel-on-interrupt: exit %d, status %s, stderr %s", code, s.Status, stderr.String())
		}
	}
}

// TestEveryCommandHasHelpAndExample walks the command tree.
func TestEveryCommandHasHelpAndExample(t *testing.T) {
	root := newRootCmd(&globals{})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" || (c.Parent() != nil && c.Parent().Name() == "completion") {
			return
		}
		if c.Short == "" || c.Example == "" {
			t.Errorf("command %q lacks a short help or an example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	c := newCLI(t)
	if out := c.ok("completion", "bash"); !strings.Contains(out, "flapjack") {
		t.Error("no bash completion")
	}
	if out := c.ok("version"); !strings.HasPrefix(out, "flapjack ") || !strings.Contains(out, "commit") {
		t.Errorf("version = %q", out)
	}
}
