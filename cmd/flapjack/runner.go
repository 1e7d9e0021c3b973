package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/flapjack-dev/flapjack/core/platform"
)

const (
	runnerLockFile = "runner.lock"
	runnerLogFile  = "runner.log"
	// detachedIdle is how long a runner started on demand waits for more
	// work, unless FLAPJACK_RUNNER_IDLE_TIMEOUT says otherwise.
	detachedIdle = 60 * time.Second
	// standbyWait is how long a detached runner that finds the lock held
	// waits for it: long enough to outlast a holder that is just letting go
	// (a runner idling out, a server shutting down), short enough that a
	// spare one started alongside a live runner soon leaves.
	standbyWait = 15 * time.Second
)

// runnerLock is the exclusive lock that makes the runner a singleton per
// data directory. The kernel drops it when the process dies, so a crashed
// runner never blocks the next one. Nobody takes it to ask whether a runner
// is alive (that is the liveness record's job), so whoever else holds or
// waits for it is a runner too.
type runnerLock struct {
	f *os.File
	// stopBeat ends the liveness record (see liveness.go).
	stopBeat func()
}

func openRunnerLock(dataDir string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dataDir, runnerLockFile), os.O_RDWR|os.O_CREATE, 0o600)
}

// held records the holder's pid for humans and starts its liveness record.
func held(f *os.File, dataDir string) *runnerLock {
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &runnerLock{f: f, stopBeat: keepBeating(dataDir)}
}

// tryLockRunner takes the lock without waiting; ok is false when another
// runner holds it.
func tryLockRunner(dataDir string) (l *runnerLock, ok bool, err error) {
	f, err := openRunnerLock(dataDir)
	if err != nil {
		return nil, false, err
	}
	if ok, err := platform.LockFile(f, false); !ok {
		f.Close()
		return nil, false, err
	}
	return held(f, dataDir), true, nil
}

// waitLockRunner takes the lock as soon as its holder lets go, or returns
// ctx's error. The wait is the kernel's, not a retry loop. A wait that
// ctx abandoned lets go of the lock the moment it gets it, so it never
// keeps a runner out.
func waitLockRunner(ctx context.Context, dataDir string) (*runnerLock, error) {
	f, err := openRunnerLock(dataDir)
	if err != nil {
		return nil, err
	}
	got := make(chan error, 1)
	go func() {
		_, err := platform.LockFile(f, true)
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			f.Close()
			return nil, err
		}
		return held(f, dataDir), nil
	case <-ctx.Done():
		go func() {
			if <-got == nil {
				platform.UnlockFile(f)
			}
			f.Close()
		}()
		return nil, ctx.Err()
	}
}

func (l *runnerLock) unlock() {
	l.stopBeat()
	platform.UnlockFile(l.f)
	l.f.Close()
}

// runnerStart is a detached runner on its way to taking the lock.
type runnerStart struct {
	done chan struct{} // closed when ok is known
	ok   bool          // it took the lock (or a runner was alive already)
}

// wait reports whether the runner took the lock, waiting up to d.
func (s *runnerStart) wait(d time.Duration) (ok, known bool) {
	select {
	case <-s.done:
		return s.ok, true
	case <-time.After(d):
		return false, false
	}
}

