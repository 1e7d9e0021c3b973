//go:build unix

package local

import (
	"context"
	"os/exec"
	"strconv"
	"sync"
	"testing"

	"github.com/flapjack-dev/flapjack/core/platform"
)

// TestAdoptedRunKnownByStartTime: a dead runner's agent is known by the pid
// and start time its handle recorded, with nothing else to go on (no marker,
// another working directory), and stopped; a handle whose start time is not
// the running process's (its pid reused) stops nothing.
func TestAdoptedRunKnownByStartTime(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		skew    uint64
		stopped bool
	}{{"same process", 0, true}, {"pid reused", 1, false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, spec, _ := prepared(t, "the interrupted prompt")
			cmd := exec.Command("sh", "-c", "sleep 300 & wait")
			platform.NewGroup(cmd)
			cmd.Dir = t.TempDir()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pgid := cmd.Process.Pid
			var waited sync.WaitGroup
			waited.Add(1)
			go func() { defer waited.Done(); _ = cmd.Wait() }()
			t.Cleanup(func() { killGroup(strconv.Itoa(pgid)); waited.Wait() })
			leader, ok := platform.Identify(pgid)
			if !ok || leader.Start == 0 {
				t.Fatalf("no start time for the agent: %+v", leader)
			}
			leader.Start += tc.skew
			spec.Adopted = true
			spec.Session.RunHandle = leader.String()
			if _, err := r.Execute(context.Background(), spec, newSink(t)); err != nil {
				t.Fatal(err)
			}
			if tc.stopped {
				eventually(t, "the adopted agent's group to be gone", func() bool { return !platform.GroupAlive(pgid) })
				return
			}
			if !platform.GroupAlive(pgid) || !running(pgid) {
				t.Error("a process whose start time is not the handle's was stopped")
			}
		})
	}
}
