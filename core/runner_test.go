package core_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/store"
)

// fakeRuntime is a scriptable core.Runtime: each Execute waits for its script.
type fakeRuntime struct {
	mu       sync.Mutex
	prepared []string
	executed []core.RunSpec
	// notReady is returned by Ready.
	notReady error
	// start is what Prepare returns.
	start core.RunStart
	// onPrepare runs inside Prepare, before it returns.
	onPrepare func()
	// cancels records the sessions Cancel was called with.
	cancels []core.Session
	// prepareErr fails Prepare when set.
	prepareErr error
	// run decides how an Execute behaves; nil finishes at once.
	run func(ctx context.Context, spec core.RunSpec, sink core.RunSink) (core.RunOutcome, error)
}

func (f *fakeRuntime) Name() string           { return core.RuntimeLocal }
func (f *fakeRuntime) NeedsCursorKey() bool   { return false }
func (f *fakeRuntime) AllowsLocalRepos() bool { return true }
func (f *fakeRuntime) Ready() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notReady
}
func (f *fakeRuntime) Prepare(_ context.Context, spec core.RunSpec) (core.RunStart, error) {
	f.mu.Lock()
	hook := f.onPrepare
	f.prepared = append(f.prepared, spec.Message.ID)
	start, err := f.start, f.prepareErr
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return start, err
}

func (f *fakeRuntime) Execute(ctx context.Context, spec core.RunSpec, sink core.RunSink) (core.RunOutcome, error) {
	f.mu.Lock()
	f.executed = append(f.executed, spec)
	run := f.run
	f.mu.Unlock()
	if run == nil {
		sink.Emit(core.EventInput{MessageID: spec.Message.ID, Type: core.EventAssistant, Payload: json.RawMessage(`{"text":"hi"}`), CreatedAt: time.Now()})
		return core.RunOutcome{Status: core.MessageFinished, ResultText: "ok " + spec.Message.Prompt}, nil
	}
	return run(ctx, spec, sink)
}

func (f *fakeRuntime) Cancel(ctx context.Context, s core.Session, mark func(context.Context) error) error {
	f.mu.Lock()
	f.cancels = append(f.cancels, s)
	f.mu.Unlock()
	return mark(ctx)
}
func (f *fakeRuntime) Archive(context.Context, core.Session) error { return nil }

func (f *fakeRuntime) specs() []core.RunSpec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]core.RunSpec(nil), f.executed...)
}

type harness struct {
	st     *store.Store
	dbPath string
	svc    *core.Service
	rt     *fakeRuntime
	box    *core.Box
	actor  core.Actor
	agent  core.CodeAgent
}

