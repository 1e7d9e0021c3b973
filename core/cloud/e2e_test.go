package cloud

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flapjack-dev/flapjack/core"
)

// wantPRRunLog is the log of a session whose first run is pr-run.sse.
func wantPRRunLog(run string) []logLine {
	return []logLine{
		line(core.EventStatus, "pending", ""),
		line(core.EventUserMessage, `{"prompt":"Fix the login bug"}`, ""),
		line(core.EventStatus, "creating", ""),
		line(core.EventStatus, "running", ""),
		line(core.EventThinking, `{"text":"The expiry check compares seconds with milliseconds."}`, run),
		line(core.EventAssistant, `{"text":"Let me look at src/auth.ts."}`, run),
		line(core.EventToolCall, `{"call_id":"call-1","name":"read_file","tool":"read_file","path":"src/auth.ts","status":"running","args":{"path":"src/auth.ts"},"result":null,"truncated":false}`, run),
		line(core.EventToolCall, `{"call_id":"call-1","name":"read_file","tool":"read_file","path":"src/auth.ts","status":"completed","args":{"path":"src/auth.ts"},"result":{"content":"export function expired(exp) {"},"truncated":true}`, run),
		line(core.EventAssistant, `{"text":"Found it: the check is off by one hour."}`, run),
		line(core.EventToolCall, `{"call_id":"call-2","name":"edit_file","tool":"edit_file","path":"src/auth.ts","status":"running","args":{"path":"src/auth.ts"},"result":null,"truncated":false}`, run),
		line(core.EventToolCall, `{"call_id":"call-2","name":"edit_file","tool":"edit_file","status":"completed","args":null,"result":{"ok":true},"truncated":false}`, run),
		line(core.EventAssistant, `{"text":"Fixed it and opened a PR."}`, run),
		line(core.EventResult, `{"run_status":"FINISHED","text":"Fixed the off-by-one in the JWT expiry check.","duration_ms":4200,"branch":"cursor/fix-jwt-expiry","pr_url":"https://github.com/acme/app/pull/42"}`, run),
		line(core.EventStatus, "finished", ""),
	}
}

func jsonBody(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("request body %s: %v", raw, err)
	}
	return m
}

func statuses(log []logLine) []string {
	var out []string
	for _, l := range log {
		if l.Type == core.EventStatus {
			out = append(out, l.Payload.(string))
		}
	}
	return out
}

