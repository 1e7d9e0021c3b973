//go:build unix

package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/google/go-cmp/cmp"
)

func TestExecuteMapsEventsAndCommits(t *testing.T) {
	t.Parallel()
	r, spec, ws := prepared(t, "  Add the agent file\nwith details on the second line")
	spec.Prompt = "You are careful.\n\n" + spec.Message.Prompt // the preamble is not the subject
	sink := newSink(t)
	before := git(t, ws, "rev-parse", "HEAD")

	out, err := r.Execute(context.Background(), spec, sink)
	if err != nil {
		t.Fatal(err)
	}
	// The origin is a repository on this machine: the branch is pushed to it,
	// and no pull request is tried.
	branch := "flapjack/" + spec.Session.ID
	d := int64(1234)
	if diff := cmp.Diff(core.RunOutcome{Status: core.MessageFinished, ResultText: "all done", DurationMS: 1234, PRBranch: branch, Usage: &core.Usage{DurationMS: &d}}, out); diff != "" {
		t.Errorf("outcome (-want +got):\n%s", diff)
	}

	// Events from stdout keep their order; stderr interleaves freely.
	var types []core.EventType
	for _, e := range sink.all() {
		if e.MessageID != spec.Message.ID || e.CursorRunID != spec.RunID || !e.CreatedAt.Equal(testT0) {
			t.Errorf("event %s: message %q, run %q, at %v", e.Type, e.MessageID, e.CursorRunID, e.CreatedAt)
		}
		if e.Type != core.EventStderr {
			types = append(types, e.Type)
		}
	}
	wantTypes := []core.EventType{core.EventAgent, core.EventAssistant, core.EventStdout, core.EventToolCall, core.EventToolCall,
		core.EventAssistant, core.EventResult, core.EventFileEdit}
	if diff := cmp.Diff(wantTypes, types); diff != "" {
		t.Errorf("event types (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"progress on stderr"}, sink.lines(t, core.EventStderr)); diff != "" {
		t.Errorf("stderr (-want +got):\n%s", diff)
	}
	calls := sink.payloads(t, core.EventToolCall)
	if len(calls) == 2 && (calls[0]["name"] != "write" || calls[1]["status"] != "completed") {
		t.Errorf("tool calls: %v", calls)
	}

	head := git(t, ws, "rev-parse", "HEAD")
	wantEdit := map[string]any{
		"commit": head,
		"branch": "flapjack/" + spec.Session.ID,
		"files":  []any{map[string]any{"path": "agent.txt", "status": "added"}},
	}
	if diff := cmp.Diff([]map[string]any{wantEdit}, sink.payloads(t, core.EventFileEdit)); diff != "" {
		t.Errorf("file_edit (-want +got):\n%s", diff)
	}
	if got := git(t, ws, "rev-parse", "HEAD^"); got != before {
		t.Errorf("commit parent = %s, want the run's start %s", got, before)
	}
	if got := git(t, filepath.Dir(filepath.Dir(ws)), "-C", spec.Session.RepoURL, "rev-parse", branch); got != head {
		t.Errorf("origin's %s = %s, want the run's commit %s", branch, got, head)
	}
	msg := git(t, ws, "log", "-1", "--format=%s%n%b")
	wantMsg := "Add the agent file\nflapjack session " + spec.Session.ID + ", message " + spec.Message.ID
	if msg != wantMsg {
		t.Errorf("commit message = %q, want %q", msg, wantMsg)
	}
	if got := git(t, ws, "log", "-1", "--format=%an <%ae> / %cn <%ce>"); got != "flapjack <flapjack@localhost> / flapjack <flapjack@localhost>" {
		t.Errorf("identity without user.email = %q", got)
	}
	if st := git(t, ws, "status", "--porcelain", "--untracked-files=all"); st != "" {
		t.Errorf("workspace not clean after the run:\n%s", st)
	}

	// A follow-up commits on the same branch, with the workspace's own identity.
	git(t, ws, "config", "user.name", "Me")
	git(t, ws, "config", "user.email", "me@example.com")
	follow := spec
	follow.FollowUp = true
	follow.Message = core.Message{ID: core.NewID(core.PrefixMessage), Prompt: "rm-readme and append again"}
	follow.Prompt = follow.Message.Prompt
	follow.RunID = core.NewID(core.PrefixRun)
	sink2 := newSink(t)
	out, err = r.Execute(context.Background(), follow, sink2)
	if err != nil || out.Status != core.MessageFinished {
		t.Fatalf("follow-up: %+v, %v", out, err)
	}
	if got := git(t, ws, "rev-parse", "HEAD^"); got != head {
		t.Errorf("follow-up commit parent = %s, want the first run's commit %s", got, head)
	}
	if got := git(t, ws, "symbolic-ref", "--short", "HEAD"); got != "flapjack/"+spec.Session.ID {
		t.Errorf("branch after the follow-up = %s", got)
	}
	if got := git(t, ws, "log", "-1", "--format=%s|%an <%ae>"); got != "rm-readme and append again|Me <me@example.com>" {
		t.Errorf("follow-up commit = %q", got)
	}
	edits := sink2.payloads(t, core.EventFileEdit)
	wantFiles := []any{
		map[string]any{"path": "README.md", "status": "deleted"},
		map[string]any{"path": "agent.txt", "status": "modified"},
	}
	if len(edits) != 1 {
		t.Fatalf("follow-up file_edit events: %v", edits)
	}
	if diff := cmp.Diff(wantFiles, edits[0]["files"]); diff != "" {
		t.Errorf("follow-up files (-want +got):\n%s", diff)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "agent.txt")); string(b) != spec.Message.ID+"\n"+follow.Message.ID+"\n" {
		t.Errorf("agent.txt = %q", b)
	}
}