// start starts a session of the harness's template with a one-word prompt.
func (h *harness) start(t testing.TB) core.StartResult {
	t.Helper()
	st, err := h.svc.StartSession(context.Background(), h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "x"})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	dbPath := filepath.Join(t.TempDir(), "flapjack.db")
	st, err := store.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key := make([]byte, 32)
	rand.Read(key)
	box, _ := core.NewBox(key)
	owner, err := st.EnsureOwner(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rt := &fakeRuntime{}
	svc := core.NewService(core.ServiceConfig{Store: st, Box: box, Runtimes: map[string]core.Runtime{"local": rt}, DefaultRuntime: "local"})
	h := &harness{st: st, dbPath: dbPath, svc: svc, rt: rt, box: box, actor: core.Actor{UserID: owner.UserID, AllOrgs: true, DefaultOrgID: owner.OrgID}}
	repo := "/srv/repo"
	h.agent, err = svc.CreateAgent(context.Background(), h.actor, core.CreateAgentInput{AgentFields: core.AgentFields{DefaultRepoURL: &repo, Preamble: ptr("Be brief.")}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func ptr[T any](v T) *T { return &v }

// runRunner runs a runner until the test ends.
func (h *harness) runRunner(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	r := core.NewRunner(core.RunnerConfig{Store: h.st, Box: h.box, Runtimes: map[string]core.Runtime{"local": h.rt}, PollInterval: 10 * time.Millisecond})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func (h *harness) waitStatus(t *testing.T, id string, want core.Status) core.SessionDetail {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		d, err := h.svc.GetSession(context.Background(), h.actor, id)
		if err != nil {
			t.Fatal(err)
		}
		if d.Status == want {
			return d
		}
		time.Sleep(10 * time.Millisecond)
	}
	d, _ := h.svc.GetSession(context.Background(), h.actor, id)
	t.Fatalf("session %s is %s, want %s", id, d.Status, want)
	return d
}

func (h *harness) statuses(t *testing.T, id string) []string {
	t.Helper()
	page, err := h.svc.ListEvents(context.Background(), h.actor, id, core.EventsInput{Limit: ptr(500)})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i, e := range page.Events {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
		if e.Type == core.EventStatus {
			var p struct{ Status string }
			json.Unmarshal(e.Payload, &p)
			out = append(out, p.Status)
		}
	}
	return out
}

func TestRunnerRunsSessionAndFollowUpsInOrder(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	release := make(chan struct{})
	h.rt.run = func(ctx context.Context, spec core.RunSpec, sink core.RunSink) (core.RunOutcome, error) {
		if spec.Message.Prompt == "first" {
			<-release
		}
		return core.RunOutcome{Status: core.MessageFinished, ResultText: "did " + spec.Message.Prompt}, nil
	}
	h.runRunner(t)
	st, err := h.svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "first"})
	if err != nil {
		t.Fatal(err)
	}
	h.waitStatus(t, st.SessionID, core.StatusRunning)
	// Two follow-ups while running: queued, run in order, session stays running.
	m2, err := h.svc.SendMessage(ctx, h.actor, st.SessionID, "second")
	if err != nil {
		t.Fatal(err)
	}
	m3, _ := h.svc.SendMessage(ctx, h.actor, st.SessionID, "third")
	close(release)
	d := h.waitStatus(t, st.SessionID, core.StatusFinished)
	var got []string
	for _, s := range h.rt.specs() {
		got = append(got, s.Message.ID+":"+s.Prompt)
	}
	want := []string{st.MessageID + ":Be brief.\n\nfirst", m2.MessageID + ":Be brief.\n\nsecond", m3.MessageID + ":Be brief.\n\nthird"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
	for _, m := range d.Messages {
		if m.Status != core.MessageFinished || m.ResultText == nil || *m.ResultText != "did "+m.Prompt || m.CursorRunID == nil {
			t.Errorf("message %+v", m)
		}
	}
	if diff := cmp.Diff([]string{"pending", "creating", "running", "finished"}, h.statuses(t, st.SessionID)); diff != "" {
		t.Errorf("status events (-want +got):\n%s", diff)
	}
	if specs := h.rt.specs(); specs[0].FollowUp || !specs[1].FollowUp {
		t.Errorf("FollowUp flags = %v, %v; want false, true", specs[0].FollowUp, specs[1].FollowUp)
	}

	// A follow-up on a finished session starts a new run: → creating → running → finished.
	if _, err := h.svc.SendMessage(ctx, h.actor, st.SessionID, "fourth"); err != nil {
		t.Fatal(err)
	}
	h.waitStatus(t, st.SessionID, core.StatusFinished)
	for len(h.rt.specs()) < 4 {
		time.Sleep(10 * time.Millisecond)
	}
	if diff := cmp.Diff([]string{"pending", "creating", "running", "finished", "creating", "running", "finished"}, h.statuses(t, st.SessionID)); diff != "" {
		t.Errorf("status events (-want +got):\n%s", diff)
	}
}

func TestRunnerRecordsFailures(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.rt.run = func(ctx context.Context, spec core.RunSpec, sink core.RunSink) (core.RunOutcome, error) {
		return core.RunOutcome{Status: core.MessageError, Error: "agent exited with status 3"}, nil
	}
	h.runRunner(t)
	st, _ := h.svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "x"})
	d := h.waitStatus(t, st.SessionID, core.StatusError)
	if d.Error == nil || *d.Error != "agent exited with status 3" || d.Messages[0].Status != core.MessageError {
		t.Errorf("session = %+v", d)
	}
	page, _ := h.svc.ListEvents(ctx, h.actor, st.SessionID, core.EventsInput{})
	found := false
	for _, e := range page.Events {
		found = found || e.Type == core.EventError
	}
	if !found {
		t.Error("no error event")
	}
}

