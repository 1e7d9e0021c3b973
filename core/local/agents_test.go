//go:build unix

package local

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flapjack-dev/flapjack/core"
)

// Conversation ids the transcripts carry.
const (
	cursorChatID  = "c7b7f2a4-5d1e-4c39-9a0f-2f7d0e9b1a11"
	claudeSession = "5f1c7a0e-2b8d-4f4e-9c1a-6d3e8b2a7f90"
	codexThread   = "0199a213-81c0-7800-8aa1-bbab2a035a53"
)

func TestCommandLines(t *testing.T) {
	t.Parallel()
	r, err := New(Config{WorkspaceRoot: t.TempDir(), Agent: AgentExec, Command: []string{"/bin/agent", "-x"}})
	if err != nil {
		t.Fatal(err)
	}
	prompt := "--help\n-rf everything"
	spec := func(model string, followUp bool) core.RunSpec {
		return core.RunSpec{Session: core.Session{ModelID: model}, Prompt: prompt, FollowUp: followUp}
	}
	tests := []struct {
		name      string
		agent     string
		spec      core.RunSpec
		state     sessionState
		want      []string
		wantStdin string
	}{
		{name: "cursor-agent, auto model", agent: AgentCursor, spec: spec("auto", false),
			want: []string{"/x/agent", "-p", "--output-format", "stream-json", "--force", "--trust", "--", prompt}},
		{name: "cursor-agent, model, resumed", agent: AgentCursor, spec: spec("gpt-5", true), state: sessionState{Agent: AgentCursor, CLISession: cursorChatID},
			want: []string{"/x/agent", "-p", "--output-format", "stream-json", "--force", "--trust", "--model=gpt-5", "--resume=" + cursorChatID, "--", prompt}},
		{name: "cursor-agent, first run never resumes", agent: AgentCursor, spec: spec("auto", false), state: sessionState{Agent: AgentCursor, CLISession: cursorChatID},
			want: []string{"/x/agent", "-p", "--output-format", "stream-json", "--force", "--trust", "--", prompt}},
		{name: "claude", agent: AgentClaude, spec: spec("auto", false),
			want:      []string{"/x/claude", "-p", "--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits", "--allowedTools", "Bash"},
			wantStdin: prompt},
		{name: "claude, model, resumed", agent: AgentClaude, spec: spec("claude-sonnet-4-5", true), state: sessionState{Agent: AgentClaude, CLISession: claudeSession},
			want:      []string{"/x/claude", "-p", "--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits", "--allowedTools", "Bash", "--model=claude-sonnet-4-5", "--resume=" + claudeSession},
			wantStdin: prompt},
		{name: "claude does not resume another CLI's conversation", agent: AgentClaude, spec: spec("auto", true), state: sessionState{Agent: AgentCodex, CLISession: codexThread},
			want:      []string{"/x/claude", "-p", "--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits", "--allowedTools", "Bash"},
			wantStdin: prompt},
		{name: "codex", agent: AgentCodex, spec: spec("auto", false),
			want: []string{"/x/codex", "exec", "--json", "--sandbox", "workspace-write", "-"}, wantStdin: prompt},
		{name: "codex, model, resumed", agent: AgentCodex, spec: spec("gpt-5-codex", true), state: sessionState{Agent: AgentCodex, CLISession: codexThread},
			want: []string{"/x/codex", "exec", "--json", "--sandbox", "workspace-write", "--model=gpt-5-codex", "resume", codexThread, "-"}, wantStdin: prompt},
		{name: "a recorded id that could be an option is not used", agent: AgentCodex, spec: spec("auto", true), state: sessionState{Agent: AgentCodex, CLISession: "--last"},
			want: []string{"/x/codex", "exec", "--json", "--sandbox", "workspace-write", "-"}, wantStdin: prompt},
		{name: "exec", agent: AgentExec, spec: spec("gpt-5", true),
			want: []string{"/bin/agent", "-x"}, wantStdin: prompt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ad, _ := adapterFor(tt.agent)
			ra := resolvedAgent{adapter: ad, argv: []string{"/x/" + ad.exe}}
			if tt.agent == AgentExec {
				ra.argv = r.command
			}
			argv, stdin, err := ra.command(tt.spec, tt.state)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, argv); diff != "" {
				t.Errorf("argv (-want +got):\n%s", diff)
			}
			if stdin != tt.wantStdin {
				t.Errorf("stdin = %q, want %q", stdin, tt.wantStdin)
			}
		})
	}
	// cursor-agent takes the prompt on its command line, which Linux bounds.
	ad, _ := adapterFor(AgentCursor)
	big := core.RunSpec{Prompt: strings.Repeat("é", 70_000)}
	if _, _, err := (resolvedAgent{adapter: ad, argv: []string{"/x/cursor-agent"}}).command(big, sessionState{}); err == nil || !strings.Contains(err.Error(), "128 KiB") {
		t.Errorf("a 140 KB prompt for cursor-agent: %v", err)
	}
}

