//go:build linux

package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/platform"
)

// startExecute runs Execute in a goroutine and waits until the agent has
// reported its background child.
func startExecute(t *testing.T, r *Runtime, ctx context.Context, spec core.RunSpec) (sink *fakeSink, pgid, child int, result func() (core.RunOutcome, error)) {
	t.Helper()
	sink = newSink(t)
	var (
		out  core.RunOutcome
		err  error
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		out, err = r.Execute(ctx, spec, sink)
	}()
	child = childPid(t, sink)
	h, ok := parseHandle(sink.handle())
	if !ok || h.Start == 0 {
		t.Fatalf("handle %q, want the leader's pid and start time", sink.handle())
	}
	return sink, h.PID, child, func() (core.RunOutcome, error) {
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Fatal("Execute did not return")
		}
		return out, err
	}
}

func TestExecuteCancelKillsProcessGroup(t *testing.T) {
	t.Parallel()
	for _, prompt := range []string{"sleep", "stubborn"} {
		t.Run(prompt, func(t *testing.T) {
			t.Parallel()
			r, spec, ws := prepared(t, prompt)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, pgid, child, result := startExecute(t, r, ctx, spec)
			if !running(pgid) || !running(child) {
				t.Fatal("agent or its child not running")
			}
			if pgid != groupOf(t, child) {
				t.Fatalf("child %d is not in the agent's group %d", child, pgid)
			}
			// Uncommitted work of a cancelled run is kept too.
			writeFile(t, ws+"/partial.txt", "half done\n")
			cancel()
			out, err := result()
			if err != nil {
				t.Fatal(err)
			}
			if out.Status != core.MessageError || out.Error != "cancelled" {
				t.Errorf("outcome = %+v, want error cancelled", out)
			}
			if running(pgid) {
				t.Error("agent still running after Execute returned")
			}
			eventually(t, "the background child to be gone", func() bool { return !running(child) })
			if got := git(t, ws, "log", "-1", "--format=%s", "--", "partial.txt"); got != prompt {
				t.Errorf("partial work not committed: %q", got)
			}
		})
	}
}

