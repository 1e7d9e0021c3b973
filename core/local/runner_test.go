//go:build unix

package local

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/store"
)

// These tests drive the real runtime with the real Runner and Service on a
// SQLite store: the concurrency limit, the stall and time limits, and the
// expiry of workspaces, as the runner applies them to local runs.

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

type harness struct {
	st    *store.Store
	box   *core.Box
	svc   *core.Service
	rt    *Runtime
	clock core.Clock
	actor core.Actor
	agent core.CodeAgent
}

// newHarness wires a Service to a local runtime running command on repo.
func newHarness(t *testing.T, repo string, clock core.Clock, command ...string) *harness {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "flapjack.db"))
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
	rt, err := New(Config{WorkspaceRoot: filepath.Join(t.TempDir(), "workspaces"), Agent: AgentExec, Command: command,
		KillGrace: 300 * time.Millisecond, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{st: st, box: box, rt: rt, clock: clock, actor: core.Actor{UserID: owner.UserID, AllOrgs: true, DefaultOrgID: owner.OrgID}}
	h.svc = core.NewService(core.ServiceConfig{Store: st, Box: box, Clock: clock, Runtimes: map[string]core.Runtime{core.RuntimeLocal: rt}, DefaultRuntime: core.RuntimeLocal})
	auto := false
	h.agent, err = h.svc.CreateAgent(context.Background(), h.actor, core.CreateAgentInput{AgentFields: core.AgentFields{DefaultRepoURL: &repo, AutoCreatePR: &auto}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// run runs a Runner with cfg's limits until the test ends.
func (h *harness) run(t *testing.T, cfg core.RunnerConfig) {
	t.Helper()
	cfg.Store, cfg.Box, cfg.Clock = h.st, h.box, h.clock
	cfg.Runtimes = map[string]core.Runtime{core.RuntimeLocal: h.rt}
	cfg.PollInterval = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	r := core.NewRunner(cfg)
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func (h *harness) start(t *testing.T, prompt string) string {
	t.Helper()
	res, err := h.svc.StartSession(context.Background(), h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: prompt})
	if err != nil {
		t.Fatal(err)
	}
	return res.SessionID
}

func (h *harness) wait(t *testing.T, id string, want core.Status) core.SessionDetail {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		d, err := h.svc.GetSession(context.Background(), h.actor, id)
		if err != nil {
			t.Fatal(err)
		}
		if d.Status == want {
			return d
		}
		if d.Status.Terminal() && want != core.StatusExpired {
			t.Fatalf("session %s is %s (%v), want %s", id, d.Status, d.Error, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	d, _ := h.svc.GetSession(context.Background(), h.actor, id)
	t.Fatalf("session %s is %s, want %s", id, d.Status, want)
	return d
}

func (h *harness) events(t *testing.T, id string) []core.Event {
	t.Helper()
	limit := core.MaxEventLimit
	page, err := h.svc.ListEvents(context.Background(), h.actor, id, core.EventsInput{Limit: &limit})
	if err != nil {
		t.Fatal(err)
	}
	return page.Events
}

// plainOrigin is a repository whose path the Service accepts (no spaces).
func plainOrigin(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "origin")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "init", "-q", "-b", "main")
	writeFile(t, filepath.Join(dir, "README.md"), "hello\n")
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-q", "-m", "initial")
	return dir
}

// writeScript writes an executable sh script.
func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAtMostTwoAgentsAtOnce: five sessions with a limit of 2. Each agent
// takes one of two lock directories (mkdir is atomic) for its whole run; an
// agent that finds both taken means a third one runs, and records it. Each
// also waits a while for the other lock, recording that two did run
// together (the limit is 2, not 1), and keeps its lock a little longer, so
// that a third agent, were one let in, would find both taken. Sessions that wait are told their place
// in line, in start order, and again only when it changes.
func TestAtMostTwoAgentsAtOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	slots := filepath.Join(dir, "slots")
	if err := os.Mkdir(slots, 0o755); err != nil {
		t.Fatal(err)
	}
	agent := writeScript(t, fmt.Sprintf(`cat >/dev/null
slots=%[1]q
if mkdir "$slots/a" 2>/dev/null; then mine=a other=b
elif mkdir "$slots/b" 2>/dev/null; then mine=b other=a
else echo "$FLAPJACK_SESSION_ID" >>%[2]q; exit 1
fi
i=0
while [ ! -d "$slots/$other" ] && [ $i -lt 60 ]; do sleep 0.05; i=$((i + 1)); done
if [ -d "$slots/$other" ]; then echo "$FLAPJACK_SESSION_ID" >>%[3]q; fi
sleep 0.5
echo "$FLAPJACK_SESSION_ID" >>agent.txt
rmdir "$slots/$mine"
`, slots, filepath.Join(dir, "violations"), filepath.Join(dir, "paired")))
	h := newHarness(t, plainOrigin(t), core.SystemClock{}, agent)
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, h.start(t, fmt.Sprintf("task %d", i+1)))
		time.Sleep(2 * time.Millisecond) // start order is created_at, in milliseconds
	}
	h.run(t, core.RunnerConfig{Limits: map[string]core.RunLimits{core.RuntimeLocal: {MaxConcurrent: 2}}})
	for _, id := range ids {
		h.wait(t, id, core.StatusFinished)
		if b, err := os.ReadFile(filepath.Join(dir, "violations")); err == nil {
			t.Fatalf("more than two agents ran at once; the third: %s", b)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "paired")); len(b) == 0 {
		t.Error("no two agents ever ran at once")
	}
	for i, id := range ids {
		var positions []int
		for _, e := range h.events(t, id) {
			var p struct {
				Status        string `json:"status"`
				Queued        bool   `json:"queued"`
				QueuePosition int    `json:"queue_position"`
			}
			if e.Type == core.EventStatus && json.Unmarshal(e.Payload, &p) == nil && p.Queued {
				if p.Status != "pending" {
					t.Errorf("session %d waits in %s, want pending", i+1, p.Status)
				}
				positions = append(positions, p.QueuePosition)
			}
		}
		switch {
		case i < 2 && len(positions) != 0:
			t.Errorf("session %d ran at once but was told positions %v", i+1, positions)
		case i >= 2 && (len(positions) == 0 || positions[0] != i-1):
			t.Errorf("session %d: positions %v, want first %d (start order)", i+1, positions, i-1)
		}
		for j := 1; j < len(positions); j++ {
			if positions[j] >= positions[j-1] {
				t.Errorf("session %d: positions %v, want each told once, decreasing", i+1, positions)
			}
		}
	}
}

// TestRunTimeoutStopsTheAgent: a run past its time limit is stopped with its
// whole process group and ends in error saying it timed out; its work is
// still committed.
func TestRunTimeoutStopsTheAgent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, plainOrigin(t), core.SystemClock{}, writeScript(t, `cat >/dev/null
echo partial >partial.txt
sleep 300 &
echo "child $!"
wait
`))
	id := h.start(t, "take forever")
	h.run(t, core.RunnerConfig{Limits: map[string]core.RunLimits{core.RuntimeLocal: {RunTimeout: time.Second}}})
	d := h.wait(t, id, core.StatusError)
	if d.Error == nil || *d.Error != "the run timed out: it was stopped after 1s" {
		t.Errorf("error = %v", d.Error)
	}
	child := 0
	for _, e := range h.events(t, id) {
		var p struct{ Line string }
		if e.Type == core.EventStdout && json.Unmarshal(e.Payload, &p) == nil {
			fmt.Sscanf(p.Line, "child %d", &child)
		}
	}
	if child == 0 {
		t.Fatal("the agent's child never showed")
	}
	if err := syscall.Kill(child, 0); err == nil && running(child) {
		t.Errorf("the agent's child %d still runs", child)
	}
	ws := filepath.Join(h.rt.root, id)
	if got := git(t, ws, "log", "-1", "--format=%s", "--", "partial.txt"); got != "take forever" {
		t.Errorf("the timed-out run's work was not committed: %q", got)
	}
}