// mapTranscript reads a transcript through an agent's mapper as Execute
// would (readLines, then the mapper), with the workspace at /work/ws.
func mapTranscript(t *testing.T, agent, path string) ([]event, string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ad, _ := adapterFor(agent)
	m := ad.mapper("/work/ws")
	var evs []event
	if err := readLines(f, func(l string) { evs = append(evs, m.line(l)...) }); err != nil {
		t.Fatal(err)
	}
	return evs, m.session()
}

// TestTranscriptMapping maps every recorded transcript and compares the
// events with its golden file (<name>.events.json, UPDATE_GOLDEN=1 rewrites).
func TestTranscriptMapping(t *testing.T) {
	t.Parallel()
	sessions := map[string]string{AgentCursor: cursorChatID, AgentClaude: claudeSession, AgentCodex: codexThread}
	for _, agent := range []string{AgentCursor, AgentClaude, AgentCodex} {
		files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "transcripts", agent, "*.jsonl"))
		if len(files) < 6 {
			t.Fatalf("%s: only %d transcripts", agent, len(files))
		}
		for _, file := range files {
			name := strings.TrimSuffix(filepath.Base(file), ".jsonl")
			t.Run(agent+"/"+name, func(t *testing.T) {
				evs, session := mapTranscript(t, agent, transcript(t, agent, name, "/work/ws", 12))
				type golden struct {
					Type    core.EventType  `json:"type"`
					Payload json.RawMessage `json:"payload"`
				}
				got := struct {
					CLISessionID string   `json:"cli_session_id"`
					Events       []golden `json:"events"`
				}{CLISessionID: session, Events: []golden{}}
				for _, e := range evs {
					b, err := json.Marshal(e.payload)
					if err != nil {
						t.Fatal(err)
					}
					got.Events = append(got.Events, golden{e.typ, b})
				}
				gotJSON, _ := json.MarshalIndent(got, "", "  ")
				path := strings.TrimSuffix(file, ".jsonl") + ".events.json"
				if os.Getenv("UPDATE_GOLDEN") == "1" {
					if err := os.WriteFile(path, append(gotJSON, '\n'), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run with UPDATE_GOLDEN=1 to create it)", err)
				}
				if diff := cmp.Diff(strings.TrimSpace(string(want)), string(gotJSON)); diff != "" {
					t.Errorf("events (-want +got):\n%s", diff)
				}
				if name != "failed" && session != sessions[agent] {
					t.Errorf("conversation id = %q, want %q", session, sessions[agent])
				}
			})
		}
	}
}