func TestExecuteLongSubject(t *testing.T) {
	t.Parallel()
	prompt := strings.Repeat("ä", 80) + "\nmore"
	r, spec, ws := prepared(t, prompt)
	if _, err := r.Execute(context.Background(), spec, newSink(t)); err != nil {
		t.Fatal(err)
	}
	if got := git(t, ws, "log", "-1", "--format=%s"); got != strings.Repeat("ä", 72) {
		t.Errorf("subject = %q (%d runes), want 72 runes", got, utf8.RuneCountInString(got))
	}
}

func TestExecuteAgentCommits(t *testing.T) {
	t.Parallel()
	r, spec, ws := prepared(t, "selfcommit")
	sink := newSink(t)
	before := git(t, ws, "rev-parse", "HEAD")
	if _, err := r.Execute(context.Background(), spec, sink); err != nil {
		t.Fatal(err)
	}
	if got := git(t, ws, "log", "--format=%s", before+"..HEAD"); got != "selfcommit\nagent's own commit" {
		t.Errorf("commits of the run:\n%s", got)
	}
	edits := sink.payloads(t, core.EventFileEdit)
	wantFiles := []any{
		map[string]any{"path": "left.txt", "status": "added"},
		map[string]any{"path": "self.txt", "status": "added"},
	}
	if len(edits) != 1 {
		t.Fatalf("file_edit events: %v", edits)
	}
	if diff := cmp.Diff(wantFiles, edits[0]["files"]); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}

func TestExecuteNoChange(t *testing.T) {
	t.Parallel()
	r, spec, ws := prepared(t, "nochange")
	sink := newSink(t)
	before := git(t, ws, "rev-parse", "HEAD")
	out, err := r.Execute(context.Background(), spec, sink)
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != core.MessageFinished || out.ResultText != "nothing to do" || out.DurationMS != 5 {
		t.Errorf("outcome = %+v", out)
	}
	if got := git(t, ws, "rev-parse", "HEAD"); got != before {
		t.Error("a run without changes made a commit")
	}
	if edits := sink.payloads(t, core.EventFileEdit); len(edits) != 0 {
		t.Errorf("file_edit without changes: %v", edits)
	}
}

func TestExecuteFailingAgent(t *testing.T) {
	t.Parallel()
	r, spec, _ := prepared(t, "fail please")
	sink := newSink(t)
	out, err := r.Execute(context.Background(), spec, sink)
	if err != nil {
		t.Fatal(err)
	}
	want := core.RunOutcome{
		Status:     core.MessageError,
		ResultText: "about to fail",
		Error:      "agent exited with status 3:\nerror line 2\nerror line 3\nerror line 4\nerror line 5\nerror line 6",
		DurationMS: out.DurationMS,
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("outcome (-want +got):\n%s", diff)
	}
	if n := len(sink.lines(t, core.EventStderr)); n != 7 {
		t.Errorf("%d stderr events, want 7", n)
	}
}

func TestExecuteStderrTailIsBounded(t *testing.T) {
	t.Parallel()
	e := &emitter{sink: &fakeSink{}, clock: fixedClock{}}
	for i := 0; i < 10; i++ {
		e.stderrLine("  " + strings.Repeat("é", 1000) + "  ")
		e.stderrLine("   ")
	}
	tail := e.stderrTail()
	if len(tail) > stderrTailBytes || !utf8.ValidString(tail) || strings.HasPrefix(tail, " ") {
		t.Errorf("tail: %d bytes, valid %v", len(tail), utf8.ValidString(tail))
	}
}

