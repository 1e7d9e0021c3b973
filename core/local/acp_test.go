//go:build unix

package local

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/coretest"
)

// acpStandin is the command line of the ACP stand-in agent, written with the
// official TypeScript SDK and run by node.
func acpStandin(t *testing.T) []string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is needed for the ACP stand-in: ", err)
	}
	sdk := filepath.Join(coretest.NPMModules(t), "@agentclientprotocol", "sdk")
	script, err := filepath.Abs(filepath.Join("..", "..", "testdata", "acp", "standin.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	return []string{node, script, sdk}
}

// newACPHarness is a Service and Runner on a local runtime whose agent is
// the ACP stand-in.
func newACPHarness(t *testing.T, policy string) *harness {
	t.Helper()
	h := newHarness(t, plainOrigin(t), nil, acpStandin(t)...)
	rt, err := New(Config{WorkspaceRoot: filepath.Join(t.TempDir(), "workspaces"), Agent: AgentACP, Command: acpStandin(t),
		KillGrace: 2 * time.Second, Sessions: h.st, ACPPermissions: policy, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	h.rt = rt
	h.svc = core.NewService(core.ServiceConfig{Store: h.st, Box: h.box, Runtimes: map[string]core.Runtime{core.RuntimeLocal: rt}, DefaultRuntime: core.RuntimeLocal})
	h.run(t, core.RunnerConfig{})
	return h
}

// payloadsOf decodes the payloads of one event type.
func payloadsOf(t *testing.T, evs []core.Event, typ core.EventType) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, e := range evs {
		if e.Type != typ {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(e.Payload, &m); err != nil {
			t.Fatalf("%s payload: %v", typ, err)
		}
		out = append(out, m)
	}
	return out
}

// TestACPSessionRunsAndFollowsUp: a session on the ACP stand-in runs to
// finished with assistant (coalesced), thinking, plan, tool_call, file_edit,
// permission and kept-unknown events; the file it wrote through
// fs/write_text_file is committed; a follow-up loads the same ACP session in
// the same workspace.
func TestACPSessionRunsAndFollowsUp(t *testing.T) {
	h := newACPHarness(t, "")
	id := h.start(t, "Write the notes")
	d := h.wait(t, id, core.StatusFinished)
	evs := h.events(t, id)
	types := map[core.EventType]int{}
	for _, e := range evs {
		types[e.Type]++
	}
	for _, want := range []core.EventType{core.EventAssistant, core.EventThinking, core.EventPlan, core.EventToolCall, core.EventFileEdit, core.EventPermission, core.EventResult} {
		if types[want] == 0 {
			t.Errorf("no %s event; got %v", want, types)
		}
	}
	assistant := payloadsOf(t, evs, core.EventAssistant)
	if len(assistant) == 0 || assistant[0]["text"] != "Writing the notes." {
		t.Errorf("assistant chunks not coalesced: %v", assistant)
	}
	plans := payloadsOf(t, evs, core.EventPlan)
	if len(plans) != 1 || len(plans[0]["entries"].([]any)) != 2 {
		t.Errorf("plan = %v", plans)
	}
	perms := payloadsOf(t, evs, core.EventPermission)
	if len(perms) != 1 || perms[0]["decision"] != "allow" || perms[0]["option_id"] != "yes" || perms[0]["policy"] != PermissionsWorkspace {
		t.Errorf("permission = %v, want allow with the allow_once option under the workspace policy", perms)
	}
	var sawTool, sawKept, sawFuture bool
	for _, p := range payloadsOf(t, evs, core.EventToolCall) {
		sawTool = sawTool || (p["tool"] == "Write notes.txt" && p["path"] == "notes.txt" && p["kind"] == "edit")
	}
	for _, p := range payloadsOf(t, evs, core.EventStdout) {
		sawKept = sawKept || p["acp_update"] == "available_commands_update"
		sawFuture = sawFuture || p["acp_update"] == "x_future_update"
	}
	if !sawTool || !sawKept || !sawFuture {
		t.Errorf("tool_call with tool/path/kind: %v; known update kept as stdout: %v; unknown kind kept: %v", sawTool, sawKept, sawFuture)
	}
	var firstSession string
	for _, p := range payloadsOf(t, evs, core.EventFileEdit) {
		if diffs, ok := p["diffs"].([]any); ok {
			body := diffs[0].(map[string]any)["new_text"].(string)
			firstSession = strings.TrimPrefix(strings.SplitN(body, "\n", 2)[0], "session ")
		}
	}
	if firstSession == "" {
		t.Fatalf("no file_edit with a diff")
	}
	if d.Messages[0].ResultText == nil || !strings.Contains(*d.Messages[0].ResultText, "Done.") {
		t.Errorf("result text = %v", d.Messages[0].ResultText)
	}
	ws, _ := h.rt.workspace(id)
	if log := git(t, ws, "log", "-1", "--name-only", "--format=%s"); !strings.Contains(log, "notes.txt") {
		t.Errorf("notes.txt not committed: %s", log)
	}

	if _, err := h.svc.SendMessage(context.Background(), h.actor, id, "Again please"); err != nil {
		t.Fatal(err)
	}
	h.wait(t, id, core.StatusFinished)
	evs = h.events(t, id)
	var sessions []string
	for _, p := range payloadsOf(t, evs, core.EventFileEdit) {
		if diffs, ok := p["diffs"].([]any); ok {
			body := diffs[0].(map[string]any)["new_text"].(string)
			sessions = append(sessions, strings.TrimPrefix(strings.SplitN(body, "\n", 2)[0], "session "))
		}
	}
	if len(sessions) != 2 || sessions[1] != firstSession {
		t.Errorf("ACP sessions of the two runs = %v, want the follow-up to load %s", sessions, firstSession)
	}
}

// TestACPPolicyAndFileAccessStayInTheWorkspace: a permission request for a
// path outside the workspace is rejected by the workspace policy, and
// fs/read_text_file outside it is refused to the agent and logged as an error.
func TestACPPolicyAndFileAccessStayInTheWorkspace(t *testing.T) {
	for _, tc := range []struct {
		policy   string
		decision []string
	}{
		{PermissionsWorkspace, []string{"allow", "reject"}},
		{PermissionsAllowAll, []string{"allow", "allow"}},
		{PermissionsReadOnly, []string{"reject", "reject"}},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			h := newACPHarness(t, tc.policy)
			id := h.start(t, "Write the notes, then go outside")
			h.wait(t, id, core.StatusFinished)
			evs := h.events(t, id)
			var got []string
			for _, p := range payloadsOf(t, evs, core.EventPermission) {
				got = append(got, p["decision"].(string))
			}
			if !slices.Equal(got, tc.decision) {
				t.Errorf("decisions = %v, want %v", got, tc.decision)
			}
			var refused bool
			for _, p := range payloadsOf(t, evs, core.EventError) {
				refused = refused || strings.Contains(p["message"].(string), "fs/read_text_file refused")
			}
			var text string
			for _, p := range payloadsOf(t, evs, core.EventAssistant) {
				text += p["text"].(string)
			}
			if !refused || !strings.Contains(text, "read outside: refused") {
				t.Errorf("reading /etc/hostname: refused event %v, agent saw %q", refused, text)
			}
		})
	}
}

// TestACPCancelAsksTheAgentFirst: cancelling a session whose ACP agent is in
// the middle of a turn sends session/cancel (the agent says it got it), the
// turn ends, and the session is cancelled within 5 s.
func TestACPCancelAsksTheAgentFirst(t *testing.T) {
	h := newACPHarness(t, "")
	id := h.start(t, "hang on")
	h.wait(t, id, core.StatusRunning)
	eventually(t, "the agent's turn under way", func() bool { return len(payloadsOf(t, h.events(t, id), core.EventPlan)) > 0 })
	start := time.Now()
	if _, err := h.svc.Cancel(context.Background(), h.actor, id); err != nil {
		t.Fatal(err)
	}
	h.wait(t, id, core.StatusCancelled)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("cancel took %v, want under 5s", took)
	}
	eventually(t, "the run's end recorded", func() bool {
		ss, _ := h.st.GetSession(context.Background(), id)
		return ss.RunHandle == ""
	})
	var asked bool
	for _, e := range h.events(t, id) {
		asked = asked || (e.Type == core.EventStderr && strings.Contains(string(e.Payload), "session/cancel received"))
	}
	if !asked {
		t.Error("the agent never got session/cancel: it was only signalled")
	}
}