// TestTranscriptMappingDetails pins what the goldens are for: each CLI's
// tool calls carry name, args and result; edits become file_edit events with
// workspace-relative paths; unknown lines are kept as stdout events.
func TestTranscriptMappingDetails(t *testing.T) {
	t.Parallel()
	byType := func(evs []event, typ core.EventType) []any {
		var out []any
		for _, e := range evs {
			if e.typ == typ {
				out = append(out, e.payload)
			}
		}
		return out
	}
	t.Run("cursor-agent", func(t *testing.T) {
		evs, _ := mapTranscript(t, AgentCursor, transcript(t, AgentCursor, "success", "/work/ws", 0))
		calls := byType(evs, core.EventToolCall)
		if len(calls) != 6 || calls[5].(toolCallPayload).Name != "shell" || !strings.Contains(string(calls[5].(toolCallPayload).Result), `"exitCode":0`) {
			t.Errorf("tool calls: %+v", calls)
		}
		if diff := cmp.Diff([]any{agentEdit{CallID: "toolu_02", Files: []fileChange{{Path: "hello.txt", Status: "modified"}}}}, byType(evs, core.EventFileEdit)); diff != "" {
			t.Errorf("file_edit (-want +got):\n%s", diff)
		}
		if n := len(byType(evs, core.EventStdout)); n != 2 {
			t.Errorf("%d stdout events, want 2 (an unknown type, a plain line)", n)
		}
		follow, _ := mapTranscript(t, AgentCursor, transcript(t, AgentCursor, "follow-up", "/work/ws", 0))
		if edits := byType(follow, core.EventFileEdit); len(edits) != 1 {
			t.Errorf("follow-up: a failed delete made a file_edit: %+v", edits)
		}
	})
	t.Run("claude", func(t *testing.T) {
		evs, _ := mapTranscript(t, AgentClaude, transcript(t, AgentClaude, "success", "/work/ws", 0))
		calls := byType(evs, core.EventToolCall)
		if len(calls) != 6 {
			t.Fatalf("tool calls: %+v", calls)
		}
		done := calls[3].(toolCallPayload)
		if done.Name != "Write" || done.Status != "completed" || !strings.Contains(string(done.Args), "hello.txt") || !strings.Contains(string(done.Result), "File created") {
			t.Errorf("completed Write = %+v", done)
		}
		if diff := cmp.Diff([]any{agentEdit{CallID: "toolu_01B", Files: []fileChange{{Path: "hello.txt", Status: "added"}}}}, byType(evs, core.EventFileEdit)); diff != "" {
			t.Errorf("file_edit (-want +got):\n%s", diff)
		}
		if th := byType(evs, core.EventThinking); len(th) != 1 {
			t.Errorf("thinking: %+v", th)
		}
		follow, _ := mapTranscript(t, AgentClaude, transcript(t, AgentClaude, "follow-up", "/work/ws", 0))
		calls = byType(follow, core.EventToolCall)
		if len(calls) != 4 || calls[3].(toolCallPayload).Status != "failed" {
			t.Errorf("a denied tool call: %+v", calls)
		}
	})
	t.Run("codex", func(t *testing.T) {
		evs, _ := mapTranscript(t, AgentCodex, transcript(t, AgentCodex, "success", "/work/ws", 0))
		calls := byType(evs, core.EventToolCall)
		names := []string{}
		for _, c := range calls {
			names = append(names, c.(toolCallPayload).Name+" "+c.(toolCallPayload).Status)
		}
		if diff := cmp.Diff([]string{"shell started", "shell completed", "mcp__docs__search started", "mcp__docs__search completed", "web_search completed"}, names); diff != "" {
			t.Errorf("tool calls (-want +got):\n%s", diff)
		}
		res := byType(evs, core.EventResult)
		if len(res) != 1 || res[0].(resultPayload).Text != "I added hello.txt with a greeting." || len(res[0].(resultPayload).Usage) == 0 {
			t.Errorf("result: %+v", res)
		}
		if diff := cmp.Diff([]any{errorPayload{Message: "command timed out after 10s; continuing"}}, byType(evs, core.EventError), cmp.AllowUnexported(errorPayload{})); diff != "" {
			t.Errorf("a non-fatal error item (-want +got):\n%s", diff)
		}
		follow, _ := mapTranscript(t, AgentCodex, transcript(t, AgentCodex, "follow-up", "/work/ws", 0))
		want := []any{agentEdit{CallID: "item_8", Files: []fileChange{{Path: "hello.txt", Status: "modified"}, {Path: "old.txt", Status: "deleted"}}}}
		if diff := cmp.Diff(want, byType(follow, core.EventFileEdit)); diff != "" {
			t.Errorf("file_change (-want +got):\n%s", diff)
		}
	})
}