func TestRunnerPrepareFailureEndsInError(t *testing.T) {
	h := newHarness(t)
	h.rt.prepareErr = errors.New("starting ref \"nope\" not found")
	h.runRunner(t)
	st, _ := h.svc.StartSession(context.Background(), h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "x"})
	d := h.waitStatus(t, st.SessionID, core.StatusError)
	if d.Error == nil || *d.Error != "preparing the run failed: starting ref \"nope\" not found" {
		t.Errorf("error = %v", d.Error)
	}
	if len(h.rt.specs()) != 0 {
		t.Error("Execute ran after a failed Prepare")
	}
}

func TestRunnerStopsRunWhenCancelled(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	stopped := make(chan struct{})
	h.rt.run = func(ctx context.Context, spec core.RunSpec, sink core.RunSink) (core.RunOutcome, error) {
		<-ctx.Done()
		close(stopped)
		return core.RunOutcome{Status: core.MessageError, Error: "cancelled"}, nil
	}
	h.runRunner(t)
	st, _ := h.svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "x"})
	h.waitStatus(t, st.SessionID, core.StatusRunning)
	queued, _ := h.svc.SendMessage(ctx, h.actor, st.SessionID, "later")
	res, err := h.svc.Cancel(ctx, h.actor, st.SessionID)
	if err != nil || res.Status != core.StatusCancelled {
		t.Fatalf("cancel = %+v, %v", res, err)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the run was not stopped after cancel")
	}
	time.Sleep(100 * time.Millisecond)
	d := h.waitStatus(t, st.SessionID, core.StatusCancelled)
	for _, m := range d.Messages {
		if m.Status != core.MessageCancelled {
			t.Errorf("message %s is %s, want cancelled", m.ID, m.Status)
		}
	}
	if len(h.rt.specs()) != 1 {
		t.Errorf("queued message %s ran after cancel", queued.MessageID)
	}
	if diff := cmp.Diff([]string{"pending", "creating", "running", "cancelled"}, h.statuses(t, st.SessionID)); diff != "" {
		t.Errorf("status events (-want +got):\n%s", diff)
	}
}

// TestRunnerAdoptsOrphanedRun: a session left running by a runner that died is
// handed to the runtime as adopted, and its outcome is recorded.
func TestRunnerAdoptsOrphanedRun(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	st, _ := h.svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "x"})
	// Simulate a runner that got as far as running and died.
	ss, _ := h.st.GetSession(ctx, st.SessionID)
	msgs, _ := h.st.ListMessages(ctx, st.SessionID)
	now := time.Now().UTC()
	ss.Status, msgs[0].Status, msgs[0].StartedAt, msgs[0].CursorRunID = core.StatusRunning, core.MessageRunning, &now, ptr("run-old")
	if _, err := h.st.Apply(ctx, core.Change{Session: ss, Messages: msgs}); err != nil {
		t.Fatal(err)
	}
	h.rt.run = func(ctx context.Context, spec core.RunSpec, sink core.RunSink) (core.RunOutcome, error) {
		if !spec.Adopted || spec.RunID != "run-old" {
			return core.RunOutcome{Status: core.MessageFinished}, nil
		}
		return core.RunOutcome{Status: core.MessageError, Error: "the runner stopped while the agent was running"}, nil
	}
	h.runRunner(t)
	d := h.waitStatus(t, st.SessionID, core.StatusError)
	if d.Error == nil || *d.Error != "the runner stopped while the agent was running" {
		t.Errorf("error = %v", d.Error)
	}
}