// TestACPInsideTheWorkspace: the paths an ACP agent may read and write.
func TestACPInsideTheWorkspace(t *testing.T) {
	ws := t.TempDir()
	outside := t.TempDir()
	writeFile(t, filepath.Join(ws, "a.txt"), "a")
	writeFile(t, filepath.Join(outside, "secret"), "s")
	if err := os.Symlink(outside, filepath.Join(ws, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(ws, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := newACPRun(&Runtime{}, core.RunSpec{}, ws, nil, AgentACP, PermissionsWorkspace, "")
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{filepath.Join(ws, "a.txt"), true},
		{filepath.Join(ws, "new", "dir", "b.txt"), true},
		{filepath.Join(ws, "x", "..", "a.txt"), true},
		{filepath.Join(ws, "..", filepath.Base(outside), "secret"), false},
		{filepath.Join(ws, "link", "secret"), false},
		{filepath.Join(ws, "link", "new.txt"), false},
		{filepath.Join(ws, ".git", "config"), false},
		{"a.txt", false},
		{"/etc/hostname", false},
		{ws, true},
	} {
		_, err := a.inside(tc.path)
		if (err == nil) != tc.ok {
			t.Errorf("inside(%s) = %v, want ok %v", tc.path, err, tc.ok)
		}
	}
}