// TestAgentsEndToEnd runs a session on each CLI agent with a stand-in that
// replays its transcripts and records its arguments: the first run starts a
// conversation, the follow-up resumes the CLI's own; the branch is pushed to
// the repository (a bare one on disk, reached as https://github.com/...); the
// fake GitHub receives exactly one pull request, updated by the follow-up.
func TestAgentsEndToEnd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		agent         string
		exe           string
		first, second []string // argv after the executable
		stdin         bool     // the prompt arrives on stdin
		cursorKey     bool
		usage         *core.Usage // what the transcript's result reports
	}{
		{agent: AgentCursor, exe: "cursor-agent",
			first:     []string{"-p", "--output-format", "stream-json", "--force", "--trust", "--model=gpt-5", "--", "Add a greeting to hello.txt"},
			second:    []string{"-p", "--output-format", "stream-json", "--force", "--trust", "--model=gpt-5", "--resume=" + cursorChatID, "--", "Also greet the moon"},
			cursorKey: true, usage: &core.Usage{DurationMS: ptrTo(int64(8421))}},
		{agent: AgentClaude, exe: "claude",
			first:  []string{"-p", "--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits", "--allowedTools", "Bash", "--model=gpt-5"},
			second: []string{"-p", "--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits", "--allowedTools", "Bash", "--model=gpt-5", "--resume=" + claudeSession},
			stdin:  true,
			// Input counts cached tokens too; cost and duration as reported.
			usage: &core.Usage{InputTokens: ptrTo(int64(15372)), OutputTokens: ptrTo(int64(310)), CostUSD: ptrTo(0.0421), DurationMS: ptrTo(int64(14233))}},
		{agent: AgentCodex, exe: "codex",
			first:  []string{"exec", "--json", "--sandbox", "workspace-write", "--model=gpt-5", "-"},
			second: []string{"exec", "--json", "--sandbox", "workspace-write", "--model=gpt-5", "resume", codexThread, "-"},
			stdin:  true,
			usage:  &core.Usage{InputTokens: ptrTo(int64(24763)), OutputTokens: ptrTo(int64(122))}},
	}
	for _, tt := range tests {
		t.Run(tt.agent, func(t *testing.T) {
			t.Parallel()
			gh := newFakeGitHub(t)
			repo := newHostedRepo(t, fakeGitHubRoot, "github.com", "acme")
			bin, logs := t.TempDir(), t.TempDir()
			r := agentRuntime(t, tt.agent, bin, gh.srv.URL, gh.token)
			spec := newSpec(repo.url, "main", "Add a greeting to hello.txt")
			spec.Session.ModelID = "gpt-5"
			spec.Session.AutoCreatePR = true
			spec.CursorAPIKey = "cursor-key-0123456789"
			ws := filepath.Join(r.root, spec.Session.ID)
			branch := "flapjack/" + spec.Session.ID
			standIn(t, bin, tt.exe, logs, transcript(t, tt.agent, "success", ws, 0))
			if err := r.prepare(context.Background(), spec); err != nil {
				t.Fatal(err)
			}
			sink := newSink(t)
			out, err := r.Execute(context.Background(), spec, sink)
			if err != nil {
				t.Fatal(err)
			}
			wantURL := "https://github.com/acme/" + strings.TrimSuffix(filepath.Base(repo.bare), ".git") + "/pull/1"
			wantOut := core.RunOutcome{Status: core.MessageFinished, ResultText: out.ResultText, DurationMS: out.DurationMS, PRURL: wantURL, PRBranch: branch, Usage: tt.usage}
			if diff := cmp.Diff(wantOut, out); diff != "" || !strings.Contains(out.ResultText, "hello.txt") {
				t.Errorf("first outcome (-want +got):\n%s", diff)
			}
			c := readCall(t, logs, 1)
			if diff := cmp.Diff(tt.first, c.argv); diff != "" {
				t.Errorf("first argv (-want +got):\n%s", diff)
			}
			if wantStdin := map[bool]string{true: spec.Prompt}[tt.stdin]; c.stdin != wantStdin {
				t.Errorf("first stdin = %q, want %q", c.stdin, wantStdin)
			}
			if wantKey := map[bool]string{true: spec.CursorAPIKey, false: "<unset>"}[tt.cursorKey]; c.cursorKey != wantKey {
				t.Errorf("CURSOR_API_KEY = %q, want %q", c.cursorKey, wantKey)
			}
			for _, typ := range []core.EventType{core.EventAssistant, core.EventToolCall, core.EventResult, core.EventFileEdit, core.EventPR} {
				if len(sink.payloads(t, typ)) == 0 {
					t.Errorf("no %s event", typ)
				}
			}
			if errs := sink.payloads(t, core.EventError); tt.agent != AgentCodex && len(errs) != 0 {
				t.Errorf("error events: %v", errs)
			}
			head := git(t, ws, "rev-parse", "HEAD")
			if got := repo.branch(t, branch); got != head {
				t.Errorf("origin's %s = %q, want the run's commit %s", branch, got, head)
			}
			prs := gh.pulls()
			if len(prs) != 1 {
				t.Fatalf("%d pull requests, want 1", len(prs))
			}
			pr := prs[0]
			if pr.Head != branch || pr.Base != "main" || pr.Title != "Add a greeting to hello.txt" ||
				!strings.Contains(pr.Body, spec.Session.ID) || !strings.Contains(pr.Body, spec.Message.ID) || !strings.Contains(pr.Body, "`hello.txt` (added)") {
				t.Errorf("pull request = %+v", pr)
			}
			// octocat opened it, and GitHub does not let the author review: no
			// reviewer, and no error either.
			if len(pr.Reviewers) != 0 || gh.count("POST /repos/acme/"+filepath.Base(strings.TrimSuffix(repo.bare, ".git"))+"/pulls/1/requested_reviewers") != 1 {
				t.Errorf("review request: reviewers %v, calls %d", pr.Reviewers, gh.count("POST"))
			}
			prEvents := sink.payloads(t, core.EventPR)
			if len(prEvents) != 1 || prEvents[0]["action"] != "created" || prEvents[0]["url"] != wantURL || prEvents[0]["branch"] != branch {
				t.Errorf("pr events: %v", prEvents)
			}

			// The follow-up resumes the CLI's conversation and updates the
			// same pull request.
			follow := followUp(spec, "Also greet the moon")
			standIn(t, bin, tt.exe, logs, transcript(t, tt.agent, "follow-up", ws, 0))
			sink2 := newSink(t)
			out2, err := r.Execute(context.Background(), follow, sink2)
			if err != nil || out2.Status != core.MessageFinished || out2.PRURL != wantURL || out2.PRBranch != branch {
				t.Fatalf("follow-up: %+v, %v", out2, err)
			}
			c = readCall(t, logs, 2)
			if diff := cmp.Diff(tt.second, c.argv); diff != "" {
				t.Errorf("follow-up argv (-want +got):\n%s", diff)
			}
			if got := repo.branch(t, branch); got != git(t, ws, "rev-parse", "HEAD") || got == head {
				t.Errorf("the follow-up's commit was not pushed: origin has %s", got)
			}
			prs = gh.pulls()
			if len(prs) != 1 || !strings.Contains(prs[0].LastPatch, follow.Message.ID) || prs[0].Title != "Add a greeting to hello.txt" {
				t.Errorf("after the follow-up: %+v", prs)
			}
			if ev := sink2.payloads(t, core.EventPR); len(ev) != 1 || ev[0]["action"] != "updated" {
				t.Errorf("follow-up pr events: %v", ev)
			}
			if b, _ := os.ReadFile(filepath.Join(ws, "hello.txt")); string(b) != "Hello, world!\nHello, moon!\n" {
				t.Errorf("hello.txt = %q", b)
			}
		})
	}
}

