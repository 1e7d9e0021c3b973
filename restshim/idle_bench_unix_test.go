//go:build unix

package restshim

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// BenchmarkIdleStreams measures what 100 SSE clients on a quiet session
// cost the server process: CPU time over wall time while they stay
// connected, less the same measure with none connected. (That commits to
// other sessions wake none of them is TestWatchWakesOnItsSessionsCommit's.)
// Goal: under 1 % of a core.
func BenchmarkIdleStreams(b *testing.B) {
	const clients = 100
	const window = 3 * time.Second
	bs := newBenchServer(b)
	measure := func() float64 {
		start, cpu0 := time.Now(), cpuTime(b)
		time.Sleep(window)
		return float64(cpuTime(b)-cpu0) / float64(time.Since(start)) * 100
	}
	var base, with float64
	for b.Loop() {
		base = measure()
		for range clients {
			s := openStream(b, bs.srv.URL+"/api/code-sessions/"+bs.started.SessionID+"/events/stream", bs.token.Token)
			<-s.events // connected, first event sent
		}
		time.Sleep(200 * time.Millisecond) // the opening reads are done
		with = measure()
	}
	b.ReportMetric(base, "no-streams-%cpu")
	b.ReportMetric(with-base, fmt.Sprintf("%d-idle-streams-%%cpu", clients))
	if with-base >= 1 {
		b.Errorf("%d idle streams cost %.2f %% of a core (%.2f with them, %.2f without), goal < 1 %%", clients, with-base, with, base)
	}
}

// cpuTime is this process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
