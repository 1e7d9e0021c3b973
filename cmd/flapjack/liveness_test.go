package main

import (
	"encoding/json"
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