// TestAgentTranscriptOutcomes runs the failing and odd transcripts of each
// CLI through Execute: how a run ends, and that its work is kept.
func TestAgentTranscriptOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		agent, exe, name string
		wantStatus       core.MessageStatus
		wantErr          string // prefix
		check            func(t *testing.T, sink *fakeSink, ws string)
	}{
		{agent: AgentCursor, exe: "cursor-agent", name: "failed", wantStatus: core.MessageError,
			wantErr: "agent exited with status 1:\nError: Authentication required."},
		{agent: AgentClaude, exe: "claude", name: "failed", wantStatus: core.MessageError,
			wantErr: "agent exited with status 1:\nInvalid API key · Please run /login"},
		{agent: AgentClaude, exe: "claude", name: "max-turns", wantStatus: core.MessageError,
			wantErr: "the agent reported a failure: error_max_turns"},
		{agent: AgentCodex, exe: "codex", name: "turn-failed", wantStatus: core.MessageError,
			wantErr: "agent exited with status 1:\nunexpected status 401 Unauthorized"},
		{agent: AgentCodex, exe: "codex", name: "follow-up", wantStatus: core.MessageFinished}, // an error it recovered from
		{agent: AgentCursor, exe: "cursor-agent", name: "killed", wantStatus: core.MessageError, wantErr: "agent was killed by signal 9", check: checkKilled(cursorChatID)},
		{agent: AgentClaude, exe: "claude", name: "killed", wantStatus: core.MessageError, wantErr: "agent was killed by signal 9", check: checkKilled(claudeSession)},
		{agent: AgentCodex, exe: "codex", name: "killed", wantStatus: core.MessageError, wantErr: "agent was killed by signal 9", check: checkKilled(codexThread)},
		{agent: AgentCursor, exe: "cursor-agent", name: "long-line", wantStatus: core.MessageFinished, check: checkLongLine("content")},
		{agent: AgentClaude, exe: "claude", name: "long-line", wantStatus: core.MessageFinished, check: checkLongLine("")},
		{agent: AgentCodex, exe: "codex", name: "long-line", wantStatus: core.MessageFinished, check: checkLongLine("output")},
		{agent: AgentCursor, exe: "cursor-agent", name: "bad-utf8", wantStatus: core.MessageFinished, check: checkBadUTF8},
		{agent: AgentClaude, exe: "claude", name: "bad-utf8", wantStatus: core.MessageFinished, check: checkBadUTF8},
		{agent: AgentCodex, exe: "codex", name: "bad-utf8", wantStatus: core.MessageFinished, check: checkBadUTF8},
	}
	o := makeOrigin(t)
	for _, tt := range tests {
		t.Run(tt.agent+"/"+tt.name, func(t *testing.T) {
			t.Parallel()
			bin, logs := t.TempDir(), t.TempDir()
			r := agentRuntime(t, tt.agent, bin, "", "")
			spec := newSpec(o.dir, "main", "p")
			ws := filepath.Join(r.root, spec.Session.ID)
			standIn(t, bin, tt.exe, logs, transcript(t, tt.agent, tt.name, ws, padBytes))
			if err := r.prepare(context.Background(), spec); err != nil {
				t.Fatal(err)
			}
			sink := newSink(t)
			out, err := r.Execute(context.Background(), spec, sink)
			if err != nil {
				t.Fatal(err)
			}
			if out.Status != tt.wantStatus || !strings.HasPrefix(out.Error, tt.wantErr) {
				t.Errorf("outcome = %s %q, want %s %q…", out.Status, out.Error, tt.wantStatus, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, sink, ws)
			}
		})
	}
}