// TestSessionRunsOnCursor: a session started through the Service runs on the
// (fake) Cursor API under a real Runner and store: pending → creating →
// running → finished, the create request carries the session's settings, the
// stream becomes coalesced events in order without gaps, the PR lands on the
// session and message, and a follow-up is a new run of the same agent.
func TestSessionRunsOnCursor(t *testing.T) {
	e := newEnv(t, "pr-run")
	e.startRunner()
	ctx := context.Background()
	st := e.start("Fix the login bug")
	d := e.waitStatus(st.SessionID, core.StatusFinished)

	creates := e.fake.requestsTo(routeCreate)
	if len(creates) != 1 {
		t.Fatalf("%d create calls, want 1", len(creates))
	}
	wantCreate := map[string]any{
		"prompt": map[string]any{"text": "Be brief.\n\nFix the login bug"},
		"model": map[string]any{"id": "composer-2", "params": []any{
			map[string]any{"id": "effort", "value": 2.0},
			map[string]any{"id": "thinking", "value": "high"},
		}},
		"repos":               []any{map[string]any{"url": testRepo, "startingRef": "main"}},
		"branchName":          "flapjack/" + st.SessionID,
		"autoCreatePR":        true,
		"skipReviewerRequest": true,
		"workOnCurrentBranch": false,
	}
	if diff := cmp.Diff(wantCreate, jsonBody(t, creates[0].Body)); diff != "" {
		t.Errorf("create request body (-want +got):\n%s", diff)
	}
	agentID, runID := e.fake.agentInfo(0)
	if deref(d.CursorAgentID) != agentID || deref(d.LatestRunID) != runID {
		t.Errorf("session agent/run = %s/%s, want %s/%s", deref(d.CursorAgentID), deref(d.LatestRunID), agentID, runID)
	}
	if deref(d.PRURL) != "https://github.com/acme/app/pull/42" || deref(d.PRBranch) != "cursor/fix-jwt-expiry" {
		t.Errorf("session PR = %s on %s", deref(d.PRURL), deref(d.PRBranch))
	}
	m := d.Messages[0]
	if deref(m.CursorRunID) != runID || deref(m.ResultText) != "Fixed the off-by-one in the JWT expiry check." ||
		m.DurationMS == nil || *m.DurationMS != 4200 || deref(m.PRURL) != "https://github.com/acme/app/pull/42" {
		t.Errorf("message = run %s, result %q, duration %v, pr %s", deref(m.CursorRunID), deref(m.ResultText), m.DurationMS, deref(m.PRURL))
	}
	if diff := cmp.Diff(wantPRRunLog(runID), e.log(st.SessionID)); diff != "" {
		t.Errorf("event log (-want +got):\n%s", diff)
	}

	// A follow-up is POST /v1/agents/{id}/runs with the prompt, preamble first.
	if _, err := e.svc.SendMessage(ctx, e.actor, st.SessionID, "Also add a test."); err != nil {
		t.Fatal(err)
	}
	d = e.waitFor(st.SessionID, "the follow-up to finish", func(d core.SessionDetail) bool {
		return d.Status == core.StatusFinished && len(d.Messages) == 2 && d.Messages[1].Status == core.MessageFinished
	})
	runs := e.fake.requestsTo(routeRuns)
	if len(runs) != 1 || runs[0].Path != "/v1/agents/"+agentID+"/runs" {
		t.Fatalf("follow-up calls = %+v", runs)
	}
	if diff := cmp.Diff(map[string]any{"prompt": map[string]any{"text": "Be brief.\n\nAlso add a test."}}, jsonBody(t, runs[0].Body)); diff != "" {
		t.Errorf("follow-up body (-want +got):\n%s", diff)
	}
	_, run2 := e.fake.agentInfo(0)
	if m := d.Messages[1]; deref(m.CursorRunID) != run2 || deref(m.ResultText) != "Added a regression test." || *m.DurationMS != 1500 {
		t.Errorf("follow-up message = run %s, result %q", deref(m.CursorRunID), deref(m.ResultText))
	}
	if deref(d.LatestRunID) != run2 || deref(d.CursorAgentID) != agentID {
		t.Errorf("session after follow-up: agent %s run %s", deref(d.CursorAgentID), deref(d.LatestRunID))
	}
	wantTail := []logLine{
		line(core.EventUserMessage, `{"prompt":"Also add a test."}`, ""),
		line(core.EventStatus, "creating", ""),
		line(core.EventStatus, "running", ""),
		line(core.EventAssistant, `{"text":"Added a test."}`, run2),
		line(core.EventResult, `{"run_status":"FINISHED","text":"Added a regression test.","duration_ms":1500,"branch":"cursor/fix-jwt-expiry","pr_url":"https://github.com/acme/app/pull/42"}`, run2),
		line(core.EventStatus, "finished", ""),
	}
	log := e.log(st.SessionID)
	if diff := cmp.Diff(wantTail, log[len(wantPRRunLog(runID)):]); diff != "" {
		t.Errorf("follow-up events (-want +got):\n%s", diff)
	}

	// Every call carried the key as Basic user name and our User-Agent.
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(fakeKey+":"))
	for _, r := range e.fake.allRequests() {
		if r.Header.Get("Authorization") != auth || r.Header.Get("User-Agent") != "flapjack/1.2.3" {
			t.Errorf("%s %s: Authorization %q, User-Agent %q", r.Method, r.Path, r.Header.Get("Authorization"), r.Header.Get("User-Agent"))
		}
	}
	// The key is in no event.
	for _, ev := range e.events(st.SessionID) {
		if strings.Contains(string(ev.Payload), fakeKey) {
			t.Errorf("event %d holds the key", ev.Seq)
		}
	}
}

