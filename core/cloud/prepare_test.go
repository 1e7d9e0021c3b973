package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flapjack-dev/flapjack/core"
)

// spec builds the RunSpec the runner would give for one message.
func (e *env) spec(sessionID, messageID string) core.RunSpec {
	e.t.Helper()
	ctx := context.Background()
	ss, err := e.st.GetSession(ctx, sessionID)
	if err != nil {
		e.t.Fatal(err)
	}
	msgs, err := e.st.ListMessages(ctx, sessionID)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, m := range msgs {
		if m.ID == messageID {
			return core.RunSpec{Session: ss, Message: m, Prompt: ss.Preamble + "\n\n" + m.Prompt, CursorAPIKey: fakeKey}
		}
	}
	e.t.Fatalf("no message %s", messageID)
	return core.RunSpec{}
}

// setUpstream records the session's Cursor agent and latest run.
func (e *env) setUpstream(sessionID, agentID, runID string) {
	e.t.Helper()
	ctx := context.Background()
	ss, err := e.st.GetSession(ctx, sessionID)
	if err != nil {
		e.t.Fatal(err)
	}
	ss.CursorAgentID, ss.LatestRunID = &agentID, &runID
	if _, err := e.st.Apply(ctx, core.Change{Session: ss}); err != nil {
		e.t.Fatal(err)
	}
}

// saveCall and loadCall write and read the journal as a runner would.
func (e *env) saveCall(c core.UpstreamCall) {
	e.t.Helper()
	if err := e.st.SaveUpstreamCall(context.Background(), c); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) loadCall(sessionID, messageID string) (core.UpstreamCall, bool) {
	e.t.Helper()
	c, ok, err := e.st.GetUpstreamCall(context.Background(), sessionID, messageID)
	if err != nil {
		e.t.Fatal(err)
	}
	return c, ok
}

// TestPrepareReusesJournaledResult: a create call whose result was journaled
// but never recorded by the runner is answered from the journal, without
// calling Cursor.
func TestPrepareReusesJournaledResult(t *testing.T) {
	e := newEnv(t, "empty")
	st := e.start("Go")
	e.saveCall(core.UpstreamCall{SessionID: st.SessionID, MessageID: st.MessageID, StartedAt: time.Now(), AgentID: "bc-1", RunID: "run-1"})
	got, err := e.runtime().Prepare(context.Background(), e.spec(st.SessionID, st.MessageID))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(core.RunStart{CursorAgentID: "bc-1", RunID: "run-1"}, got); diff != "" {
		t.Errorf("RunStart (-want +got):\n%s", diff)
	}
	if r := e.fake.allRequests(); len(r) != 0 {
		t.Errorf("%d calls to Cursor, want none", len(r))
	}
}

// TestRecoveryPicksTheOnlyPossibleAgent: recovery after a crash during the
// create call adopts the agent on the session's own branch only: agents on
// the same repository with the same settings at the same time (one a user
// started in Cursor itself), or on another session's branch, are never taken.
func TestRecoveryPicksTheOnlyPossibleAgent(t *testing.T) {
	e := newEnv(t, "empty")
	other := e.start("Another session")
	st := e.start("Go")
	now := time.Now().UTC()
	e.fake.addAgent(now.Add(time.Second), testRepo, true, true, "")                             // the user's, from Cursor's UI
	e.fake.addAgent(now.Add(time.Second), testRepo, true, true, "feature/login")                // the user's, on a branch
	e.fake.addAgent(now.Add(time.Second), testRepo, true, true, SessionBranch(other.SessionID)) // another session's
	ours := e.fake.addAgent(now.Add(2*time.Second), "git@github.com:acme/app.git", true, true, SessionBranch(st.SessionID))
	_, oursRun := e.fake.agentInfo(3)
	e.saveCall(core.UpstreamCall{SessionID: st.SessionID, MessageID: st.MessageID, StartedAt: now})

	got, err := e.runtime().Prepare(context.Background(), e.spec(st.SessionID, st.MessageID))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(core.RunStart{CursorAgentID: ours, RunID: oursRun}, got); diff != "" {
		t.Errorf("RunStart (-want +got):\n%s", diff)
	}
	if n := len(e.fake.requestsTo(routeCreate)); n != 0 {
		t.Errorf("%d create calls, want 0", n)
	}
	if ent, _ := e.loadCall(st.SessionID, st.MessageID); ent.AgentID != ours || ent.RunID != oursRun {
		t.Errorf("journal after recovery %+v", ent)
	}
}

