//go:build unix

package local

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// These tests run a second operation at every interleaving point of a first
// (core.Step hooks, no sleeps) on the real runtime, Service and Runner, and
// check what no interleaving may leave: an active session without its
// workspace, an archived or expired one whose workspace stays, a committed
// archive reported as failed, or a follow-up accepted and then lost.

// once runs f the first time point p is reached while armed.
type once struct {
	mu       sync.Mutex
	armed    bool
	fired    bool
	finished bool // f has returned
	point    core.Step
	f        func()
}

func (o *once) step(p core.Step) {
	o.mu.Lock()
	run := o.armed && !o.fired && p == o.point
	if run {
		o.fired = true
	}
	o.mu.Unlock()
	if run {
		o.f()
		o.mu.Lock()
		o.finished = true
		o.mu.Unlock()
	}
}

func (o *once) arm() {
	o.mu.Lock()
	o.armed = true
	o.mu.Unlock()
}

// done reports whether f ran and returned.
func (o *once) done() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.finished
}

func (h *harness) workspaceExists(id string) bool {
	_, err := os.Stat(filepath.Join(h.rt.root, id))
	return err == nil
}

// TestArchiveInterleavedWithFollowUp: a follow-up sent while an archive is
// deciding wins (the archive is refused, the session runs again in its
// workspace); one sent after the archive committed is refused, and the
// workspace goes.
func TestArchiveInterleavedWithFollowUp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		point       core.Step
		archiveCode core.Code // "" for success
		sendCode    core.Code
	}{
		{core.StepDecided, core.CodeSessionActive, ""},
		{core.StepArchiveCommitted, "", core.CodeSessionArchived},
	} {
		t.Run(string(tc.point), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			h := newHarness(t, plainOrigin(t), fixedClock{}, testAgent(t))
			id := h.start(t, "first")
			h.run(t, core.RunnerConfig{})
			h.wait(t, id, core.StatusFinished)

			var sendErr error
			hook := &once{point: tc.point, armed: true, f: func() {
				_, sendErr = h.svc.SendMessage(ctx, h.actor, id, "second")
			}}
			svc := core.NewService(core.ServiceConfig{Store: h.st, Box: h.box, Clock: h.clock,
				Runtimes: map[string]core.Runtime{core.RuntimeLocal: h.rt}, DefaultRuntime: core.RuntimeLocal, Step: hook.step})
			_, archiveErr := svc.Archive(ctx, h.actor, id)
			if !hook.done() {
				t.Fatalf("the archive never reached %s", tc.point)
			}
			if got := core.ErrorCode(archiveErr); got != tc.archiveCode {
				t.Fatalf("archive = %v, want code %q", archiveErr, tc.archiveCode)
			}
			if got := core.ErrorCode(sendErr); got != tc.sendCode {
				t.Fatalf("follow-up = %v, want code %q", sendErr, tc.sendCode)
			}
			if tc.archiveCode == "" {
				d, _ := h.svc.GetSession(ctx, h.actor, id)
				if !d.Archived || h.workspaceExists(id) {
					t.Errorf("archived %v, workspace kept %v; want archived without workspace", d.Archived, h.workspaceExists(id))
				}
				return
			}
			// The follow-up won: it runs in the workspace it found.
			d := h.wait(t, id, core.StatusFinished)
			if d.Archived || len(d.Messages) != 2 || d.Messages[1].Status != core.MessageFinished || !h.workspaceExists(id) {
				t.Errorf("after the follow-up: archived %v, messages %+v, workspace %v", d.Archived, d.Messages, h.workspaceExists(id))
			}
		})
	}
}

