package cloud

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/store"
)

// sleeper records the waits asked for and returns at once, so tests never
// really wait for a Retry-After or a poll interval.
type sleeper struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeper) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeper) waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// env is a data directory with a real store, a service and the cloud runtime
// against a fake Cursor API.
type env struct {
	t       *testing.T
	fake    *fakeCursor
	st      *store.Store
	box     *core.Box
	svc     *core.Service
	sleeper *sleeper
	dataDir string
	actor   core.Actor
	agent   core.CodeAgent
	// tweak adjusts every runtime's config.
	tweak func(*Config)
}

const testRepo = "https://github.com/acme/app"

func newEnv(t *testing.T, scenario string) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "flapjack.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	master := make([]byte, 32)
	rand.Read(master)
	box, err := core.NewBox(master)
	if err != nil {
		t.Fatal(err)
	}
	owner, err := st.EnsureOwner(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, fake: newFake(t, scenario), st: st, box: box, sleeper: &sleeper{}, dataDir: dir,
		actor: core.Actor{UserID: owner.UserID, AllOrgs: true, DefaultOrgID: owner.OrgID}}
	e.svc = core.NewService(core.ServiceConfig{Store: st, Box: box, Runtimes: map[string]core.Runtime{core.RuntimeCloud: e.runtime()}, DefaultRuntime: core.RuntimeCloud})
	repo := testRepo
	e.agent, err = e.svc.CreateAgent(context.Background(), e.actor, core.CreateAgentInput{AgentFields: core.AgentFields{
		DefaultRepoURL: &repo, Preamble: ptr("Be brief."), ModelID: ptr("composer-2"),
		ModelParams: map[string]any{"thinking": "high", "effort": 2}, SkipReviewerRequest: ptr(true),
	}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func ptr[T any](v T) *T { return &v }

// runtime returns a fresh Runtime on the environment's data directory, as a
// new process would have.
func (e *env) runtime() *Runtime {
	e.t.Helper()
	cfg := Config{BaseURL: e.fake.URL(), Box: e.box, Journal: e.st, Sessions: e.st, Version: "1.2.3",
		Sleep: e.sleeper.sleep, CancelGrace: 10 * time.Millisecond}
	if e.tweak != nil {
		e.tweak(&cfg)
	}
	rt, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return rt
}

// startRunner runs a Runner with a fresh runtime until stop is called (or
// the test ends); stop returns once the runner has handed everything over.
func (e *env) startRunner() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	r := core.NewRunner(core.RunnerConfig{Store: e.st, Box: e.box, Runtimes: map[string]core.Runtime{core.RuntimeCloud: e.runtime()}, PollInterval: 5 * time.Millisecond})
	go func() { defer close(done); r.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(stop)
	return stop
}

func (e *env) start(prompt string) core.StartResult {
	e.t.Helper()
	res, err := e.svc.StartSession(context.Background(), e.actor, core.StartSessionInput{CodeAgentID: e.agent.ID, Prompt: prompt, CursorAPIKey: fakeKey})
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

func (e *env) waitStatus(id string, want core.Status) core.SessionDetail {
	e.t.Helper()
	return e.waitFor(id, string(want), func(d core.SessionDetail) bool { return d.Status == want })
}

// waitFor polls the session until ok holds.
func (e *env) waitFor(id, what string, ok func(core.SessionDetail) bool) core.SessionDetail {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		d, err := e.svc.GetSession(context.Background(), e.actor, id)
		if err != nil {
			e.t.Fatal(err)
		}
		if ok(d) {
			return d
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("session %s: still %s (error %v) after 15s, waiting for %s", id, d.Status, deref(d.Error), what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// events reads the session's whole log by polling pages, as a client would,
// and checks the seqs run 1, 2, 3... without gaps.
func (e *env) events(id string) []core.Event {
	e.t.Helper()
	var out []core.Event
	since := int64(0)
	for {
		page, err := e.svc.ListEvents(context.Background(), e.actor, id, core.EventsInput{Since: &since, Limit: ptr(7)})
		if err != nil {
			e.t.Fatal(err)
		}
		if len(page.Events) == 0 {
			break
		}
		for _, ev := range page.Events {
			if ev.Seq != int64(len(out))+1 {
				e.t.Fatalf("event seq %d follows %d: a gap or a duplicate", ev.Seq, len(out))
			}
			out = append(out, ev)
		}
		since = page.LastSeq
	}
	return out
}

// logLine is an event reduced to what a test compares: its type and payload,
// and for status events only the status.
type logLine struct {
	Type    core.EventType
	Payload any
	// Run is the Cursor run id the event was logged for ("" for none).
	Run string
}

func (e *env) log(id string) []logLine {
	e.t.Helper()
	var out []logLine
	for _, ev := range e.events(id) {
		var p map[string]any
		if err := json.Unmarshal(ev.Payload, &p); err != nil {
			e.t.Fatalf("event %d payload %s: %v", ev.Seq, ev.Payload, err)
		}
		l := logLine{Type: ev.Type, Payload: p}
		if ev.CursorRunID != nil {
			l.Run = *ev.CursorRunID
		}
		switch ev.Type {
		case core.EventStatus:
			l.Payload, l.Run = p["status"], ""
		case core.EventUserMessage, core.EventError:
			delete(p, "message_id")
		}
		out = append(out, l)
	}
	return out
}

// line makes a logLine for a want list.
func line(typ core.EventType, payload string, run string) logLine {
	if typ == core.EventStatus {
		return logLine{Type: typ, Payload: payload}
	}
	var p any
	if err := json.Unmarshal([]byte(payload), &p); err != nil {
		panic(err)
	}
	return logLine{Type: typ, Payload: p, Run: run}
}

// memSink is a RunSink that keeps events in memory.
type memSink struct {
	mu     sync.Mutex
	events []core.EventInput
}

func (s *memSink) Emit(e core.EventInput) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
}

func (s *memSink) SetHandle(context.Context, string) error { return nil }

func (s *memSink) all() []core.EventInput {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]core.EventInput(nil), s.events...)
}