// checkKilled: the partial last line is kept as stdout, the file the agent
// wrote before it died is committed, and its conversation id is recorded so
// a follow-up resumes it.
func checkKilled(id string) func(t *testing.T, sink *fakeSink, ws string) {
	return func(t *testing.T, sink *fakeSink, ws string) {
		lines := sink.lines(t, core.EventStdout)
		if len(lines) != 1 || !strings.HasPrefix(lines[0], `{"type":`) {
			t.Errorf("stdout events: %q", lines)
		}
		if got := git(t, ws, "log", "-1", "--format=%s", "--", "partial.txt"); got != "p" {
			t.Errorf("the killed agent's work was not committed: %q", got)
		}
		rs, err := openState(ws)
		if err != nil || rs.get().CLISession != id {
			t.Errorf("recorded conversation = %+v, %v; want %s", rs.get(), err, id)
		}
	}
}

// checkLongLine: a line over 1 MiB arrives whole, as a typed event.
func checkLongLine(field string) func(t *testing.T, sink *fakeSink, ws string) {
	return func(t *testing.T, sink *fakeSink, ws string) {
		var longest int
		for _, e := range sink.all() {
			if e.Type == core.EventToolCall && len(e.Payload) > longest {
				longest = len(e.Payload)
			}
		}
		if longest < padBytes || longest > padBytes+4096 {
			t.Errorf("largest tool_call payload is %d bytes, want about %d", longest, padBytes)
		}
		if n := len(sink.lines(t, core.EventStdout)); n != 0 {
			t.Errorf("%d stdout events: the long line was not parsed", n)
		}
	}
}