func TestExecuteCommandNotFound(t *testing.T) {
	t.Parallel()
	o := makeOrigin(t)
	r := newRuntime(t, filepath.Join(t.TempDir(), "no-such-agent"))
	spec := newSpec(o.dir, "main", "p")
	if err := r.prepare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	out, err := r.Execute(context.Background(), spec, newSink(t))
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != core.MessageError || !strings.HasPrefix(out.Error, "could not start the agent") {
		t.Errorf("outcome = %+v", out)
	}
}

func TestExecuteWithoutWorkspace(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)
	if _, err := r.Execute(context.Background(), newSpec("/nowhere", "main", "p"), newSink(t)); err == nil {
		t.Error("Execute without a workspace: no error")
	}
}

func TestExecuteSetHandleFails(t *testing.T) {
	t.Parallel()
	r, spec, _ := prepared(t, "sleep")
	sink := newSink(t)
	sink.handleErr = errors.New("database is locked")
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		_, err = r.Execute(context.Background(), spec, sink)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Execute did not stop an agent it could not track")
	}
	if err == nil || !strings.Contains(err.Error(), "database is locked") {
		t.Errorf("Execute error = %v", err)
	}
	h, _ := parseHandle(sink.handle())
	eventually(t, "the agent to be gone", func() bool { return !running(h.PID) })
}

func TestExecuteOutputEdgeCases(t *testing.T) {
	t.Parallel()
	o := makeOrigin(t)
	r := newRuntime(t)
	run := func(t *testing.T, prompt string) *fakeSink {
		spec := newSpec(o.dir, "main", prompt)
		if err := r.prepare(context.Background(), spec); err != nil {
			t.Fatal(err)
		}
		sink := newSink(t)
		out, err := r.Execute(context.Background(), spec, sink)
		if err != nil || out.Status != core.MessageFinished {
			t.Fatalf("outcome %+v, %v", out, err)
		}
		return sink
	}
	t.Run("bigline", func(t *testing.T) {
		t.Parallel()
		lines := run(t, "bigline").lines(t, core.EventStdout)
		if len(lines) != 1 || lines[0] != strings.Repeat("a", 2<<20) {
			t.Errorf("got %d lines, first %d bytes", len(lines), len(lines[0]))
		}
	})
	t.Run("hugeline", func(t *testing.T) {
		t.Parallel()
		lines := run(t, "hugeline").lines(t, core.EventStdout)
		want := strings.Repeat("b", maxLineBytes) + " [flapjack: line truncated, 1048576 bytes dropped]"
		if len(lines) != 2 || lines[0] != want || lines[1] != "after" {
			t.Errorf("got %d lines", len(lines))
		}
	})
	t.Run("badutf8", func(t *testing.T) {
		t.Parallel()
		sink := run(t, "badutf8")
		if diff := cmp.Diff([]string{"bad \uFFFD bytes"}, sink.lines(t, core.EventStdout)); diff != "" {
			t.Errorf("stdout (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"err \uFFFD"}, sink.lines(t, core.EventStderr)); diff != "" {
			t.Errorf("stderr (-want +got):\n%s", diff)
		}
	})
	t.Run("spam", func(t *testing.T) {
		t.Parallel()
		texts := run(t, "spam 3000").payloads(t, core.EventAssistant)
		if len(texts) != 3000 {
			t.Fatalf("%d assistant events, want 3000", len(texts))
		}
		for i, p := range texts {
			if want := "line " + strconv.Itoa(i+1); p["text"] != want {
				t.Fatalf("event %d = %v, want %q", i, p["text"], want)
			}
		}
	})
}

func TestExecutePromptNeverAnArgument(t *testing.T) {
	t.Parallel()
	prompt := "--help -rf args\n-x"
	r, spec, _ := prepared(t, prompt)
	sink := newSink(t)
	if _, err := r.Execute(context.Background(), spec, sink); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"argc=0", "stdin=--help -rf args", "-x"}, sink.lines(t, core.EventStdout)); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
}