func TestCancelFromAnotherProcess(t *testing.T) {
	t.Parallel()
	r, spec, _ := prepared(t, "sleep")
	_, pgid, child, result := startExecute(t, r, context.Background(), spec)

	s := spec.Session
	s.RunHandle = strconv.Itoa(pgid)
	var marked, aliveWhenMarked bool
	err := r.Cancel(context.Background(), s, func(context.Context) error {
		marked, aliveWhenMarked = true, running(pgid)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !marked || !aliveWhenMarked {
		t.Errorf("markCancelled called %v, agent running then %v; want both", marked, aliveWhenMarked)
	}
	if running(pgid) {
		t.Error("Cancel returned while the agent was running")
	}
	out, err := result()
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != core.MessageError {
		t.Errorf("outcome = %+v", out)
	}
	eventually(t, "the background child to be gone", func() bool { return !running(child) })
}

func TestCancelStubbornAgent(t *testing.T) {
	t.Parallel()
	r, spec, _ := prepared(t, "stubborn")
	_, pgid, _, result := startExecute(t, r, context.Background(), spec)
	s := spec.Session
	s.RunHandle = strconv.Itoa(pgid)
	start := time.Now()
	if err := r.Cancel(context.Background(), s, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if running(pgid) {
		t.Error("Cancel returned while the agent was running")
	}
	if d := time.Since(start); d < r.killGrace {
		t.Errorf("SIGKILL after %v, before the grace period %v", d, r.killGrace)
	}
	out, _ := result()
	if !strings.Contains(out.Error, "killed by signal 9") {
		t.Errorf("outcome = %+v", out)
	}
}

func TestCancelMarkFails(t *testing.T) {
	t.Parallel()
	r, spec, _ := prepared(t, "sleep")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, pgid, _, result := startExecute(t, r, ctx, spec)
	s := spec.Session
	s.RunHandle = strconv.Itoa(pgid)
	errLost := errors.New("lost the race")
	if err := r.Cancel(context.Background(), s, func(context.Context) error { return errLost }); err != errLost {
		t.Errorf("Cancel error = %v, want markCancelled's error unchanged", err)
	}
	time.Sleep(50 * time.Millisecond)
	if !running(pgid) {
		t.Error("agent signalled although markCancelled failed")
	}
	cancel()
	_, _ = result()
}

func TestCancelLeavesOtherProcessesAlone(t *testing.T) {
	t.Parallel()
	r := newRuntime(t)
	// A process in its own group that is not a run of this session (its pid
	// could be a reused one).
	cmd := exec.Command("sleep", "300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = t.TempDir()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid

	s := core.Session{ID: core.NewID(core.PrefixSession)}
	for _, h := range []string{"", "abc", "0", "1", "-5", strconv.Itoa(syscall.Getpgrp()), strconv.Itoa(os.Getpid()), strconv.Itoa(pid)} {
		s.RunHandle = h
		marked := false
		if err := r.Cancel(context.Background(), s, func(context.Context) error { marked = true; return nil }); err != nil || !marked {
			t.Errorf("Cancel with handle %q: %v, marked %v", h, err, marked)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if !running(pid) {
		t.Error("Cancel signalled a process that is not the session's agent")
	}
}

func TestExecuteAdopted(t *testing.T) {
	t.Parallel()
	r, spec, ws := prepared(t, "the interrupted prompt")
	// What a dead runner left behind: the agent's group, still running, and
	// its uncommitted work.
	cmd := exec.Command("sh", "-c", "sleep 300 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = ws
	cmd.Env = append(os.Environ(), sessionEnv+"="+spec.Session.ID)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	var waited sync.WaitGroup
	waited.Add(1)
	go func() { defer waited.Done(); _ = cmd.Wait() }()
	t.Cleanup(func() { killGroup(strconv.Itoa(pgid)); waited.Wait() })
	writeFile(t, ws+"/orphan.txt", "written before the crash\n")

	spec.Adopted = true
	spec.Session.RunHandle = strconv.Itoa(pgid)
	sink := newSink(t)
	out, err := r.Execute(context.Background(), spec, sink)
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != core.MessageError || out.Error != AdoptedError {
		t.Errorf("outcome = %+v", out)
	}
	if platform.GroupAlive(pgid) {
		t.Error("processes of the dead runner's agent still run")
	}
	if len(sink.handles) != 0 {
		t.Errorf("an adopted run started an agent: handles %v", sink.handles)
	}
	edits := sink.payloads(t, core.EventFileEdit)
	if len(edits) != 1 {
		t.Fatalf("file_edit events: %v", edits)
	}
	if got := git(t, ws, "log", "-1", "--format=%s", "--", "orphan.txt"); got != "the interrupted prompt" {
		t.Errorf("orphaned work not committed: %q", got)
	}

	// Adopting again, with the agent long gone, only reports.
	out, err = r.Execute(context.Background(), spec, newSink(t))
	if err != nil || out.Error != AdoptedError {
		t.Errorf("second adoption: %+v, %v", out, err)
	}
}

// groupOf returns a process's group id.
func groupOf(t *testing.T, pid int) int {
	t.Helper()
	_, pgrp, ok := procStat(pid)
	if !ok {
		t.Fatalf("process %d not found", pid)
	}
	return pgrp
}

func TestExecuteOutputHeldOutsideTheGroup(t *testing.T) {
	t.Parallel()
	r, spec, _ := prepared(t, "escape")
	sink := newSink(t)
	var escaped int
	t.Cleanup(func() {
		if escaped > 1 {
			_ = syscall.Kill(escaped, syscall.SIGKILL)
		}
	})
	done := make(chan struct{})
	var out core.RunOutcome
	go func() { defer close(done); out, _ = r.Execute(context.Background(), spec, sink) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Execute waits for a process that left the agent's group")
	}
	for _, l := range sink.lines(t, core.EventStdout) {
		_, _ = fmt.Sscanf(l, "escaped %d", &escaped)
	}
	if escaped == 0 {
		t.Fatal("no escaped pid reported")
	}
	if out.Status != core.MessageFinished {
		t.Errorf("outcome = %+v", out)
	}
}

// TestCancelBeforeTheHandleIsKnown: a session read before its agent's handle
// was recorded still gets its agent stopped before Cancel returns, found by
// the session marker in its environment.
func TestCancelBeforeTheHandleIsKnown(t *testing.T) {
	t.Parallel()
	r, spec, _ := prepared(t, "sleep")
	_, pgid, child, result := startExecute(t, r, context.Background(), spec)
	s := spec.Session
	s.RunHandle = "" // read before SetHandle
	if err := r.Cancel(context.Background(), s, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if running(pgid) || running(child) {
		t.Error("Cancel returned while the agent was running")
	}
	if out, err := result(); err != nil || out.Status != core.MessageError {
		t.Errorf("outcome %+v, %v", out, err)
	}
}

// handleSessions is a SessionGetter whose run handle the test controls.
type handleSessions struct {
	mu     sync.Mutex
	handle string
	reads  int
}

func (h *handleSessions) GetSession(_ context.Context, id string) (core.Session, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reads++
	return core.Session{ID: id, RunHandle: h.handle}, nil
}

func (h *handleSessions) set(v string) {
	h.mu.Lock()
	h.handle = v
	h.mu.Unlock()
}

// TestCancelWaitsForTheRunnerToRecordTheEnd: a cancel that lands after the
// runner marked the run started but before any agent exists answers only once
// the runner has recorded the run's end (cleared the handle).
func TestCancelWaitsForTheRunnerToRecordTheEnd(t *testing.T) {
	t.Parallel()
	r := newRuntime(t, "/bin/true")
	sessions := &handleSessions{handle: core.RunHandleStarting}
	r.sessions = sessions
	done := make(chan error, 1)
	go func() {
		done <- r.Cancel(context.Background(), core.Session{ID: "cs-waiting", RunHandle: core.RunHandleStarting},
			func(context.Context) error { return nil })
	}()
	// Cancel keeps reading while the run is in flight.
	for {
		sessions.mu.Lock()
		n := sessions.reads
		sessions.mu.Unlock()
		if n >= 3 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Cancel returned (%v) while the run was still in flight", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	sessions.set("")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Cancel did not return after the runner recorded the end")
	}
}