// TestRecoveryNeverAdoptsTheUsersAgent: an agent the user started in Cursor
// on the same repository, with the same settings, just after the crash, is
// not taken for the session's: the session's own is created.
func TestRecoveryNeverAdoptsTheUsersAgent(t *testing.T) {
	e := newEnv(t, "empty")
	st := e.start("Go")
	now := time.Now().UTC()
	users := e.fake.addAgent(now.Add(time.Second), testRepo, true, true, "")
	e.saveCall(core.UpstreamCall{SessionID: st.SessionID, MessageID: st.MessageID, StartedAt: now})
	got, err := e.runtime().Prepare(context.Background(), e.spec(st.SessionID, st.MessageID))
	if err != nil {
		t.Fatal(err)
	}
	if got.CursorAgentID == users || e.fake.agentCount() != 2 {
		t.Errorf("adopted %s (the user's is %s), %d agents upstream", got.CursorAgentID, users, e.fake.agentCount())
	}
	creates := e.fake.requestsTo(routeCreate)
	if len(creates) != 1 || !strings.Contains(string(creates[0].Body), `"branchName":"`+SessionBranch(st.SessionID)+`"`) {
		t.Errorf("create calls %d, first body %s", len(creates), creates[0].Body)
	}
}

// TestRecoveryFindingNothingCreates: if the interrupted create call never
// reached Cursor, the agent is created now, once.
func TestRecoveryFindingNothingCreates(t *testing.T) {
	e := newEnv(t, "empty")
	st := e.start("Go")
	e.saveCall(core.UpstreamCall{SessionID: st.SessionID, MessageID: st.MessageID, StartedAt: time.Now()})
	got, err := e.runtime().Prepare(context.Background(), e.spec(st.SessionID, st.MessageID))
	if err != nil {
		t.Fatal(err)
	}
	id, run := e.fake.agentInfo(0)
	if got.CursorAgentID != id || got.RunID != run || e.fake.agentCount() != 1 {
		t.Errorf("RunStart %+v, agents %d", got, e.fake.agentCount())
	}
	if n := len(e.fake.requestsTo(routeList)); n != 1 {
		t.Errorf("%d list calls, want 1", n)
	}
}

// TestCreate5xxChecksBeforeRetrying: a 5xx on create may come from a gateway
// after the agent was made, so the runtime lists agents before creating again.
func TestCreate5xxChecksBeforeRetrying(t *testing.T) {
	e := newEnv(t, "create-5xx")
	st := e.start("Go")
	if _, err := e.runtime().Prepare(context.Background(), e.spec(st.SessionID, st.MessageID)); err != nil {
		t.Fatal(err)
	}
	var calls []string
	for _, r := range e.fake.allRequests() {
		calls = append(calls, r.Pattern)
	}
	if diff := cmp.Diff([]string{routeCreate, routeList, routeCreate}, calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]time.Duration{time.Second}, e.sleeper.waits()); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
	if n := e.fake.agentCount(); n != 1 {
		t.Errorf("%d agents, want 1", n)
	}
}

// TestCreateRefusedKeepsCursorsError: a 4xx on create is final: the error
// carries Cursor's code and message, and the journal entry is dropped.
func TestCreateRefusedKeepsCursorsError(t *testing.T) {
	e := newEnv(t, "empty")
	e.fake.queue(routeCreate, fakeResponse{Status: 400, Error: &errorData{Code: "invalid_model", Message: "Unknown model composer-2"}})
	st := e.start("Go")
	_, err := e.runtime().Prepare(context.Background(), e.spec(st.SessionID, st.MessageID))
	if err == nil || !strings.Contains(err.Error(), "400 invalid_model: Unknown model composer-2") {
		t.Errorf("Prepare = %v, want Cursor's code and message", err)
	}
	if n := len(e.fake.allRequests()); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
	if _, ok := e.loadCall(st.SessionID, st.MessageID); ok {
		t.Error("journal entry left for a create that certainly did nothing")
	}
	if err != nil && strings.Contains(err.Error(), fakeKey) {
		t.Error("the error holds the key")
	}
}

