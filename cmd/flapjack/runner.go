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
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

const (
	runnerLockFile = "runner.lock"
	runnerLogFile  = "runner.log"
	// detachedIdle is how long a runner started on demand waits for more work.
	detachedIdle = 60 * time.Second
)

// runnerLock is the exclusive flock that makes the runner a singleton per data
// directory. The kernel drops it when the process dies, so a crashed runner
// never blocks the next one.
type runnerLock struct {
	f *os.File
	// stopBeat ends the liveness record (see liveness.go).
	stopBeat func()
}

// tryLockRunner takes the lock without waiting; ok is false when another
// process holds it.
func tryLockRunner(dataDir string) (l *runnerLock, ok bool, err error) {
	f, err := os.OpenFile(filepath.Join(dataDir, runnerLockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, err
	}
	// Record our pid for humans and status commands; the lock is what counts.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &runnerLock{f: f, stopBeat: keepBeating(dataDir)}, true, nil
}

func (l *runnerLock) unlock() {
	l.stopBeat()
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
}

// startDetachedRunner starts "flapjack runner" in its own session with its
// output in runner.log, unless a runner is alive (its liveness record says
// so; the lock is never probed). Two processes may both start one: the
// second finds the lock taken and leaves. The child outlives this process,
// so sessions keep running after an MCP client quits. It runs on this
// process's settings, handed over on its stdin, not on its environment.
func startDetachedRunner(g *globals) error {
	if _, alive := runnerAlive(g.dataDir); alive {
		return nil
	}
	cfg, err := g.settings()
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(g.dataDir, runnerLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(exe, "runner", "--data-dir", g.dataDir, "--log-level", g.logLevel, "--idle-timeout", detachedIdle.String(), "--settings-stdin")
	cmd.Env = childEnv(os.Environ())
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	// The pipe holds far less than its buffer: this never blocks on the child.
	werr := json.NewEncoder(in).Encode(cfg)
	if err := errors.Join(werr, in.Close()); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("handing the runner its settings: %w", err)
	}
	g.logger.Info("started a detached runner", "pid", cmd.Process.Pid, "log", filepath.Join(g.dataDir, runnerLogFile))
	// Reap it if it exits while we live; it is not ours to wait for otherwise.
	go cmd.Wait()
	return nil
}

// kicker returns the Service's Kick: make sure a runner will see new work.
func kicker(g *globals) func() {
	return func() {
		if err := startDetachedRunner(g); err != nil {
			g.logger.Error("could not start a runner", "err", err)
		}
	}
}

func newRunnerCmd(g *globals) *cobra.Command {
	var (
		idle          time.Duration
		settingsStdin bool
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
		return runRunner(cmd.Context(), g, idle)
	}
	cmd.Flags().DurationVar(&idle, "idle-timeout", 0, "exit after this long with no active session; 0 runs until stopped (env FLAPJACK_RUNNER_IDLE_TIMEOUT)")
	// How a process that starts a detached runner hands it its settings.
	cmd.Flags().BoolVar(&settingsStdin, "settings-stdin", false, "read the settings as JSON from stdin instead of the environment")
	cmd.Flags().MarkHidden("settings-stdin")
	cmd.AddCommand(newRunnerStatusCmd(g))
	return cmd
}

// runRunner holds the lock and runs the runner until ctx ends or it idles out.
// After giving the lock up it looks once more for work, so a session committed
// while it was exiting is never left without a runner.
func runRunner(ctx context.Context, g *globals, idle time.Duration) error {
	if err := os.MkdirAll(g.dataDir, 0o700); err != nil {
		return err
	}
	// Nobody probes the lock (liveness is read from the runner's record), so
	// a lock that is taken is another runner.
	lock, ok, err := tryLockRunner(g.dataDir)
	if err != nil {
		return err
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
		if err := startDetachedRunner(g); err != nil {
			g.logger.Error("could not start a runner", "err", fmt.Sprint(err))
		}
	}
}