// pending reports whether the start has not been decided yet.
func (s *runnerStart) pending() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// startDetachedRunner starts "flapjack runner" in its own session with its
// output in runner.log, unless a runner is alive (its liveness record says
// so; the lock is never probed) or one this process started is still on its
// way. Two processes may both start one: the second waits for the lock a
// while and leaves. The child outlives this process, so sessions keep
// running after an MCP client quits. It runs on this process's settings,
// handed over on its stdin, not on its environment.
func startDetachedRunner(g *globals) (*runnerStart, error) {
	g.startMu.Lock()
	defer g.startMu.Unlock()
	if g.starting != nil && g.starting.pending() {
		return g.starting, nil
	}
	start := &runnerStart{done: make(chan struct{})}
	if _, alive := runnerAlive(g.dataDir); alive {
		start.ok = true
		close(start.done)
		return start, nil
	}
	cfg, err := g.settings()
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(g.dataDir, runnerLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pw.Close()
	idle := detachedIdle
	if cfg.RunnerIdle > 0 {
		idle = cfg.RunnerIdle
	}
	cmd := exec.Command(exe, "runner", "--data-dir", g.dataDir, "--log-level", g.logLevel, "--idle-timeout", idle.String(),
		"--settings-stdin")
	cmd.Env = childEnv(os.Environ())
	cmd.Stdout, cmd.Stderr = logf, logf
	passReadyPipe(cmd, pw)
	platform.Detach(cmd)
	in, err := cmd.StdinPipe()
	if err != nil {
		pr.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		pr.Close()
		return nil, err
	}
	// The pipe holds far less than its buffer: this never blocks on the child.
	werr := json.NewEncoder(in).Encode(cfg)
	if err := errors.Join(werr, in.Close()); err != nil {
		pr.Close()
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("handing the runner its settings: %w", err)
	}
	g.logger.Info("started a detached runner", "pid", cmd.Process.Pid, "log", filepath.Join(g.dataDir, runnerLogFile))
	go func() {
		b := make([]byte, 1)
		n, _ := pr.Read(b) // one byte once it holds the lock; EOF if it leaves without
		pr.Close()
		start.ok = n == 1
		close(start.done)
	}()
	// Reap it if it exits while we live; it is not ours to wait for otherwise.
	go cmd.Wait()
	g.starting = start
	return start, nil
}

// kicker returns the Service's Kick: make sure a runner will see new work.
func kicker(g *globals) func() {
	return func() {
		if _, err := startDetachedRunner(g); err != nil {
			g.logger.Error("could not start a runner", "err", err)
		}
	}
}

func newRunnerCmd(g *globals) *cobra.Command {
	var (
		idle          time.Duration
		settingsStdin bool
		readyFD       int
	)
	cmd := &cobra.Command{
		Use:   "runner",
		Short: "Drive sessions in the foreground (one runner per data directory)",
		Long: `The runner drives active sessions: it prepares workspaces, runs the agent for
each message in order and records events. MCP and CLI processes start one
detached when they need it; run it yourself to watch its log.`,
		Example: "  flapjack runner\n  flapjack runner --idle-timeout 5m",
		Args:    usageArgs(cobra.NoArgs),
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if settingsStdin {
			s, err := readSettingsFrom(g.stdin)
			if err != nil {
				return usageError{err}
			}
			g.useSettings(s)
		}
		cfg, err := g.settings()
		if err != nil {
			return err
		}
		if !cmd.Flags().Changed("idle-timeout") {
			idle = cfg.RunnerIdle
		}
		var ready *os.File
		if readyFD > 0 {
			ready = openReadyPipe(readyFD)
			defer ready.Close()
		}
		return runRunner(cmd.Context(), g, idle, ready)
	}
	cmd.Flags().DurationVar(&idle, "idle-timeout", 0, "exit after this long with no active session; 0 runs until stopped (env FLAPJACK_RUNNER_IDLE_TIMEOUT)")
	// How a process that starts a detached runner hands it its settings.
	cmd.Flags().BoolVar(&settingsStdin, "settings-stdin", false, "read the settings as JSON from stdin instead of the environment")
	cmd.Flags().MarkHidden("settings-stdin")
	// A detached runner's starter learns on this pipe that it holds the lock.
	cmd.Flags().IntVar(&readyFD, "ready-fd", 0, "write one byte to this file descriptor once the runner holds the data directory")
	cmd.Flags().MarkHidden("ready-fd")
	cmd.AddCommand(newRunnerStatusCmd(g))
	return cmd
}

// runRunner holds the lock and runs the runner until ctx ends or it idles out.
// After giving the lock up it looks once more for work, so a session committed
// while it was exiting is never left without a runner. A detached runner
// (ready not nil) that finds the lock held waits for it up to standbyWait,
// then tells its starter on ready; one run by hand leaves at once.
func runRunner(ctx context.Context, g *globals, idle time.Duration, ready *os.File) error {
	if err := os.MkdirAll(g.dataDir, 0o700); err != nil {
		return err
	}
	// Nobody probes the lock (liveness is read from the runner's record), so
	// a lock that is taken is another runner, or one about to let go.
	lock, ok, err := tryLockRunner(g.dataDir)
	if err != nil {
		return err
	}
	waited := false
	if !ok && ready != nil {
		wctx, cancel := context.WithTimeout(ctx, standbyWait)
		lock, err = waitLockRunner(wctx, g.dataDir)
		cancel()
		ok, waited = err == nil, true
	}
	if !ok {
		g.logger.Info("another runner holds this data directory; nothing to do", "dir", g.dataDir)
		return nil
	}
	a, err := openApp(ctx, g, nil)
	if err != nil {
		lock.unlock()
		return err
	}
	defer a.Close()
	if waited {
		// The runner it waited for is gone; stay only if it left work.
		if work, err := a.hasWork(ctx); err != nil || !work {
			lock.unlock()
			return err
		}
	}
	if ready != nil {
		ready.Write([]byte{1})
		ready.Close()
	}
	for {
		g.logger.Info("runner started", "pid", os.Getpid(), "dir", g.dataDir)
		err := a.runRunner(ctx, g.logger, idle)
		lock.unlock()
		if err != nil || ctx.Err() != nil {
			return err
		}
		work, err := a.hasWork(context.Background())
		if err != nil || !work {
			return err
		}
		if lock, ok, err = tryLockRunner(g.dataDir); err != nil || !ok {
			return err
		}
	}
}

// ensureRunnerForWork starts a runner at start-up when sessions are waiting.
func ensureRunnerForWork(ctx context.Context, g *globals, a *app) {
	work, err := a.hasWork(ctx)
	if err != nil {
		g.logger.Error("checking for active sessions", "err", err)
		return
	}
	if work {
		if _, err := startDetachedRunner(g); err != nil {
			g.logger.Error("could not start a runner", "err", fmt.Sprint(err))
		}
	}
}