// TestExpiryInterleaved: a follow-up or an archive reaching a session while
// the sweep expires it. A follow-up before the expiry commits wins (the
// session runs again in its workspace, the sweep leaves it); one after is
// refused as expired and the workspace goes. An archive after the expiry
// committed archives the expired session and the workspace goes.
func TestExpiryInterleaved(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		point     core.Step
		archive   bool
		wantCode  core.Code
		wantState core.Status
		workspace bool
	}{
		{"follow-up before expiry commits", core.StepDecided, false, "", core.StatusFinished, true},
		{"follow-up after expiry commits", core.StepExpireCommitted, false, core.CodeSessionExpired, core.StatusExpired, false},
		{"archive after expiry commits", core.StepExpireCommitted, true, "", core.StatusExpired, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clock := &stepClock{t: testT0}
			h := newHarness(t, plainOrigin(t), clock, testAgent(t))
			id := h.start(t, "first")
			var opErr error
			hook := &once{point: tc.point, f: func() {
				if tc.archive {
					_, opErr = h.svc.Archive(ctx, h.actor, id)
				} else {
					_, opErr = h.svc.SendMessage(ctx, h.actor, id, "second")
				}
			}}
			h.run(t, core.RunnerConfig{WorkspaceTTL: time.Hour, SweepInterval: 10 * time.Millisecond, Step: hook.step})
			h.wait(t, id, core.StatusFinished)
			hook.arm()
			clock.add(2 * time.Hour)
			eventually(t, "the sweep to reach "+string(tc.point), hook.done)
			if got := core.ErrorCode(opErr); got != tc.wantCode {
				t.Fatalf("%s = %v, want code %q", map[bool]string{true: "archive", false: "follow-up"}[tc.archive], opErr, tc.wantCode)
			}
			var d core.SessionDetail
			eventually(t, "the session to settle", func() bool {
				d, _ = h.svc.GetSession(ctx, h.actor, id)
				return d.Status == tc.wantState && h.workspaceExists(id) == tc.workspace
			})
			if tc.archive != d.Archived {
				t.Errorf("archived %v, want %v", d.Archived, tc.archive)
			}
			if tc.wantState == core.StatusFinished && (len(d.Messages) != 2 || d.Messages[1].Status != core.MessageFinished) {
				t.Errorf("the follow-up did not run: %+v", d.Messages)
			}
		})
	}
}

// TestCancelInterleavedWithRunCompletion: a cancel that lands while the
// runner is recording a run's outcome wins: the session and its message end
// cancelled, the cancel is reported done, and the outcome recorded after it
// changes nothing.
func TestCancelInterleavedWithRunCompletion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	agent := filepath.Join(dir, "agent.sh")
	writeFile(t, agent, "#!/bin/sh\ncat >/dev/null\nwhile [ ! -f '"+gate+"' ]; do sleep 0.01; done\n"+
		`printf '{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"done"}]},"session_id":"s1"}\n'`+"\n")
	if err := os.Chmod(agent, 0o755); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, plainOrigin(t), fixedClock{}, agent)
	id := h.start(t, "go")
	var cancelErr error
	hook := &once{point: core.StepDecided, f: func() {
		cctx, stop := context.WithTimeout(ctx, 10*time.Second)
		defer stop()
		_, cancelErr = h.svc.Cancel(cctx, h.actor, id)
	}}
	h.run(t, core.RunnerConfig{Step: hook.step})
	h.wait(t, id, core.StatusRunning)
	hook.arm()
	writeFile(t, gate, "")
	eventually(t, "the runner to record the outcome", hook.done)
	if cancelErr != nil {
		t.Fatalf("cancel while the outcome was recorded = %v", cancelErr)
	}
	d := h.wait(t, id, core.StatusCancelled)
	if len(d.Messages) != 1 || d.Messages[0].Status != core.MessageCancelled {
		t.Errorf("messages %+v, want the one cancelled", d.Messages)
	}
	// Nothing the late outcome could change changes later.
	time.Sleep(50 * time.Millisecond)
	if d2, _ := h.svc.GetSession(ctx, h.actor, id); d2.Status != core.StatusCancelled || d2.Messages[0].Status != core.MessageCancelled {
		t.Errorf("after the outcome: %s, message %s", d2.Status, d2.Messages[0].Status)
	}
}