// followUpEnv is a session whose first run r1 finished on agent a, with a
// queued follow-up message.
func followUpEnv(t *testing.T) (e *env, sessionID, messageID, agent, r1 string) {
	e = newEnv(t, "empty")
	st := e.start("Go")
	agent = e.fake.addAgent(time.Now().Add(-time.Hour), testRepo, true, true, SessionBranch(st.SessionID))
	_, r1 = e.fake.agentInfo(0)
	e.fake.setRunStatus(r1, RunFinished)
	e.setUpstream(st.SessionID, agent, r1)
	res, err := e.svc.SendMessage(context.Background(), e.actor, st.SessionID, "Again")
	if err != nil {
		t.Fatal(err)
	}
	return e, st.SessionID, res.MessageID, agent, r1
}

// TestFollowUpRecoveredAfterCrash: a follow-up run created just before a
// crash is found (the agent's latest run is new) instead of sent twice.
func TestFollowUpRecoveredAfterCrash(t *testing.T) {
	e, sid, mid, agent, _ := followUpEnv(t)
	now := time.Now().UTC()
	e.saveCall(core.UpstreamCall{SessionID: sid, MessageID: mid, AgentID: agent, StartedAt: now})
	r2 := e.fake.addRun(agent, now.Add(time.Second), RunRunning)
	got, err := e.runtime().Prepare(context.Background(), e.spec(sid, mid))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(core.RunStart{CursorAgentID: agent, RunID: r2}, got); diff != "" {
		t.Errorf("RunStart (-want +got):\n%s", diff)
	}
	if n := len(e.fake.requestsTo(routeRuns)); n != 0 {
		t.Errorf("%d follow-up calls, want 0", n)
	}
}

