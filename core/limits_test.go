package core_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flapjack-dev/flapjack/core"
)

// runWith runs a runner over h with cfg's limits and TTL until the test ends.
func (h *harness) runWith(t *testing.T, cfg core.RunnerConfig, runtimes map[string]core.Runtime) {
	t.Helper()
	cfg.Store, cfg.Box, cfg.PollInterval = h.st, h.box, 10*time.Millisecond
	cfg.Runtimes = runtimes
	if cfg.Runtimes == nil {
		cfg.Runtimes = map[string]core.Runtime{"local": h.rt}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	r := core.NewRunner(cfg)
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// gatedRuns makes h.rt's runs wait for a release per prompt, and records
// which run and how many at once.
type gatedRuns struct {
	mu       sync.Mutex
	started  []string
	running  int
	most     int
	releases map[string]chan struct{}
}

func gate(h *harness, prompts ...string) *gatedRuns {
	g := &gatedRuns{releases: map[string]chan struct{}{}}
	for _, p := range prompts {
		g.releases[p] = make(chan struct{})
	}
	h.rt.run = func(ctx context.Context, spec core.RunSpec, sink core.RunSink) (core.RunOutcome, error) {
		g.mu.Lock()
		g.started = append(g.started, spec.Message.Prompt)
		g.running++
		g.most = max(g.most, g.running)
		release := g.releases[spec.Message.Prompt]
		g.mu.Unlock()
		defer func() { g.mu.Lock(); g.running--; g.mu.Unlock() }()
		select {
		case <-release:
		case <-ctx.Done():
			return core.RunOutcome{Status: core.MessageError, Error: "cancelled"}, nil
		}
		return core.RunOutcome{Status: core.MessageFinished}, nil
	}
	return g
}

func (g *gatedRuns) startedRuns() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.started...)
}