func TestServiceCancelAndArchiveRules(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	st, _ := h.svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "x", CursorAPIKey: "cursor_secret_0123456789"})
	if _, err := h.svc.Archive(ctx, h.actor, st.SessionID); core.ErrorCode(err) != core.CodeSessionActive {
		t.Errorf("archive pending = %v, want SESSION_ACTIVE", err)
	}
	if _, err := h.svc.Cancel(ctx, h.actor, st.SessionID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Cancel(ctx, h.actor, st.SessionID); core.ErrorCode(err) != core.CodeSessionNotActive {
		t.Errorf("second cancel = %v, want SESSION_NOT_ACTIVE", err)
	}
	ss, _ := h.st.GetSession(ctx, st.SessionID)
	if ss.CursorKeyCiphertext == nil {
		t.Fatal("no ciphertext stored for the key")
	}
	if _, err := h.svc.Archive(ctx, h.actor, st.SessionID); err != nil {
		t.Fatal(err)
	}
	ss, _ = h.st.GetSession(ctx, st.SessionID)
	if !ss.Archived || ss.CursorKeyCiphertext != nil {
		t.Errorf("after archive: archived=%v ciphertext=%v", ss.Archived, ss.CursorKeyCiphertext != nil)
	}
	if _, err := h.svc.Archive(ctx, h.actor, st.SessionID); err != nil {
		t.Errorf("archive twice = %v, want ok", err)
	}
	if _, err := h.svc.SendMessage(ctx, h.actor, st.SessionID, "y"); core.ErrorCode(err) != core.CodeSessionArchived {
		t.Errorf("send archived = %v", err)
	}
}

func TestServiceConcurrentCancelsOneWins(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	st, _ := h.svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "x"})
	var wg sync.WaitGroup
	codes := make([]core.Code, 8)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := h.svc.Cancel(ctx, h.actor, st.SessionID)
			codes[i] = core.ErrorCode(err)
		}()
	}
	wg.Wait()
	ok := 0
	for _, c := range codes {
		switch c {
		case "":
			ok++
		case core.CodeSessionNotActive:
		default:
			t.Errorf("cancel race gave %s", c)
		}
	}
	if ok != 1 {
		t.Errorf("%d cancels succeeded, want exactly 1 (%v)", ok, codes)
	}
	if diff := cmp.Diff([]string{"pending", "cancelled"}, h.statuses(t, st.SessionID)); diff != "" {
		t.Errorf("status events (-want +got):\n%s", diff)
	}
}

// TestServiceRefusesWhenRuntimeNotReady: a misconfigured runtime is a
// VALIDATION_ERROR at start and follow-up, not a failed run later.
func TestServiceRefusesWhenRuntimeNotReady(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	st := h.start(t)
	h.rt.mu.Lock()
	h.rt.notReady = errors.New("no local agent command is configured")
	h.rt.mu.Unlock()
	_, err := h.svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "x"})
	if e := core.AsError(err); e == nil || e.Code != core.CodeValidation || e.Field != "runtime" {
		t.Errorf("start on a runtime that is not ready = %v, want VALIDATION_ERROR on runtime", err)
	}
	if _, err := h.svc.SendMessage(ctx, h.actor, st.SessionID, "y"); core.ErrorCode(err) != core.CodeValidation {
		t.Errorf("send on a runtime that is not ready = %v, want VALIDATION_ERROR", err)
	}
	list, _ := h.svc.ListSessions(ctx, h.actor, core.ListSessionsInput{})
	if len(list.Sessions) != 1 {
		t.Errorf("%d sessions after a refused start, want 1", len(list.Sessions))
	}
}