// TestStalledRun: a run quiet for longer than the stall timeout gets one
// stalled event for that quiet spell, between the events around it.
func TestStalledRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t, plainOrigin(t), core.SystemClock{}, writeScript(t, `cat >/dev/null
echo before
sleep 1
echo after
`))
	id := h.start(t, "think")
	h.run(t, core.RunnerConfig{Limits: map[string]core.RunLimits{core.RuntimeLocal: {StallTimeout: 200 * time.Millisecond}}})
	h.wait(t, id, core.StatusFinished)
	var seq []string
	for _, e := range h.events(t, id) {
		switch e.Type {
		case core.EventStdout:
			var p struct{ Line string }
			json.Unmarshal(e.Payload, &p)
			seq = append(seq, p.Line)
		case core.EventStalled:
			var p struct{ Message string }
			json.Unmarshal(e.Payload, &p)
			if !strings.HasPrefix(p.Message, "no event for ") {
				t.Errorf("stalled event: %s", e.Payload)
			}
			seq = append(seq, "stalled")
		}
	}
	// After "after" the commit may take long enough for another spell.
	if got := strings.Join(seq, ","); !strings.HasPrefix(got, "before,stalled,after") {
		t.Errorf("events: %v, want before, one stalled, after", seq)
	}
}

// TestWorkspaceExpiry: a finished session's workspace is removed once it has
// been over the TTL, the session becomes expired with a status event, and
// follow-ups answer SESSION_EXPIRED; a recent one is kept; archive removes a
// workspace at once.
func TestWorkspaceExpiry(t *testing.T) {
	t.Parallel()
	clock := &stepClock{t: testT0}
	h := newHarness(t, plainOrigin(t), clock, testAgent(t))
	old, archived := h.start(t, "old"), h.start(t, "archived")
	h.run(t, core.RunnerConfig{WorkspaceTTL: time.Hour, SweepInterval: 20 * time.Millisecond})
	h.wait(t, old, core.StatusFinished)
	h.wait(t, archived, core.StatusFinished)

	if _, err := h.svc.Archive(context.Background(), h.actor, archived); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(h.rt.root, archived)); !os.IsNotExist(err) {
		t.Errorf("archive left the workspace: %v", err)
	}

	clock.add(59 * time.Minute)
	recent := h.start(t, "recent")
	h.wait(t, recent, core.StatusFinished)
	clock.add(2 * time.Minute) // old: 61 minutes; recent: 2
	h.wait(t, old, core.StatusExpired)
	evs := h.events(t, old)
	last := evs[len(evs)-1]
	if last.Type != core.EventStatus || !strings.Contains(string(last.Payload), `"previous_status":"finished"`) || !strings.Contains(string(last.Payload), "workspace was removed 1h0m0s after") {
		t.Errorf("last event: %s %s", last.Type, last.Payload)
	}
	// Marked expired first, then removed.
	eventually(t, "the expired workspace to go", func() bool {
		_, err := os.Stat(filepath.Join(h.rt.root, old))
		return os.IsNotExist(err)
	})
	_, err := h.svc.SendMessage(context.Background(), h.actor, old, "more")
	if ce := core.AsError(err); ce == nil || ce.Code != core.CodeSessionExpired {
		t.Errorf("follow-up on an expired session: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // a few sweeps
	d, _ := h.svc.GetSession(context.Background(), h.actor, recent)
	if d.Status != core.StatusFinished {
		t.Errorf("a session 2 minutes old is %s", d.Status)
	}
	if _, err := os.Stat(filepath.Join(h.rt.root, recent, "README.md")); err != nil {
		t.Errorf("a recent workspace was touched: %v", err)
	}
	d, _ = h.svc.GetSession(context.Background(), h.actor, archived)
	if d.Status != core.StatusFinished || !d.Archived {
		t.Errorf("archived session became %s", d.Status)
	}
}
