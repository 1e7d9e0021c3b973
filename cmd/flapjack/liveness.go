package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flapjack-dev/flapjack/core/platform"
)

// Whether a runner is alive is read from a record it keeps fresh, never by
// taking its lock: a probe of the lock would, for an instant, look like a
// runner to a runner starting then.
const (
	runnerBeatFile = "runner.beat"
	// beatEvery is how often the runner rewrites its record; a record older
	// than beatStale (or naming a dead process) is no runner.
	beatEvery = 2 * time.Second
	beatStale = 10 * time.Second
)

// runnerBeat is the liveness record: "pid started-unix-ms beat-unix-ms".
type runnerBeat struct {
	PID     int
	Started time.Time
	Beat    time.Time
}

func writeBeat(dataDir string, b runnerBeat) error {
	tmp, err := os.CreateTemp(dataDir, ".runner.beat-*")
	if err != nil {
		return err
	}
	_, werr := fmt.Fprintf(tmp, "%d %d %d\n", b.PID, b.Started.UnixMilli(), b.Beat.UnixMilli())
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	// Atomic: a reader sees the old record or the new one, never half.
	return os.Rename(tmp.Name(), filepath.Join(dataDir, runnerBeatFile))
}

func readBeat(dataDir string) (runnerBeat, bool) {
	raw, err := os.ReadFile(filepath.Join(dataDir, runnerBeatFile))
	if err != nil {
		return runnerBeat{}, false
	}
	f := strings.Fields(string(raw))
	if len(f) != 3 {
		return runnerBeat{}, false
	}
	pid, e1 := strconv.Atoi(f[0])
	started, e2 := strconv.ParseInt(f[1], 10, 64)
	beat, e3 := strconv.ParseInt(f[2], 10, 64)
	if errors.Join(e1, e2, e3) != nil || pid <= 0 {
		return runnerBeat{}, false
	}
	return runnerBeat{PID: pid, Started: time.UnixMilli(started), Beat: time.UnixMilli(beat)}, true
}

// runnerAlive reports the runner of the data directory, if one is alive: its
// record is fresh and its process exists.
func runnerAlive(dataDir string) (runnerBeat, bool) {
	b, ok := readBeat(dataDir)
	if !ok || time.Since(b.Beat) > beatStale {
		return runnerBeat{}, false
	}
	if _, running := platform.Identify(b.PID); !running {
		return runnerBeat{}, false
	}
	return b, true
}

// keepBeating writes this process's record now and every beatEvery, until
// the returned stop, which removes it (before the lock is given up).
func keepBeating(dataDir string) (stop func()) {
	b := runnerBeat{PID: os.Getpid(), Started: time.Now(), Beat: time.Now()}
	_ = writeBeat(dataDir, b)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(beatEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				b.Beat = now
				_ = writeBeat(dataDir, b)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
			if cur, ok := readBeat(dataDir); ok && cur.PID == b.PID {
				os.Remove(filepath.Join(dataDir, runnerBeatFile))
			}
		})
	}
}

// runnerWatch makes sure a runner exists while the data directory has work:
// processes that wait on sessions (the MCP server, the CLI's --wait, --follow
// and events) call check as they wait, so a runner killed mid-run is
// replaced within seconds instead of whenever someone next starts one.
type runnerWatch struct {
	g *globals
	a *app

	mu   sync.Mutex
	last time.Time
}

// check starts a detached runner if none is alive and there is work; it
// acts at most once per beatEvery.
func (w *runnerWatch) check(ctx context.Context) {
	w.mu.Lock()
	if time.Since(w.last) < beatEvery {
		w.mu.Unlock()
		return
	}
	w.last = time.Now()
	w.mu.Unlock()
	if _, alive := runnerAlive(w.g.dataDir); alive {
		return
	}
	work, err := w.a.hasWork(ctx)
	if err != nil || !work {
		return
	}
	if _, err := startDetachedRunner(w.g); err != nil {
		w.g.logger.Error("could not start a runner", "err", err)
	}
}

// watchAlways runs check every beatEvery until ctx ends (the MCP server).
func (w *runnerWatch) watchAlways(ctx context.Context) {
	t := time.NewTicker(beatEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.check(ctx)
		}
	}
}