// TestRunnerStoresWhatPrepareReturns: the upstream agent and run ids that
// Prepare reports are recorded with the run's start.
func TestRunnerStoresWhatPrepareReturns(t *testing.T) {
	h := newHarness(t)
	h.rt.start = core.RunStart{RunID: "run-upstream-1", CursorAgentID: "bc-123"}
	h.runRunner(t)
	st, _ := h.svc.StartSession(context.Background(), h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "x"})
	d := h.waitStatus(t, st.SessionID, core.StatusFinished)
	if d.CursorAgentID == nil || *d.CursorAgentID != "bc-123" || d.LatestRunID == nil || *d.LatestRunID != "run-upstream-1" {
		t.Errorf("session ids = %v, %v", d.CursorAgentID, d.LatestRunID)
	}
	if m := d.Messages[0]; m.CursorRunID == nil || *m.CursorRunID != "run-upstream-1" {
		t.Errorf("message run id = %v", m.CursorRunID)
	}
	if specs := h.rt.specs(); len(specs) != 1 || specs[0].RunID != "run-upstream-1" {
		t.Errorf("Execute got run id %v", specs)
	}
}

// TestRunnerLeavesDetachedRunsToTheNextRunner: a runtime that detaches on
// shutdown leaves its run running; the next runner adopts and finishes it.
func TestRunnerLeavesDetachedRunsToTheNextRunner(t *testing.T) {
	h := newHarness(t)
	started := make(chan struct{})
	h.rt.run = func(ctx context.Context, spec core.RunSpec, sink core.RunSink) (core.RunOutcome, error) {
		if spec.Adopted {
			return core.RunOutcome{Status: core.MessageFinished, ResultText: "resumed " + spec.RunID}, nil
		}
		close(started)
		<-ctx.Done()
		return core.RunOutcome{Detached: true}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	first := core.NewRunner(core.RunnerConfig{Store: h.st, Box: h.box, Runtimes: map[string]core.Runtime{"local": h.rt}, PollInterval: 10 * time.Millisecond})
	done := make(chan struct{})
	go func() { defer close(done); first.Run(ctx) }()
	st, _ := h.svc.StartSession(context.Background(), h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "x"})
	<-started
	cancel()
	<-done
	d := h.waitStatus(t, st.SessionID, core.StatusRunning)
	if d.Messages[0].Status != core.MessageRunning {
		t.Fatalf("after a detached shutdown the message is %s, want running", d.Messages[0].Status)
	}
	h.runRunner(t)
	d = h.waitStatus(t, st.SessionID, core.StatusFinished)
	if r := d.Messages[0].ResultText; r == nil || *r != "resumed "+*d.LatestRunID {
		t.Errorf("result = %v, want the adopted run's", r)
	}
}

// TestRunnerStopsAnUpstreamRunItCouldNotRecord: a cancel that lands while
// Prepare creates the upstream run wins the race to record; the runner then
// stops the run Prepare made instead of leaving it going upstream.
func TestRunnerStopsAnUpstreamRunItCouldNotRecord(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	var id string
	h.rt.start = core.RunStart{RunID: "run-upstream-9", CursorAgentID: "bc-9"}
	h.rt.onPrepare = func() {
		if _, err := h.svc.Cancel(ctx, h.actor, id); err != nil {
			t.Errorf("cancel during Prepare: %v", err)
		}
	}
	st, _ := h.svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "x"})
	id = st.SessionID
	h.runRunner(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.rt.mu.Lock()
		var upstream []core.Session
		for _, c := range h.rt.cancels {
			if c.LatestRunID != nil && *c.LatestRunID == "run-upstream-9" && c.CursorAgentID != nil && *c.CursorAgentID == "bc-9" {
				upstream = append(upstream, c)
			}
		}
		h.rt.mu.Unlock()
		if len(upstream) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run Prepare made was cancelled %d times, want once", len(upstream))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(h.rt.specs()) != 0 {
		t.Error("the cancelled session's run was executed")
	}
	d := h.waitStatus(t, st.SessionID, core.StatusCancelled)
	if d.LatestRunID != nil {
		t.Errorf("latest_run_id = %v; the abandoned run must not be recorded", *d.LatestRunID)
	}
}