func (g *gatedRuns) waitStarted(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s := g.startedRuns(); len(s) >= n {
			time.Sleep(50 * time.Millisecond) // would a run too many start?
			return g.startedRuns()
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("only %v started, want %d", g.startedRuns(), n)
	return nil
}

// queuePositions returns the positions the session was told while queued.
func (h *harness) queuePositions(t *testing.T, id string) []int {
	t.Helper()
	page, err := h.svc.ListEvents(context.Background(), h.actor, id, core.EventsInput{Limit: ptr(500)})
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range page.Events {
		var p struct {
			Queued        bool
			QueuePosition int `json:"queue_position"`
		}
		if e.Type == core.EventStatus && json.Unmarshal(e.Payload, &p) == nil && p.Queued {
			out = append(out, p.QueuePosition)
		}
	}
	return out
}

// TestRunnerConcurrencyLimit: with MaxConcurrent 2, five sessions run two at
// a time, the others wait in pending in start order and are told their
// place in line when it changes; a session cancelled while queued leaves the
// line.
func TestRunnerConcurrencyLimit(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	prompts := []string{"s1", "s2", "s3", "s4", "s5", "s6"}
	g := gate(h, prompts...)
	var ids []string
	for _, p := range prompts {
		st, err := h.svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: p})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, st.SessionID)
		time.Sleep(2 * time.Millisecond) // start order is created_at, in milliseconds
	}
	h.runWith(t, core.RunnerConfig{Limits: map[string]core.RunLimits{"local": {MaxConcurrent: 2}}}, nil)
	if got := g.waitStarted(t, 2); !cmp.Equal(sortedCopy(got), []string{"s1", "s2"}) {
		t.Fatalf("first runs: %v, want s1 and s2", got)
	}
	for i := 2; i < 6; i++ {
		if got := h.waitStatus(t, ids[i], core.StatusPending); got.Status != core.StatusPending {
			t.Fatal(got.Status)
		}
	}
	waitFor(t, "s6 told it is 4th", func() bool { p := h.queuePositions(t, ids[5]); return len(p) > 0 && p[len(p)-1] == 4 })
	// s4 is cancelled while it waits: s5 and s6 move up.
	if _, err := h.svc.Cancel(ctx, h.actor, ids[3]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "s6 told it is 3rd", func() bool { p := h.queuePositions(t, ids[5]); return len(p) > 0 && p[len(p)-1] == 3 })

	close(g.releases["s2"])
	if got := g.waitStarted(t, 3); got[2] != "s3" {
		t.Fatalf("runs: %v, want s3 next", got)
	}
	close(g.releases["s1"])
	if got := g.waitStarted(t, 4); got[3] != "s5" {
		t.Fatalf("runs: %v, want s5 next", got)
	}
	for _, p := range []string{"s3", "s5"} {
		close(g.releases[p])
	}
	if got := g.waitStarted(t, 5); got[4] != "s6" {
		t.Fatalf("runs: %v, want s6 last", got)
	}
	close(g.releases["s6"])
	for i, id := range ids {
		want := core.StatusFinished
		if i == 3 {
			want = core.StatusCancelled
		}
		h.waitStatus(t, id, want)
	}
	g.mu.Lock()
	most := g.most
	g.mu.Unlock()
	if most != 2 {
		t.Errorf("at most %d runs at once, want 2", most)
	}
	want := map[int][]int{2: {1}, 3: {2}, 4: {3, 2, 1}, 5: {4, 3, 2, 1}}
	for i, id := range ids {
		got := h.queuePositions(t, id)
		if i == 3 {
			if len(got) == 0 || got[0] != 2 {
				t.Errorf("s4: positions %v, want 2 first", got)
			}
			continue
		}
		if diff := cmp.Diff(want[i], got); diff != "" {
			t.Errorf("%s: queue positions (-want +got):\n%s", prompts[i], diff)
		}
	}

}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRunnerRunTimeout: a run past RunTimeout is stopped (its context ends)
// and ends in error saying it timed out, keeping what the runtime reported.
func TestRunnerRunTimeout(t *testing.T) {
	h := newHarness(t)
	stopped := make(chan struct{})
	h.rt.run = func(ctx context.Context, spec core.RunSpec, sink core.RunSink) (core.RunOutcome, error) {
		<-ctx.Done()
		close(stopped)
		return core.RunOutcome{Status: core.MessageError, Error: "cancelled", PRBranch: "flapjack/x"}, nil
	}
	h.runWith(t, core.RunnerConfig{Limits: map[string]core.RunLimits{"local": {RunTimeout: 200 * time.Millisecond}}}, nil)
	st, err := h.svc.StartSession(context.Background(), h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	d := h.waitStatus(t, st.SessionID, core.StatusError)
	<-stopped
	if d.Error == nil || *d.Error != "the run timed out: it was stopped after 200ms" || d.PRBranch == nil || *d.PRBranch != "flapjack/x" {
		t.Errorf("session: error %v, pr branch %v", d.Error, d.PRBranch)
	}
}

// TestRunnerStallEvents: a run with no event for StallTimeout gets one
// stalled event per quiet spell; an event ends the spell.
func TestRunnerStallEvents(t *testing.T) {
	h := newHarness(t)
	h.rt.run = func(ctx context.Context, spec core.RunSpec, sink core.RunSink) (core.RunOutcome, error) {
		emit := func(text string) {
			sink.Emit(core.EventInput{MessageID: spec.Message.ID, Type: core.EventAssistant, Payload: json.RawMessage(`{"text":"` + text + `"}`), CreatedAt: time.Now()})
		}
		emit("one")
		time.Sleep(400 * time.Millisecond)
		emit("two")
		time.Sleep(400 * time.Millisecond)
		emit("three")
		return core.RunOutcome{Status: core.MessageFinished}, nil
	}
	h.runWith(t, core.RunnerConfig{Limits: map[string]core.RunLimits{"local": {StallTimeout: 100 * time.Millisecond}}}, nil)
	st, err := h.svc.StartSession(context.Background(), h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "quiet"})
	if err != nil {
		t.Fatal(err)
	}
	h.waitStatus(t, st.SessionID, core.StatusFinished)
	page, _ := h.svc.ListEvents(context.Background(), h.actor, st.SessionID, core.EventsInput{Limit: ptr(500)})
	var seq []string
	for _, e := range page.Events {
		switch e.Type {
		case core.EventAssistant:
			var p struct{ Text string }
			json.Unmarshal(e.Payload, &p)
			seq = append(seq, p.Text)
		case core.EventStalled:
			if e.MessageID == nil || *e.MessageID != st.MessageID || !strings.Contains(string(e.Payload), "no event for") {
				t.Errorf("stalled event: %+v %s", e, e.Payload)
			}
			seq = append(seq, "stalled")
		}
	}
	if diff := cmp.Diff([]string{"one", "stalled", "two", "stalled", "three"}, seq); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// holder is a runtime with workspaces (core.WorkspaceHolder).
type holder struct {
	*fakeRuntime
	mu       sync.Mutex
	released []string
}

func (r *holder) ReleaseWorkspace(_ context.Context, s core.Session) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.released = append(r.released, s.ID)
	return nil
}

func (r *holder) releases() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.released...)
}

