//go:build unix

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWaitSurvivesAKilledRunner: `sessions start --wait` waits on a session
// whose runner is killed with SIGKILL mid-run; the waiting command starts a
// new runner, which adopts the session (its orphaned agent stopped, the
// session ended in error), and the command returns within 10 s of the kill.
func TestWaitSurvivesAKilledRunner(t *testing.T) {
	c := newCLI(t, "FLAPJACK_LOCAL_AGENT_COMMAND="+writeAgent(t, streamAgent), "FLAPJACK_KILL_GRACE=1s")
	dataDir := strings.TrimPrefix(c.env[0], "FLAPJACK_DATA_DIR=")
	var ag struct{ ID string }
	if r := c.run("", "agents", "create", "--repo-url", makeRepo(t), "--runtime", "local", "-o", "json"); r.code != 0 || json.Unmarshal([]byte(r.stdout), &ag) != nil {
		t.Fatalf("agents create: %+v", r)
	}
	cmd := exec.Command(flapjackBin, "sessions", "start", "--agent", ag.ID, "--prompt", "orphan sleep", "--wait", "-o", "json")
	cmd.Env = append(os.Environ(), c.env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	for i := 0; len(agentProcesses(t, "orphan sleep")) == 0; i++ {
		if i > 1000 {
			t.Fatal("the agent never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, alive := runnerAlive(dataDir)
	if !alive {
		t.Fatal("no runner is alive while the agent runs")
	}
	syscall.Kill(b.PID, syscall.SIGKILL)
	killed := time.Now()
	select {
	case <-done:
		if took := time.Since(killed); took > 10*time.Second {
			t.Errorf("the waiting command returned %v after the kill, want within 10 s", took)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting command is stranded 30 s after its runner was killed")
	}
	if nb, alive := runnerAlive(dataDir); !alive || nb.PID == b.PID {
		t.Errorf("no new runner took over (alive %v, pid %d, killed %d)", alive, nb.PID, b.PID)
	}
	if pids := agentProcesses(t, "orphan sleep"); len(pids) > 0 {
		t.Errorf("the orphaned agent is still alive: %v", pids)
	}
}

// TestShortTTLExpiresWithNothingElseRunning: with a 3 s workspace TTL, the
// runner that finished a session stays (an expiry is due within its idle
// window) and expires it within seconds, with no other process around.
func TestShortTTLExpiresWithNothingElseRunning(t *testing.T) {
	c := newCLI(t, "FLAPJACK_LOCAL_AGENT_COMMAND="+writeAgent(t, streamAgent), "FLAPJACK_WORKSPACE_TTL=3s")
	dataDir := strings.TrimPrefix(c.env[0], "FLAPJACK_DATA_DIR=")
	var ag struct{ ID string }
	if r := c.run("", "agents", "create", "--repo-url", makeRepo(t), "--runtime", "local", "-o", "json"); r.code != 0 || json.Unmarshal([]byte(r.stdout), &ag) != nil {
		t.Fatalf("agents create: %+v", r)
	}
	r := c.run("", "sessions", "start", "--agent", ag.ID, "--prompt", "quick", "--wait", "-o", "json")
	var st struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if json.Unmarshal([]byte(r.stdout), &st) != nil || st.Status != "finished" {
		t.Fatalf("start --wait: %+v", r)
	}
	b, alive := runnerAlive(dataDir)
	if !alive {
		t.Fatal("no runner after the run")
	}
	time.Sleep(8 * time.Second) // nothing but that runner is running now
	if nb, alive := runnerAlive(dataDir); !alive || nb.PID != b.PID {
		t.Fatalf("the runner went away (alive %v, pid %d, was %d)", alive, nb.PID, b.PID)
	}
	r = c.run("", "sessions", "get", st.ID, "-o", "json")
	if json.Unmarshal([]byte(r.stdout), &st) != nil || st.Status != "expired" {
		t.Errorf("8 s after a 3 s TTL the session is %q, want expired", st.Status)
	}
}

// TestMalformedSettingsAreUsageErrors: a malformed duration in the
// environment is a usage error (exit 2) naming the variable, never a silent
// default.
func TestMalformedSettingsAreUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		env  string
		args []string
	}{
		{"FLAPJACK_RUNNER_IDLE_TIMEOUT=5", []string{"runner"}},
		{"FLAPJACK_SSE_HEARTBEAT=abc", []string{"serve", "--addr", "127.0.0.1:0"}},
		{"FLAPJACK_WORKSPACE_TTL=forever", []string{"agents", "list"}},
		{"FLAPJACK_MAX_CONCURRENT_RUNS=many", []string{"agents", "list"}},
	} {
		c := newCLI(t, tc.env)
		r := c.run("", tc.args...)
		name, _, _ := strings.Cut(tc.env, "=")
		if r.code != 2 || !strings.Contains(r.stderr, name) {
			t.Errorf("%s %v: exit %d, stderr %q; want 2 naming %s", tc.env, tc.args, r.code, r.stderr, name)
		}
	}
}

// TestRunnerStatusInATightLoopStrandsNothing: `runner status` runs back to
// back, without pause, while runners start on demand, idle out and start
// again (and a second session arrives while one is idling out). Status never
// fails, never takes the lock from a runner, and every session finishes.
func TestRunnerStatusInATightLoopStrandsNothing(t *testing.T) {
	c := newCLI(t, "FLAPJACK_LOCAL_AGENT_COMMAND="+writeAgent(t, streamAgent), "FLAPJACK_RUNNER_IDLE_TIMEOUT=300ms")
	dataDir := strings.TrimPrefix(c.env[0], "FLAPJACK_DATA_DIR=")
	var ag struct{ ID string }
	if r := c.run("", "agents", "create", "--repo-url", makeRepo(t), "--runtime", "local", "-o", "json"); r.code != 0 || json.Unmarshal([]byte(r.stdout), &ag) != nil {
		t.Fatalf("agents create: %+v", r)
	}

	stop := make(chan struct{})
	statusDone := make(chan struct{})
	var statusRuns, statusFailures int
	var lastFailure string
	go func() {
		defer close(statusDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			cmd := exec.Command(flapjackBin, "runner", "status", "-o", "json")
			cmd.Env = append(os.Environ(), c.env...)
			out, err := cmd.CombinedOutput()
			statusRuns++
			var st struct{ Runner struct{ Running bool } }
			if err != nil || json.Unmarshal(out, &st) != nil {
				statusFailures++
				lastFailure = fmt.Sprintf("%v: %s", err, out)
			}
		}
	}()

	pids := map[int]bool{}
	var ids []string
	for round := range 6 {
		// The session goes to whichever runner is there, or is about to
		// leave, or to a new one.
		var st struct{ ID, Status string }
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, flapjackBin, "sessions", "start", "--agent", ag.ID, "--prompt", fmt.Sprintf("round %d", round), "--wait", "-o", "json")
		cmd.Env = append(os.Environ(), c.env...)
		out, err := cmd.Output()
		cancel()
		if json.Unmarshal(out, &st) != nil || st.Status != "finished" {
			t.Fatalf("round %d: start --wait: %v, %s", round, err, out)
		}
		ids = append(ids, st.ID)
		if b, alive := runnerAlive(dataDir); alive {
			pids[b.PID] = true
		}
		// Every other round, let the runner idle out before the next one.
		if round%2 == 0 {
			for i := 0; i < 200; i++ {
				if _, alive := runnerAlive(dataDir); !alive {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	close(stop)
	<-statusDone
	for _, id := range ids {
		var got struct{ Status string }
		r := c.run("", "sessions", "get", id, "-o", "json")
		if json.Unmarshal([]byte(r.stdout), &got) != nil || got.Status != "finished" {
			t.Errorf("session %s: %q, want finished", id, got.Status)
		}
	}
	t.Logf("%d runner status calls, %d runners: %v", statusRuns, len(pids), pids)
	if statusRuns < 10 || statusFailures > 0 {
		t.Errorf("runner status ran %d times, failed %d (last: %s)", statusRuns, statusFailures, lastFailure)
	}
	if len(pids) < 2 {
		t.Errorf("runners seen %v: the test never went through an idle exit and a new runner", pids)
	}
}