// TestFollowUpQueuedWhileRunning: a follow-up sent while the run is active is
// queued and sent as a new run only when the current run has ended, so Cursor
// never has to answer agent_busy.
func TestFollowUpQueuedWhileRunning(t *testing.T) {
	e := newEnv(t, "pr-run")
	e.fake.closeGate("mid")
	e.startRunner()
	st := e.start("Fix the login bug")
	<-e.fake.reached("mid")
	if _, err := e.svc.SendMessage(context.Background(), e.actor, st.SessionID, "Also add a test."); err != nil {
		t.Fatal(err)
	}
	if n := len(e.fake.requestsTo(routeRuns)); n != 0 {
		t.Fatalf("%d follow-up calls while the first run is active, want 0", n)
	}
	e.fake.openGate("mid")
	d := e.waitFor(st.SessionID, "both messages to finish", func(d core.SessionDetail) bool {
		return d.Status == core.StatusFinished && len(d.Messages) == 2 && d.Messages[1].Status == core.MessageFinished
	})
	if n := len(e.fake.requestsTo(routeRuns)); n != 1 {
		t.Errorf("%d follow-up calls, want 1", n)
	}
	if w := e.sleeper.waits(); len(w) != 0 {
		t.Errorf("waited %v: the follow-up met agent_busy", w)
	}
	if deref(d.Messages[1].ResultText) != "Added a regression test." {
		t.Errorf("follow-up result %q", deref(d.Messages[1].ResultText))
	}
}

// TestDroppedStreamResumes: a dropped connection is reopened with
// Last-Event-ID set to the last event read, and the assistant message that
// was cut in two is still logged whole, once.
func TestDroppedStreamResumes(t *testing.T) {
	e := newEnv(t, "dropped")
	e.startRunner()
	st := e.start("Read the code")
	d := e.waitStatus(st.SessionID, core.StatusFinished)
	var ids []string
	for _, r := range e.fake.requestsTo(routeStream) {
		ids = append(ids, r.Header.Get("Last-Event-ID"))
	}
	if diff := cmp.Diff([]string{"", "1767323300000-2", "1767323300100-2"}, ids); diff != "" {
		t.Errorf("Last-Event-ID of each stream request (-want +got):\n%s", diff)
	}
	run := deref(d.LatestRunID)
	want := []logLine{
		line(core.EventStatus, "pending", ""),
		line(core.EventUserMessage, `{"prompt":"Read the code"}`, ""),
		line(core.EventStatus, "creating", ""),
		line(core.EventStatus, "running", ""),
		line(core.EventAssistant, `{"text":"Reading the code."}`, run),
		line(core.EventToolCall, `{"call_id":"call-1","name":"read_file","tool":"read_file","path":"main.go","status":"running","args":{"path":"main.go"},"result":null,"truncated":false}`, run),
		line(core.EventToolCall, `{"call_id":"call-1","name":"read_file","tool":"read_file","status":"completed","args":null,"result":{"content":"package main"},"truncated":false}`, run),
		line(core.EventResult, `{"run_status":"FINISHED","text":"Read the code.","duration_ms":700}`, run),
		line(core.EventStatus, "finished", ""),
	}
	if diff := cmp.Diff(want, e.log(st.SessionID)); diff != "" {
		t.Errorf("event log (-want +got):\n%s", diff)
	}
}

// TestExpiredStreamIsPolled: after 410 stream_expired the run is polled until
// it is terminal, and the outcome (result, duration, PR) comes from the run.
func TestExpiredStreamIsPolled(t *testing.T) {
	e := newEnv(t, "expired")
	e.startRunner()
	st := e.start("Refactor the parser")
	d := e.waitStatus(st.SessionID, core.StatusFinished)
	streams := e.fake.requestsTo(routeStream)
	if len(streams) != 2 || streams[1].Header.Get("Last-Event-ID") != "1767323400000-2" {
		t.Fatalf("stream requests = %d (second Last-Event-ID %q), want 2 resuming after 1767323400000-2", len(streams), streams[len(streams)-1].Header.Get("Last-Event-ID"))
	}
	if n := len(e.fake.requestsTo(routeRun)); n != 3 {
		t.Errorf("%d polls, want 3 (RUNNING, RUNNING, FINISHED)", n)
	}
	if diff := cmp.Diff([]time.Duration{time.Second, DefaultPollInterval, DefaultPollInterval}, e.sleeper.waits()); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
	run := deref(d.LatestRunID)
	log := e.log(st.SessionID)
	want := []logLine{
		line(core.EventAssistant, `{"text":"Working on it."}`, run),
		line(core.EventResult, `{"run_status":"FINISHED","text":"Refactored the parser.","duration_ms":86400000,"branch":"cursor/refactor-parser","pr_url":"https://github.com/acme/app/pull/7","partial_stream":true}`, run),
		line(core.EventStatus, "finished", ""),
	}
	if diff := cmp.Diff(want, log[4:]); diff != "" {
		t.Errorf("event log after running (-want +got):\n%s", diff)
	}
	m := d.Messages[0]
	if deref(m.ResultText) != "Refactored the parser." || *m.DurationMS != 86400000 || deref(d.PRURL) != "https://github.com/acme/app/pull/7" {
		t.Errorf("outcome: result %q duration %v PR %s", deref(m.ResultText), *m.DurationMS, deref(d.PRURL))
	}
	if ss, _ := e.st.GetSession(context.Background(), st.SessionID); ss.StreamPosition != polledPosition {
		t.Errorf("stream position %q, want %q", ss.StreamPosition, polledPosition)
	}
}