// checkBadUTF8: invalid bytes become U+FFFD, in typed events and plain lines.
func checkBadUTF8(t *testing.T, sink *fakeSink, ws string) {
	var texts []string
	for _, p := range sink.payloads(t, core.EventAssistant) {
		texts = append(texts, p["text"].(string))
	}
	if diff := cmp.Diff([]string{"caf\uFFFD \uFFFD ok"}, texts); diff != "" {
		t.Errorf("assistant (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"raw bytes \uFFFD( on a plain line"}, sink.lines(t, core.EventStdout)); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
}

// TestModelParamsAgent: a template's modelParams.agent picks the CLI.
func TestModelParamsAgent(t *testing.T) {
	t.Parallel()
	o := makeOrigin(t)
	bin, logs := t.TempDir(), t.TempDir()
	r := agentRuntime(t, AgentCursor, bin, "", "") // the default is not installed
	spec := newSpec(o.dir, "main", "p")
	spec.Session.ModelParams = map[string]any{"agent": "claude", "thinking": "high"}
	if err := r.prepare(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "claude not found on PATH") {
		t.Fatalf("Prepare without claude installed: %v", err)
	}
	ws := filepath.Join(r.root, spec.Session.ID)
	standIn(t, bin, "claude", logs, transcript(t, AgentClaude, "success", ws, 0))
	if err := r.prepare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	out, err := r.Execute(context.Background(), spec, newSink(t))
	if err != nil || out.Status != core.MessageFinished {
		t.Fatalf("outcome %+v, %v", out, err)
	}
	if c := readCall(t, logs, 1); len(c.argv) == 0 || c.argv[0] != "-p" || c.stdin != "p" {
		t.Errorf("claude was called with %q", c.argv)
	}
	spec2 := newSpec(o.dir, "main", "p")
	spec2.Session.ModelParams = map[string]any{"agent": "aider"}
	if err := r.prepare(context.Background(), spec2); err == nil || !strings.Contains(err.Error(), "modelParams.agent aider is not a local agent") {
		t.Errorf("unknown modelParams.agent: %v", err)
	}
}

func TestReadyNamesWhatIsMissing(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	for _, tt := range []struct {
		agent, want string
	}{
		{AgentCursor, "agent or cursor-agent not found on PATH; install Cursor's CLI"},
		{AgentClaude, "claude not found on PATH; install Claude Code (npm install -g @anthropic-ai/claude-code)"},
		{AgentCodex, "codex not found on PATH; install Codex (npm install -g @openai/codex)"},
	} {
		r := agentRuntime(t, tt.agent, bin, "", "")
		if err := r.Ready(); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s: Ready = %v, want %q…", tt.agent, err, tt.want)
		}
	}
	// Found on the search path; a directory of that name is not an executable.
	if err := os.Mkdir(filepath.Join(bin, "claude"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := agentRuntime(t, AgentClaude, bin, "", "").Ready(); err == nil {
		t.Error("a directory named claude counts as the executable")
	}
	writeFile(t, filepath.Join(bin, "codex"), "#!/bin/sh\n")
	if err := agentRuntime(t, AgentCodex, bin, "", "").Ready(); err == nil {
		t.Error("a file that is not executable counts")
	}
	if err := os.Chmod(filepath.Join(bin, "codex"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := agentRuntime(t, AgentCodex, bin, "", "").Ready(); err != nil {
		t.Errorf("codex on the search path: %v", err)
	}
	// FLAPJACK_LOCAL_AGENT_BIN replaces the search.
	r, err := New(Config{WorkspaceRoot: t.TempDir(), Agent: AgentCursor, Bin: filepath.Join(bin, "codex"), SearchPath: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Ready(); err != nil {
		t.Errorf("with Bin: %v", err)
	}
	r, _ = New(Config{WorkspaceRoot: t.TempDir(), Agent: AgentCursor, Bin: filepath.Join(bin, "nope")})
	if err := r.Ready(); err == nil || !strings.Contains(err.Error(), "FLAPJACK_LOCAL_AGENT_BIN="+filepath.Join(bin, "nope")) {
		t.Errorf("a missing Bin: %v", err)
	}
}

// TestRunsRecordTheirAgent: a run's first event names the agent CLI, its path
// and its --version; the runtime lists the agents it finds.
func TestRunsRecordTheirAgent(t *testing.T) {
	t.Parallel()
	o := makeOrigin(t)
	bin, logs := t.TempDir(), t.TempDir()
	r := agentRuntime(t, AgentClaude, bin, "", "")
	spec := newSpec(o.dir, "main", "p")
	ws := filepath.Join(r.root, spec.Session.ID)
	exe := standIn(t, bin, "claude", logs, transcript(t, AgentClaude, "success", ws, 0))
	if err := r.prepare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	sink := newSink(t)
	if _, err := r.Execute(context.Background(), spec, sink); err != nil {
		t.Fatal(err)
	}
	first := sink.all()[0]
	var p agentInfoPayload
	if err := json.Unmarshal(first.Payload, &p); err != nil || first.Type != core.EventAgent {
		t.Fatalf("first event %s %s", first.Type, first.Payload)
	}
	if p.Agent != AgentClaude || p.Path != exe || p.Version != "stand-in 1.0.0" {
		t.Errorf("agent event = %+v", p)
	}
	found := map[string]AgentInfo{}
	for _, a := range r.Agents(context.Background()) {
		found[a.Name] = a
	}
	if a := found[AgentClaude]; a.Path != exe || a.Version != "stand-in 1.0.0" || a.Missing != "" {
		t.Errorf("claude = %+v", a)
	}
	if a := found[AgentCodex]; a.Missing == "" || !strings.Contains(a.Missing, "npm install -g @openai/codex") {
		t.Errorf("codex = %+v, want it missing with an install hint", a)
	}
}

// TestBadAgentIsRefusedEarly: through the Service, a template or start
// naming an unknown agent, or one that is not installed, is a
// VALIDATION_ERROR on modelParams saying what to install; an installed one
// is accepted even when the default agent is missing.
func TestBadAgentIsRefusedEarly(t *testing.T) {
	bin := t.TempDir()
	r := agentRuntime(t, AgentCursor, bin, "", "") // the default is not installed
	h := newHarness(t, plainOrigin(t), nil, "/bin/true")
	svc := core.NewService(core.ServiceConfig{Store: h.st, Box: h.box, Runtimes: map[string]core.Runtime{core.RuntimeLocal: r}, DefaultRuntime: core.RuntimeLocal})
	ctx := context.Background()
	repo := plainOrigin(t)
	create := func(params map[string]any) error {
		_, err := svc.CreateAgent(ctx, h.actor, core.CreateAgentInput{AgentFields: core.AgentFields{DefaultRepoURL: &repo, ModelParams: params}})
		return err
	}
	for _, tc := range []struct {
		params map[string]any
		want   string
	}{
		{map[string]any{"agent": "aider"}, "not a local agent"},
		{map[string]any{"agent": "codex"}, "npm install -g @openai/codex"},
		{map[string]any{"agent": "claude-acp", "permissions": "everything"}, "claude-code-acp"},
	} {
		err := create(tc.params)
		var e *core.Error
		if !errors.As(err, &e) || e.Code != core.CodeValidation || e.Field != "modelParams" || !strings.Contains(e.Message, tc.want) {
			t.Errorf("create with %v = %v, want VALIDATION_ERROR on modelParams saying %q", tc.params, err, tc.want)
		}
	}
	standIn(t, bin, "claude", t.TempDir(), "/dev/null")
	if err := create(map[string]any{"agent": "claude"}); err != nil {
		t.Errorf("create with an installed agent: %v", err)
	}
	ag, err := svc.CreateAgent(ctx, h.actor, core.CreateAgentInput{AgentFields: core.AgentFields{DefaultRepoURL: &repo, ModelParams: map[string]any{"agent": "claude"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: ag.ID, Prompt: "x", ModelParams: map[string]any{"agent": "codex"}}); core.ErrorCode(err) != core.CodeValidation {
		t.Errorf("start naming a missing agent = %v, want VALIDATION_ERROR", err)
	}
	if _, err := svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: ag.ID, Prompt: "x"}); err != nil {
		t.Errorf("start with the template's installed agent: %v", err)
	}
}

func ptrTo[T any](v T) *T { return &v }
