//go:build unix

package local

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flapjack-dev/flapjack/core"
)

func TestEnvPolicy(t *testing.T) {
	environ := []string{
		"PATH=/bin", "HOME=/home/u", "LC_ALL=C", "LANG=C.UTF-8", "SystemRoot=C:\\Windows", "SSH_AUTH_SOCK=/s",
		"GIT_CONFIG_GLOBAL=/g", "GIT_DIR=/elsewhere", "GIT_WORK_TREE=/w",
		"FLAPJACK_MASTER_KEY=m", "FLAPJACK_DATA_DIR=/d", "CURSOR_API_KEY=runner", "GITHUB_TOKEN=gh", "GH_TOKEN=gh2",
		"ANTHROPIC_API_KEY=a", "CLAUDE_CONFIG_DIR=/c", "OPENAI_API_KEY=o", "CODEX_HOME=/x", "CURSOR_CONFIG=/cc",
		"AWS_SECRET_ACCESS_KEY=s", "FOO=bar", "NOEQUALS",
	}
	keys := func(env []string) []string {
		var out []string
		for _, kv := range env {
			k, _, _ := strings.Cut(kv, "=")
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	claude, _ := adapterFor(AgentClaude)
	codex, _ := adapterFor(AgentCodex)
	cursor, _ := adapterFor(AgentCursor)
	exec, _ := adapterFor(AgentExec)
	base := []string{"GIT_CONFIG_GLOBAL", "HOME", "LANG", "LC_ALL", "PATH", "SSH_AUTH_SOCK", "SystemRoot"}
	for _, tc := range []struct {
		name string
		got  []string
		want []string
	}{
		{"git", gitPolicy().filter(environ), base},
		{"exec", agentPolicy(exec, nil).filter(environ), base},
		{"claude", agentPolicy(claude, nil).filter(environ), append([]string{"ANTHROPIC_API_KEY", "CLAUDE_CONFIG_DIR"}, base...)},
		{"codex", agentPolicy(codex, nil).filter(environ), append([]string{"CODEX_HOME", "OPENAI_API_KEY"}, base...)},
		{"cursor-agent (its key is the session's)", agentPolicy(cursor, nil).filter(environ), append([]string{"CURSOR_CONFIG"}, base...)},
		{"FLAPJACK_AGENT_ENV", agentPolicy(exec, ParseAgentEnv("FOO, GITHUB_TOKEN FLAPJACK_MASTER_KEY,CURSOR_API_KEY")).filter(environ), append([]string{"FOO", "GITHUB_TOKEN"}, base...)},
	} {
		want := slices.Clone(tc.want)
		slices.Sort(want)
		if diff := cmp.Diff(want, keys(tc.got)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

// TestGitAndItsHooksGetNoSecrets: a local push target's post-receive hook
// records the environment git gave it when a session's branch is pushed:
// no flapjack setting, no master key, no Cursor key, no GitHub token, though
// the runner had them all.
func TestGitAndItsHooksGetNoSecrets(t *testing.T) {
	secrets := map[string]string{"FLAPJACK_MASTER_KEY": "bWFzdGVy", "FLAPJACK_DATA_DIR": "/data", "CURSOR_API_KEY": "crsr_runner_own_key_0123",
		"GITHUB_TOKEN": "ghp_runner_0123456789", "GH_TOKEN": "gho_0123456789"}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	o := makeOrigin(t)
	dump := filepath.Join(t.TempDir(), "hook-env")
	hook := filepath.Join(o.dir, ".git", "hooks", "post-receive")
	writeFile(t, hook, "#!/bin/sh\nenv > '"+dump+"'\n")
	if err := os.Chmod(hook, 0o755); err != nil {
		t.Fatal(err)
	}
	git(t, o.dir, "config", "receive.denyCurrentBranch", "ignore")
	r := newRuntime(t)
	spec := newSpec(o.dir, "main", "edit")
	if err := r.prepare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Execute(context.Background(), spec, newSink(t)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dump)
	if err != nil {
		t.Fatalf("the hook never ran (was the branch pushed?): %v", err)
	}
	for k, v := range secrets {
		if strings.Contains(string(b), k+"=") || strings.Contains(string(b), v) {
			t.Errorf("the push target's hook saw %s", k)
		}
	}
	if !strings.Contains(string(b), "PATH=") {
		t.Errorf("the hook's environment lacks PATH:\n%s", b)
	}
}

// TestAgentEnvPassesWhatTheUserNames: FLAPJACK_AGENT_ENV names reach the
// agent; the runner's secrets do not.
func TestAgentEnvPassesWhatTheUserNames(t *testing.T) {
	t.Setenv("MY_TOOL_TOKEN", "tool-value")
	t.Setenv("GITHUB_TOKEN", "ghp_runner_0123456789")
	t.Setenv("FLAPJACK_MASTER_KEY", "bWFzdGVy")
	spec := core.RunSpec{Session: core.Session{ID: "cs-x"}, Message: core.Message{ID: "msg-x"}}
	exec, _ := adapterFor(AgentExec)
	env := strings.Join(agentEnv(spec, "/ws", exec, ParseAgentEnv("MY_TOOL_TOKEN")), "\n")
	if !strings.Contains(env, "MY_TOOL_TOKEN=tool-value") {
		t.Error("a variable named in FLAPJACK_AGENT_ENV did not reach the agent")
	}
	for _, k := range []string{"GITHUB_TOKEN=", "FLAPJACK_MASTER_KEY="} {
		if strings.Contains(env, k) {
			t.Errorf("the agent got %s", k)
		}
	}
}

// TestGitErrorsShowAnExcerpt: a git failure says more than git's last line,
// with the GitHub token and URL credentials hidden.
func TestGitErrorsShowAnExcerpt(t *testing.T) {
	const token = "ghp_secret0123456789abcdef"
	stderr := "remote: Permission to acme/app.git denied to bot.\n" +
		"fatal: unable to access 'https://bot:" + token + "@github.com/acme/app.git/': The requested URL returned error: 403\n" +
		"\n" + "error: failed to push some refs to 'https://x-access-token:" + token + "@github.com/acme/app.git'\n"
	got := stderrExcerpt(stderr, core.NewRedactor(token))
	if !strings.Contains(got, "Permission to acme/app.git denied") || !strings.Contains(got, "returned error: 403") || !strings.Contains(got, "failed to push") {
		t.Errorf("excerpt lacks git's lines: %q", got)
	}
	if strings.Contains(got, token) || strings.Contains(got, "bot:") || strings.Contains(got, "x-access-token") {
		t.Errorf("excerpt shows credentials: %q", got)
	}
	long := strings.Repeat("noise line\n", 100) + "fatal: the cause"
	if got := stderrExcerpt(long, nil); !strings.HasSuffix(got, "fatal: the cause") || strings.Count(got, "\n") > excerptLines {
		t.Errorf("long stderr: %q", got)
	}
}

// TestToolCallsCarryToolAndPath: every tool_call event a local run logs has
// the spec example's "tool" (the tool's name) and, when the call targets one
// file, "path" at the top level.
func TestToolCallsCarryToolAndPath(t *testing.T) {
	sink := newSink(t)
	em := &emitter{sink: sink, clock: fixedClock{}}
	em.emit(core.EventToolCall, toolCallPayload{CallID: "c1", Name: "Edit", Status: "started", Args: json.RawMessage(`{"file_path":"src/a.go","old":"x"}`)})
	em.emit(core.EventToolCall, toolCallPayload{CallID: "c2", Name: "shell", Status: "started", Args: json.RawMessage(`{"command":"ls"}`)})
	got := sink.payloads(t, core.EventToolCall)
	if got[0]["tool"] != "Edit" || got[0]["path"] != "src/a.go" {
		t.Errorf("file tool call = %v", got[0])
	}
	if _, has := got[1]["path"]; got[1]["tool"] != "shell" || has {
		t.Errorf("shell tool call = %v", got[1])
	}
}