// TestFollowUpUnknownOutcomeIsChecked: after a 502 on the follow-up call, the
// agent's latest run is checked (still the previous one) before sending again.
func TestFollowUpUnknownOutcomeIsChecked(t *testing.T) {
	e, sid, mid, agent, r1 := followUpEnv(t)
	e.fake.queue(routeRuns, fakeResponse{Status: 502})
	got, err := e.runtime().Prepare(context.Background(), e.spec(sid, mid))
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	for _, r := range e.fake.allRequests() {
		calls = append(calls, r.Pattern)
	}
	if diff := cmp.Diff([]string{routeRuns, routeAgent, routeRuns}, calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if _, latest := e.fake.agentInfo(0); got.RunID != latest || got.RunID == r1 || got.CursorAgentID != agent {
		t.Errorf("RunStart %+v, latest run %s", got, latest)
	}
}

// TestFollowUpOnArchivedAgent: Cursor's agent_archived is final and says what to do.
func TestFollowUpOnArchivedAgent(t *testing.T) {
	e, sid, mid, agent, _ := followUpEnv(t)
	e.fake.archiveAgent(agent)
	_, err := e.runtime().Prepare(context.Background(), e.spec(sid, mid))
	if err == nil || !strings.Contains(err.Error(), "archived in Cursor") {
		t.Errorf("Prepare = %v, want the agent_archived explanation", err)
	}
}

// TestCreateRequestMapsSettings: "auto" omits the model; model params become
// sorted {id, value} pairs; the PR and branch flags are always sent, and the
// branch named after the session.
func TestCreateRequestMapsSettings(t *testing.T) {
	tests := []struct {
		name string
		s    core.Session
		want string
	}{{
		name: "auto",
		s:    core.Session{ID: "cs-1", ModelID: "auto", ModelParams: map[string]any{"thinking": "high"}, RepoURL: testRepo, StartingRef: "main", WorkOnCurrentBranch: true},
		want: `{"prompt":{"text":"p"},"repos":[{"url":"https://github.com/acme/app","startingRef":"main"}],"branchName":"flapjack/cs-1","autoCreatePR":false,"skipReviewerRequest":false,"workOnCurrentBranch":true}`,
	}, {
		name: "model without params",
		s:    core.Session{ID: "cs-1", ModelID: "composer-2", RepoURL: testRepo, StartingRef: "dev", AutoCreatePR: true},
		want: `{"prompt":{"text":"p"},"model":{"id":"composer-2"},"repos":[{"url":"https://github.com/acme/app","startingRef":"dev"}],"branchName":"flapjack/cs-1","autoCreatePR":true,"skipReviewerRequest":false,"workOnCurrentBranch":false}`,
	}, {
		name: "model with params",
		s:    core.Session{ID: "cs-1", ModelID: "composer-2", ModelParams: map[string]any{"z": true, "a": 1}, RepoURL: testRepo, StartingRef: "main"},
		want: `{"prompt":{"text":"p"},"model":{"id":"composer-2","params":[{"id":"a","value":1},{"id":"z","value":true}]},"repos":[{"url":"https://github.com/acme/app","startingRef":"main"}],"branchName":"flapjack/cs-1","autoCreatePR":false,"skipReviewerRequest":false,"workOnCurrentBranch":false}`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := json.Marshal(createRequest(core.RunSpec{Session: tt.s, Prompt: "p"}))
			if diff := cmp.Diff(tt.want, string(b)); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBusyFollowUpStopsWhenCancelled: a follow-up waiting out agent_busy is
// not sent once its session was cancelled meanwhile.
func TestBusyFollowUpStopsWhenCancelled(t *testing.T) {
	e, sid, mid, _, _ := followUpEnv(t)
	e.fake.queue(routeRuns, fakeResponse{Status: 409, Error: &errorData{Code: "agent_busy", Message: "busy"}})
	e.tweak = func(c *Config) {
		c.Sleep = func(ctx context.Context, d time.Duration) error {
			_, err := e.svc.Cancel(ctx, e.actor, sid)
			return err
		}
	}
	_, err := e.runtime().Prepare(context.Background(), e.spec(sid, mid))
	if err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Errorf("Prepare = %v, want it to stop because of the cancel", err)
	}
	if n := len(e.fake.requestsTo(routeRuns)); n != 1 {
		t.Errorf("%d follow-up calls, want 1 (the busy one)", n)
	}
}

// TestImportJournalDir: the call journal an older flapjack kept as files
// moves into the database, so a create in flight across the upgrade is still
// recovered rather than repeated; a damaged file stays where it is, named in
// the error, and nothing else is lost.
func TestImportJournalDir(t *testing.T) {
	e := newEnv(t, "empty")
	ctx := context.Background()
	dir := filepath.Join(e.dataDir, "cloud")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	started := time.Date(2026, 5, 6, 12, 0, 0, 123e6, time.UTC)
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ses_a.msg_1.json", `{"session_id":"ses_a","message_id":"msg_1","started_at":"2026-05-06T12:00:00.123Z"}`)
	write("ses_b.msg_2.json", `{"session_id":"ses_b","message_id":"msg_2","started_at":"2026-05-06T12:00:00.123Z","agent_id":"bc-2","run_id":"run-2"}`)
	write("ses_c.msg_3.json", `{"session_id":`)

	n, err := ImportJournalDir(ctx, dir, e.st)
	if n != 2 || err == nil || !strings.Contains(err.Error(), "ses_c.msg_3.json") {
		t.Fatalf("import = %d, %v; want 2 and an error naming the damaged file", n, err)
	}
	got, err := e.st.ListUpstreamCalls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []core.UpstreamCall{
		{SessionID: "ses_a", MessageID: "msg_1", StartedAt: started},
		{SessionID: "ses_b", MessageID: "msg_2", StartedAt: started, AgentID: "bc-2", RunID: "run-2"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("journal after import (-want +got):\n%s", diff)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if diff := cmp.Diff([]string{filepath.Join(dir, "ses_c.msg_3.json")}, left); diff != "" {
		t.Errorf("files left (-want +got):\n%s", diff)
	}

	// Once the damaged file is dealt with, the directory goes too.
	os.Remove(filepath.Join(dir, "ses_c.msg_3.json"))
	if n, err := ImportJournalDir(ctx, dir, e.st); n != 0 || err != nil {
		t.Errorf("second import = %d, %v", n, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the empty journal directory stayed: %v", err)
	}
	// A data directory that never had one is nothing to do.
	if n, err := ImportJournalDir(ctx, dir, e.st); n != 0 || err != nil {
		t.Errorf("import without a directory = %d, %v", n, err)
	}
}