// TestExecuteEnv changes the process environment, so it does not run in parallel.
func TestExecuteEnv(t *testing.T) {
	t.Setenv("CURSOR_API_KEY", "runner-own-key-123")
	t.Setenv("FLAPJACK_MASTER_KEY", "master-key-value")
	o := makeOrigin(t)
	r := newRuntime(t)
	run := func(key, prompt string) (core.RunSpec, []string) {
		spec := newSpec(o.dir, "main", prompt)
		spec.CursorAPIKey = key
		if err := r.prepare(context.Background(), spec); err != nil {
			t.Fatal(err)
		}
		sink := newSink(t)
		if _, err := r.Execute(context.Background(), spec, sink); err != nil {
			t.Fatal(err)
		}
		return spec, sink.lines(t, core.EventStdout)
	}
	spec, lines := run("", "env")
	want := []string{
		"CURSOR_API_KEY=<unset>",
		"FLAPJACK_MASTER_KEY=<unset>",
		"FLAPJACK_SESSION_ID=" + spec.Session.ID,
		"FLAPJACK_MESSAGE_ID=" + spec.Message.ID,
		"FLAPJACK_MODEL=test-model",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("without a key (-want +got):\n%s", diff)
	}
	// With a key the agent gets it; printed, it is redacted.
	_, lines = run("session-key-abcdef", "env")
	if len(lines) == 0 || lines[0] != "CURSOR_API_KEY=[REDACTED]" {
		t.Errorf("with a key: %q", lines)
	}
	_, lines = run("session-key-abcdef", "print-key")
	if diff := cmp.Diff([]string{"[REDACTED]"}, lines); diff != "" {
		t.Errorf("print-key (-want +got):\n%s", diff)
	}
}

func TestExecuteRunsNoWorkspaceHooks(t *testing.T) {
	t.Parallel()
	r, spec, ws := prepared(t, "hooks")
	sink := newSink(t)
	out, err := r.Execute(context.Background(), spec, sink)
	if err != nil || out.Status != core.MessageFinished {
		t.Fatalf("outcome %+v, %v", out, err)
	}
	if got := git(t, ws, "log", "-1", "--format=%s", "--", "hooked.txt"); got != "hooks" {
		t.Errorf("change not committed: %q", got)
	}
	for _, f := range []string{"hook-ran", "fsmonitor-ran"} {
		if _, err := os.Stat(filepath.Join(r.root, f)); err == nil {
			t.Errorf("the runner ran the agent's %s", f)
		}
	}
	// The check above can fail: a plain git commit does run them.
	writeFile(t, filepath.Join(ws, "more.txt"), "x")
	git(t, ws, "add", "-A")
	git(t, ws, "commit", "-q", "-m", "plain")
	for _, f := range []string{"hook-ran", "fsmonitor-ran"} {
		if _, err := os.Stat(filepath.Join(r.root, f)); err != nil {
			t.Errorf("the test agent's %s does not work: %v", f, err)
		}
	}
}

func TestDemoAgent(t *testing.T) {
	t.Parallel()
	demo, err := filepath.Abs("../../testdata/agents/demo-agent.sh")
	if err != nil {
		t.Fatal(err)
	}
	o := makeOrigin(t)
	r := newRuntime(t, demo)
	spec := newSpec(o.dir, "main", `Write "hello" \ to the notes`+"\nsecond line")
	// The agent gets the preamble first; its notes record the message alone.
	spec.Session.Preamble = "You are careful."
	spec.Prompt = spec.Session.Preamble + "\n\n" + spec.Message.Prompt
	if err := r.prepare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	sink := newSink(t)
	out, err := r.Execute(context.Background(), spec, sink)
	if err != nil || out.Status != core.MessageFinished || !strings.Contains(out.ResultText, "demo agent") {
		t.Fatalf("outcome %+v, %v", out, err)
	}
	texts := sink.payloads(t, core.EventAssistant)
	if len(texts) != 1 || !strings.Contains(texts[0]["text"].(string), "flapjack demo agent") {
		t.Errorf("assistant events: %v", texts)
	}
	var types []core.EventType
	for _, e := range sink.all() {
		types = append(types, e.Type)
	}
	want := []core.EventType{core.EventAgent, core.EventAssistant, core.EventToolCall, core.EventToolCall, core.EventResult, core.EventFileEdit}
	if diff := cmp.Diff(want, types); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	ws := filepath.Join(r.root, spec.Session.ID)
	if b, _ := os.ReadFile(filepath.Join(ws, "NOTES.md")); string(b) != "- flapjack demo agent was asked: Write hello  to the notes\n" {
		t.Errorf("NOTES.md = %q", b)
	}
}

func TestExecuteAlreadyCancelled(t *testing.T) {
	t.Parallel()
	r, spec, _ := prepared(t, "p")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sink := newSink(t)
	out, err := r.Execute(ctx, spec, sink)
	if err != nil || out.Status != core.MessageError || out.Error != "cancelled" {
		t.Errorf("outcome %+v, %v", out, err)
	}
	if h := sink.handle(); h != "" {
		t.Errorf("an agent was started: handle %q", h)
	}
}