// stepClock is a clock tests move by hand.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestRunnerExpiresWorkspaces: the sweep (at start and every interval) makes
// a session that ended more than the TTL ago expired, with a status event,
// and releases its workspace; recent, archived and active sessions and
// sessions of runtimes without workspaces are left alone.
func TestRunnerExpiresWorkspaces(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	clock := &stepClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	rt := &holder{fakeRuntime: h.rt}
	other := &fakeRuntime{}
	h.svc = core.NewService(core.ServiceConfig{Store: h.st, Box: h.box, Clock: clock, DefaultRuntime: "local",
		Runtimes: map[string]core.Runtime{"local": rt, "cloud": other}})
	start := func(prompt, runtime string) string {
		ag, err := h.svc.CreateAgent(ctx, h.actor, core.CreateAgentInput{AgentFields: core.AgentFields{DefaultRepoURL: ptr("/srv/repo"), Runtime: ptr(runtime)}})
		if err != nil {
			t.Fatal(err)
		}
		st, err := h.svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: ag.ID, Prompt: prompt})
		if err != nil {
			t.Fatal(err)
		}
		return st.SessionID
	}
	release := make(chan struct{})
	h.rt.run = func(ctx context.Context, spec core.RunSpec, sink core.RunSink) (core.RunOutcome, error) {
		if spec.Message.Prompt == "active" {
			<-release
		}
		return core.RunOutcome{Status: core.MessageFinished}, nil
	}
	other.run = h.rt.run
	old, archived, cloud := start("old", "local"), start("archived", "local"), start("cloud", "cloud")
	// The runner's first sweep is at its start; runs are recorded with the clock.
	h.runWith(t, core.RunnerConfig{Clock: clock, WorkspaceTTL: time.Hour, SweepInterval: 10 * time.Millisecond},
		map[string]core.Runtime{"local": rt, "cloud": other})
	for _, id := range []string{old, archived, cloud} {
		h.waitStatus(t, id, core.StatusFinished)
	}
	if _, err := h.svc.Archive(ctx, h.actor, archived); err != nil {
		t.Fatal(err)
	}
	clock.add(30 * time.Minute)
	recent := start("recent", "local")
	active := start("active", "local")
	h.waitStatus(t, recent, core.StatusFinished)
	h.waitStatus(t, active, core.StatusRunning)
	clock.add(31 * time.Minute)
	h.waitStatus(t, old, core.StatusExpired)
	waitFor(t, "the workspace released", func() bool { return len(rt.releases()) > 0 })
	time.Sleep(100 * time.Millisecond) // more sweeps
	if got := rt.releases(); got[0] != old {
		t.Errorf("released %v, want %s first", got, old)
	}
	for _, id := range rt.releases() {
		if id != old {
			t.Errorf("released the workspace of %s too", id)
		}
	}
	for id, want := range map[string]core.Status{recent: core.StatusFinished, archived: core.StatusFinished, cloud: core.StatusFinished, active: core.StatusRunning} {
		if d, _ := h.svc.GetSession(ctx, h.actor, id); d.Status != want {
			t.Errorf("session %s is %s, want %s", id, d.Status, want)
		}
	}
	if diff := cmp.Diff([]string{"pending", "creating", "running", "finished", "expired"}, h.statuses(t, old)); diff != "" {
		t.Errorf("status events (-want +got):\n%s", diff)
	}
	_, err := h.svc.SendMessage(ctx, h.actor, old, "more")
	if ce := core.AsError(err); ce == nil || ce.Code != core.CodeSessionExpired {
		t.Errorf("follow-up after expiry: %v", err)
	}
	close(release)
}

// TestRunnerRunTimeoutStopsADetachedRun: a runtime that answers a context end
// by detaching (the cloud runtime) still has its timed-out run cancelled and
// recorded as timed out, not left to a next runner.
func TestRunnerRunTimeoutStopsADetachedRun(t *testing.T) {
	h := newHarness(t)
	h.rt.start = core.RunStart{RunID: "run-up-7"}
	h.rt.run = func(ctx context.Context, spec core.RunSpec, sink core.RunSink) (core.RunOutcome, error) {
		<-ctx.Done()
		return core.RunOutcome{Detached: true}, nil
	}
	h.runWith(t, core.RunnerConfig{Limits: map[string]core.RunLimits{"local": {RunTimeout: 200 * time.Millisecond}}}, nil)
	st, err := h.svc.StartSession(context.Background(), h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	d := h.waitStatus(t, st.SessionID, core.StatusError)
	if d.Error == nil || *d.Error != "the run timed out: it was stopped after 200ms" {
		t.Errorf("session error %v", d.Error)
	}
	h.rt.mu.Lock()
	defer h.rt.mu.Unlock()
	if len(h.rt.cancels) != 1 || h.rt.cancels[0].LatestRunID == nil || *h.rt.cancels[0].LatestRunID != "run-up-7" {
		t.Errorf("cancels = %d, want one for run-up-7", len(h.rt.cancels))
	}
}