// TestFailedRuns: an ERROR run ends the session in error with Cursor's code
// and message, or says explicitly that Cursor gave no cause.
func TestFailedRuns(t *testing.T) {
	tests := []struct {
		scenario  string
		wantError string
		wantLog   []logLine // after the running status, without run ids
	}{{
		scenario:  "error-no-cause",
		wantError: "the Cursor run ended with status ERROR and Cursor gave no cause",
		wantLog: []logLine{
			line(core.EventAssistant, `{"text":"Trying."}`, ""),
			line(core.EventResult, `{"run_status":"ERROR","text":"","duration_ms":0}`, ""),
			line(core.EventError, `{"message":"the Cursor run ended with status ERROR and Cursor gave no cause"}`, ""),
			line(core.EventStatus, "error", ""),
		},
	}, {
		scenario:  "error-with-cause",
		wantError: "the Cursor run failed: upstream_error: The model provider is unavailable",
		wantLog: []logLine{
			line(core.EventAssistant, `{"text":"Starting."}`, ""),
			line(core.EventError, `{"code":"upstream_error","message":"The model provider is unavailable"}`, ""),
			line(core.EventResult, `{"run_status":"ERROR","text":"","duration_ms":300}`, ""),
			line(core.EventError, `{"message":"the Cursor run failed: upstream_error: The model provider is unavailable"}`, ""),
			line(core.EventStatus, "error", ""),
		},
	}}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			e := newEnv(t, tt.scenario)
			e.startRunner()
			st := e.start("Try")
			d := e.waitStatus(st.SessionID, core.StatusError)
			if deref(d.Error) != tt.wantError || deref(d.Messages[0].Error) != tt.wantError {
				t.Errorf("session error %q, message error %q, want %q", deref(d.Error), deref(d.Messages[0].Error), tt.wantError)
			}
			log := e.log(st.SessionID)[4:]
			for i := range log {
				log[i].Run = ""
			}
			if diff := cmp.Diff(tt.wantLog, log); diff != "" {
				t.Errorf("event log after running (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRateLimitedCallsWaitRetryAfter: a 429 on create and a 503 on the stream
// are retried after exactly the Retry-After Cursor sent.
func TestRateLimitedCallsWaitRetryAfter(t *testing.T) {
	e := newEnv(t, "rate-limited")
	e.startRunner()
	st := e.start("Go")
	e.waitStatus(st.SessionID, core.StatusFinished)
	if n := len(e.fake.requestsTo(routeCreate)); n != 2 {
		t.Errorf("%d create calls, want 2", n)
	}
	if n := len(e.fake.requestsTo(routeStream)); n != 2 {
		t.Errorf("%d stream calls, want 2", n)
	}
	if n := e.fake.agentCount(); n != 1 {
		t.Errorf("%d agents, want 1", n)
	}
	if diff := cmp.Diff([]time.Duration{7 * time.Second, 2 * time.Second}, e.sleeper.waits()); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
}

// TestAgentBusyFollowUpWaits: agent_busy on a follow-up is waited out and
// retried; the user sees a finished message, never an error.
func TestAgentBusyFollowUpWaits(t *testing.T) {
	e := newEnv(t, "busy-follow-up")
	e.startRunner()
	st := e.start("Go")
	e.waitStatus(st.SessionID, core.StatusFinished)
	if _, err := e.svc.SendMessage(context.Background(), e.actor, st.SessionID, "Again"); err != nil {
		t.Fatal(err)
	}
	d := e.waitFor(st.SessionID, "the follow-up to finish", func(d core.SessionDetail) bool {
		return d.Status == core.StatusFinished && len(d.Messages) == 2 && d.Messages[1].Status == core.MessageFinished
	})
	if n := len(e.fake.requestsTo(routeRuns)); n != 3 {
		t.Errorf("%d follow-up calls, want 3", n)
	}
	if diff := cmp.Diff([]time.Duration{5 * time.Second, 10 * time.Second}, e.sleeper.waits()); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
	for _, l := range e.log(st.SessionID) {
		if l.Type == core.EventError {
			t.Errorf("error event %v", l.Payload)
		}
	}
	if d.Messages[1].Error != nil {
		t.Errorf("follow-up error %q", *d.Messages[1].Error)
	}
}

// TestCancel: Cancel through the Service maps to Cursor's cancel call; a
// failure leaves the session running (502 cursor_cancel_failed), a run Cursor
// cannot cancel is 409 CANCEL_UNSUPPORTED, and success cancels the session and
// stops the runner following the run.
func TestCancel(t *testing.T) {
	e := newEnv(t, "cancel")
	e.fake.closeGate("mid")
	e.startRunner()
	ctx := context.Background()
	st := e.start("Fix the login bug")
	<-e.fake.reached("mid")
	e.waitStatus(st.SessionID, core.StatusRunning)
	unchanged := func(step string) {
		t.Helper()
		d, _ := e.svc.GetSession(ctx, e.actor, st.SessionID)
		if d.Status != core.StatusRunning || d.Messages[0].Status != core.MessageRunning {
			t.Errorf("%s: session %s, message %s; want both running", step, d.Status, d.Messages[0].Status)
		}
	}

	_, err := e.svc.Cancel(ctx, e.actor, st.SessionID)
	if c := core.ErrorCode(err); c != core.CodeCursorCancelFailed || c.HTTPStatus() != 502 {
		t.Fatalf("cancel on 500s = %v, want cursor_cancel_failed (502)", err)
	}
	unchanged("after 500s")
	if n := len(e.fake.requestsTo(routeCancel)); n != 1+DefaultMaxRetries {
		t.Errorf("%d cancel calls, want %d", n, 1+DefaultMaxRetries)
	}

	_, err = e.svc.Cancel(ctx, e.actor, st.SessionID)
	if c := core.ErrorCode(err); c != core.CodeCancelUnsupported || c.HTTPStatus() != 409 {
		t.Fatalf("cancel on run_not_cancellable = %v, want CANCEL_UNSUPPORTED (409)", err)
	}
	unchanged("after run_not_cancellable")

	res, err := e.svc.Cancel(ctx, e.actor, st.SessionID)
	if err != nil || res.Status != core.StatusCancelled {
		t.Fatalf("cancel = %+v, %v", res, err)
	}
	d, _ := e.svc.GetSession(ctx, e.actor, st.SessionID)
	if d.Status != core.StatusCancelled || d.Messages[0].Status != core.MessageCancelled {
		t.Errorf("after cancel: session %s, message %s", d.Status, d.Messages[0].Status)
	}
	cancels := e.fake.requestsTo(routeCancel)
	runID := deref(d.LatestRunID)
	if last := cancels[len(cancels)-1]; last.Path != "/v1/agents/"+deref(d.CursorAgentID)+"/runs/"+runID+"/cancel" {
		t.Errorf("cancel path %s", last.Path)
	}
	if s := e.fake.runStatus(runID); s != RunCancelled {
		t.Errorf("upstream run %s, want CANCELLED", s)
	}
	// The runner lets go of the stream and records nothing more.
	deadline := time.Now().Add(5 * time.Second)
	for e.fake.streams.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := e.fake.streams.Load(); n != 0 {
		t.Errorf("%d streams still open after the cancel", n)
	}
	log := e.log(st.SessionID)
	if diff := cmp.Diff([]string{"pending", "creating", "running", "cancelled"}, statuses(log)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	for _, l := range log {
		if l.Type == core.EventError {
			t.Errorf("error event after a cancel: %v", l.Payload)
		}
	}
}

// TestCancelBeforeTheRunExists: a session with no upstream run yet is
// cancelled locally, without calling Cursor.
func TestCancelBeforeTheRunExists(t *testing.T) {
	e := newEnv(t, "empty")
	st := e.start("Go")
	if _, err := e.svc.Cancel(context.Background(), e.actor, st.SessionID); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(st.SessionID, core.StatusCancelled)
	if r := e.fake.allRequests(); len(r) != 0 {
		t.Errorf("%d calls to Cursor, want none", len(r))
	}
	// Archiving it has no agent to archive upstream either.
	if _, err := e.svc.Archive(context.Background(), e.actor, st.SessionID); err != nil {
		t.Fatal(err)
	}
	if r := e.fake.allRequests(); len(r) != 0 {
		t.Errorf("%d calls to Cursor, want none", len(r))
	}
}

// TestArchive: Archive through the Service archives the agent upstream; a
// failure is 502 archive_failed with the session (and its key) unchanged,
// and the retry succeeds and wipes the key.
func TestArchive(t *testing.T) {
	e := newEnv(t, "archive")
	e.startRunner()
	ctx := context.Background()
	st := e.start("Go")
	d := e.waitStatus(st.SessionID, core.StatusFinished)
	agentID := deref(d.CursorAgentID)

	_, err := e.svc.Archive(ctx, e.actor, st.SessionID)
	if c := core.ErrorCode(err); c != core.CodeArchiveFailed || c.HTTPStatus() != 502 {
		t.Fatalf("archive on 500s = %v, want archive_failed (502)", err)
	}
	ss, _ := e.st.GetSession(ctx, st.SessionID)
	if ss.Archived || ss.CursorKeyCiphertext == nil || e.fake.agentStatus(agentID) != "ACTIVE" || ss.ArchivingAt != nil {
		t.Errorf("after a failed archive: archived=%v key kept=%v mark %v upstream %s", ss.Archived, ss.CursorKeyCiphertext != nil, ss.ArchivingAt, e.fake.agentStatus(agentID))
	}
	// As it was: a follow-up is taken at once, not held off by the failed archive.
	if _, err := e.svc.SendMessage(ctx, e.actor, st.SessionID, "after the failed archive"); err != nil {
		t.Fatalf("follow-up after a failed archive = %v", err)
	}
	e.waitStatus(st.SessionID, core.StatusFinished)

	if _, err := e.svc.Archive(ctx, e.actor, st.SessionID); err != nil {
		t.Fatal(err)
	}
	ss, _ = e.st.GetSession(ctx, st.SessionID)
	if !ss.Archived || ss.CursorKeyCiphertext != nil {
		t.Errorf("after archive: archived=%v key kept=%v", ss.Archived, ss.CursorKeyCiphertext != nil)
	}
	if s := e.fake.agentStatus(agentID); s != "ARCHIVED" {
		t.Errorf("upstream agent %s, want ARCHIVED", s)
	}
	archives := e.fake.requestsTo(routeArchive)
	if len(archives) != 2+DefaultMaxRetries || archives[0].Path != "/v1/agents/"+agentID+"/archive" {
		t.Errorf("archive calls: %d, first %s", len(archives), archives[0].Path)
	}
	// Archived: further archives are no-ops that need neither key nor Cursor.
	if _, err := e.svc.Archive(ctx, e.actor, st.SessionID); err != nil {
		t.Errorf("archive again = %v", err)
	}
	if n := len(e.fake.requestsTo(routeArchive)); n != len(archives) {
		t.Errorf("archiving again called Cursor")
	}
}

// TestRunnerRestartLosesNothing: a runner stopped in the middle of a run
// leaves it running upstream; the next runner adopts it, resumes the stream
// after the last event logged, and the log ends up exactly as if nothing had
// happened: no event lost, none twice.
func TestRunnerRestartLosesNothing(t *testing.T) {
	e := newEnv(t, "pr-run")
	e.fake.closeGate("mid")
	stop := e.startRunner()
	st := e.start("Fix the login bug")
	<-e.fake.reached("mid")
	// Wait until everything before the half-read assistant message is logged.
	e.waitFor(st.SessionID, "call-1 to be logged complete", func(core.SessionDetail) bool {
		return slices.ContainsFunc(e.log(st.SessionID), func(l logLine) bool {
			p, _ := l.Payload.(map[string]any)
			return l.Type == core.EventToolCall && p["status"] == "completed"
		})
	})
	stop()

	ss, _ := e.st.GetSession(context.Background(), st.SessionID)
	msgs, _ := e.st.ListMessages(context.Background(), st.SessionID)
	if ss.Status != core.StatusRunning || msgs[0].Status != core.MessageRunning {
		t.Fatalf("after the runner stopped: session %s, message %s; want running", ss.Status, msgs[0].Status)
	}
	if ss.StreamPosition != "1767323045300-1" {
		t.Errorf("stored stream position %q, want the id of the last logged event 1767323045300-1", ss.StreamPosition)
	}

	e.fake.openGate("mid")
	e.startRunner()
	d := e.waitStatus(st.SessionID, core.StatusFinished)
	streams := e.fake.requestsTo(routeStream)
	if len(streams) != 2 || streams[1].Header.Get("Last-Event-ID") != "1767323045300-1" {
		t.Errorf("stream requests %d, resumed with Last-Event-ID %q", len(streams), streams[len(streams)-1].Header.Get("Last-Event-ID"))
	}
	if n := len(e.fake.requestsTo(routeCreate)); n != 1 {
		t.Errorf("%d create calls, want 1", n)
	}
	if diff := cmp.Diff(wantPRRunLog(deref(d.LatestRunID)), e.log(st.SessionID)); diff != "" {
		t.Errorf("event log across the restart (-want +got):\n%s", diff)
	}
	if deref(d.PRURL) != "https://github.com/acme/app/pull/42" {
		t.Errorf("PR %s", deref(d.PRURL))
	}
}

// TestCrashBetweenCreateAndCommit: the runner stops while the create call is
// in flight (Cursor created the agent; the answer never arrived). The next
// runner finds that agent instead of creating a second, and the session runs
// to the end: never stuck in creating.
func TestCrashBetweenCreateAndCommit(t *testing.T) {
	e := newEnv(t, "crash-create")
	stop := e.startRunner()
	st := e.start("Go")
	deadline := time.Now().Add(10 * time.Second)
	for e.fake.agentCount() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	ss, _ := e.st.GetSession(context.Background(), st.SessionID)
	if ss.Status != core.StatusCreating || ss.CursorAgentID != nil {
		t.Fatalf("after the crash: session %s, agent %v; want creating without agent", ss.Status, ss.CursorAgentID)
	}
	if ent, ok := e.loadCall(st.SessionID, st.MessageID); !ok || ent.AgentID != "" {
		t.Fatalf("journal entry %+v (found %v), want one without result", ent, ok)
	}
	if _, err := os.Stat(filepath.Join(e.dataDir, "cloud")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a journal directory beside the database (%v): the journal belongs in the database", err)
	}

	e.startRunner()
	d := e.waitStatus(st.SessionID, core.StatusFinished)
	if n := len(e.fake.requestsTo(routeCreate)); n != 1 {
		t.Errorf("%d create calls, want 1", n)
	}
	if n := e.fake.agentCount(); n != 1 {
		t.Errorf("%d agents upstream, want 1", n)
	}
	if id, _ := e.fake.agentInfo(0); deref(d.CursorAgentID) != id {
		t.Errorf("session agent %s, want %s", deref(d.CursorAgentID), id)
	}
	if diff := cmp.Diff([]string{"pending", "creating", "running", "finished"}, statuses(e.log(st.SessionID))); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if _, ok := e.loadCall(st.SessionID, st.MessageID); ok {
		t.Error("the journal entry outlived the run's start")
	}
}

// TestRecoveryThatCannotDecideFails: when a create call was in flight at a
// crash and several agents are on the session's branch (the create repeated
// by hand), the session ends in error with the reason instead of guessing.
func TestRecoveryThatCannotDecideFails(t *testing.T) {
	e := newEnv(t, "empty")
	st := e.start("Go")
	now := time.Now().UTC()
	e.saveCall(core.UpstreamCall{SessionID: st.SessionID, MessageID: st.MessageID, StartedAt: now})
	a1 := e.fake.addAgent(now.Add(time.Second), testRepo, true, true, SessionBranch(st.SessionID))
	a2 := e.fake.addAgent(now.Add(2*time.Second), testRepo+".git", true, true, SessionBranch(st.SessionID))
	e.startRunner()
	d := e.waitStatus(st.SessionID, core.StatusError)
	if msg := deref(d.Error); !strings.Contains(msg, "2 Cursor agents") || !strings.Contains(msg, a1) || !strings.Contains(msg, a2) {
		t.Errorf("error %q, want it to name both candidate agents", msg)
	}
	if n := len(e.fake.requestsTo(routeCreate)); n != 0 {
		t.Errorf("%d create calls, want 0", n)
	}
}

// TestStartWithoutKey: the cloud runtime needs a key; starting without one is
// a VALIDATION_ERROR that says how to provide it. Local repositories are
// refused too: Cursor cannot clone them.
func TestStartWithoutKey(t *testing.T) {
	e := newEnv(t, "empty")
	ctx := context.Background()
	_, err := e.svc.StartSession(ctx, e.actor, core.StartSessionInput{CodeAgentID: e.agent.ID, Prompt: "Go"})
	ce := core.AsError(err)
	if ce == nil || ce.Code != core.CodeValidation || ce.Field != "cursorApiKey" || !strings.Contains(ce.Message, "CURSOR_API_KEY") {
		t.Errorf("start without key = %v, want VALIDATION_ERROR on cursorApiKey naming CURSOR_API_KEY", err)
	}
	_, err = e.svc.StartSession(ctx, e.actor, core.StartSessionInput{CodeAgentID: e.agent.ID, Prompt: "Go", CursorAPIKey: fakeKey, RepoURL: ptr("file:///srv/repo")})
	if ce := core.AsError(err); ce == nil || ce.Code != core.CodeValidation || ce.Field != "repoUrl" {
		t.Errorf("start on a local repo = %v, want VALIDATION_ERROR on repoUrl", err)
	}
}

// TestArchiveInterleavedWithFollowUp: a follow-up sent at each point of a
// cloud archive. Before the archive marks the session, the follow-up wins
// and the archive is refused with the Cursor agent untouched; from the mark
// on, the follow-up is refused and the archive completes: the agent is
// archived upstream, the session archived and its key wiped. Never an
// archived agent under an active session, or the reverse.
func TestArchiveInterleavedWithFollowUp(t *testing.T) {
	for _, tc := range []struct {
		point       core.Step
		archiveCode core.Code
		sendCode    core.Code
	}{
		{core.StepDecided, core.CodeSessionActive, ""},
		{core.StepArchiveMarked, "", core.CodeSessionArchived},
		{core.StepArchivedUpstream, "", core.CodeSessionArchived},
		{core.StepArchiveCommitted, "", core.CodeSessionArchived},
	} {
		t.Run(string(tc.point), func(t *testing.T) {
			e := newEnv(t, "empty")
			stop := e.startRunner()
			st := e.start("Go")
			d := e.waitStatus(st.SessionID, core.StatusFinished)
			stop()
			agentID := deref(d.CursorAgentID)
			ctx := context.Background()

			var sendErr error
			fired := false
			svc := core.NewService(core.ServiceConfig{Store: e.st, Box: e.box, DefaultRuntime: core.RuntimeCloud,
				Runtimes: map[string]core.Runtime{core.RuntimeCloud: e.runtime()},
				Step: func(p core.Step) {
					if p == tc.point && !fired {
						fired = true
						_, sendErr = e.svc.SendMessage(ctx, e.actor, st.SessionID, "one more thing")
					}
				}})
			_, archiveErr := svc.Archive(ctx, e.actor, st.SessionID)
			if !fired {
				t.Fatalf("the archive never reached %s", tc.point)
			}
			if got := core.ErrorCode(archiveErr); got != tc.archiveCode {
				t.Fatalf("archive = %v, want code %q", archiveErr, tc.archiveCode)
			}
			if got := core.ErrorCode(sendErr); got != tc.sendCode {
				t.Fatalf("follow-up = %v, want code %q", sendErr, tc.sendCode)
			}
			ss, err := e.st.GetSession(ctx, st.SessionID)
			if err != nil {
				t.Fatal(err)
			}
			upstream := e.fake.agentStatus(agentID)
			if tc.archiveCode == "" {
				if !ss.Archived || ss.CursorKeyCiphertext != nil || upstream != "ARCHIVED" || ss.ArchivingAt != nil {
					t.Errorf("archived %v, key kept %v, mark %v, upstream %s; want archived everywhere, key wiped", ss.Archived, ss.CursorKeyCiphertext != nil, ss.ArchivingAt, upstream)
				}
				return
			}
			if ss.Archived || !ss.Status.Active() || ss.CursorKeyCiphertext == nil || upstream != "ACTIVE" || ss.ArchivingAt != nil {
				t.Errorf("status %s, archived %v, key kept %v, mark %v, upstream %s; want the follow-up's active session with its agent and key",
					ss.Status, ss.Archived, ss.CursorKeyCiphertext != nil, ss.ArchivingAt, upstream)
			}
		})
	}
}
