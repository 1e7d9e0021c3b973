package local

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// pollInterval is how often a stopping process is checked.
const pollInterval = 20 * time.Millisecond

// killWait bounds the wait for a process group after SIGKILL.
const killWait = 5 * time.Second

// sessionEnv is the variable that marks every process of a session's run; it
// tells a live run apart from an unrelated process that reused its pid.
const sessionEnv = "FLAPJACK_SESSION_ID"

// parseHandle reads a run handle: the agent's process group id.
func parseHandle(h string) (int, bool) {
	pgid, err := strconv.Atoi(strings.TrimSpace(h))
	if err != nil || pgid <= 1 {
		return 0, false
	}
	return pgid, true
}

// safeGroup reports whether pgid may be signalled: never init, never our own
// group (that would stop the runner or the caller).
func safeGroup(pgid int) bool {
	return pgid > 1 && pgid != syscall.Getpgrp() && pgid != os.Getpid()
}

// signalGroup sends sig to every process of group pgid.
func signalGroup(pgid int, sig syscall.Signal) error {
	if !safeGroup(pgid) {
		return fmt.Errorf("refusing to signal process group %d", pgid)
	}
	return syscall.Kill(-pgid, sig)
}

// procStat reads a process's state letter and process group from
// /proc/<pid>/stat; ok is false when there is no such process.
func procStat(pid int) (state byte, pgrp int, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name (field 2) is in parentheses and may hold anything.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 3 || f[0] == "" {
		return 0, 0, false
	}
	pgrp, err = strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], pgrp, true
}

// running reports whether pid is a process that has not exited; a zombie has
// exited and only waits for its parent, which may be another process.
func running(pid int) bool {
	st, _, ok := procStat(pid)
	return ok && st != 'Z' && st != 'X' && st != 'x'
}

// leaderRunning reports whether pgid's leader is running and still leads it.
func leaderRunning(pgid int) bool {
	st, pgrp, ok := procStat(pgid)
	return ok && pgrp == pgid && st != 'Z' && st != 'X' && st != 'x'
}

// groupMembers lists the running processes of group pgid.
func groupMembers(pgid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, pgrp, ok := procStat(pid); ok && pgrp == pgid && st != 'Z' && st != 'X' && st != 'x' {
			pids = append(pids, pid)
		}
	}
	return pids
}

// ownedBy reports whether pid belongs to the session's run: it carries the
// session's marker in its environment, or works in the session's workspace
// (for an agent that replaced its environment).
func ownedBy(pid int, sessionID, ws string) bool {
	proc := "/proc/" + strconv.Itoa(pid)
	if env, err := os.ReadFile(proc + "/environ"); err == nil {
		marker := []byte(sessionEnv + "=" + sessionID)
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, marker) {
				return true
			}
		}
	}
	cwd, err := os.Readlink(proc + "/cwd")
	if err != nil {
		return false
	}
	if real, err := filepath.EvalSymlinks(ws); err == nil {
		ws = real
	}
	return cwd == ws || strings.HasPrefix(cwd, ws+string(filepath.Separator))
}

// markedGroup is the process group of a running process that carries the
// session's marker in its environment, 0 when there is none.
func markedGroup(sessionID string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	marker := []byte(sessionEnv + "=" + sessionID)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(env, marker) {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, marker) {
				if st, pgrp, ok := procStat(pid); ok && st != 'Z' && st != 'X' && st != 'x' && safeGroup(pgrp) {
					return pgrp
				}
			}
		}
	}
	return 0
}

// watchLag is how long the runner may take to see that a run was cancelled
// (its watch interval, with room).
const watchLag = 500 * time.Millisecond

// asksToStop reports whether the session's agent is stopped by asking it
// (an ACP agent) before it is signalled.
func (r *Runtime) asksToStop(ws string) bool {
	st, err := openState(ws)
	if err != nil {
		return false
	}
	ad, ok := adapterFor(st.get().Agent)
	return ok && ad.acp
}

// awaitRunEnd waits until the runner recorded the run's end (the handle is
// cleared) or the deadline; it returns the handle then ("" when ended).
func (r *Runtime) awaitRunEnd(ctx context.Context, id, handle string, deadline time.Time) string {
	if r.sessions == nil {
		return handle
	}
	for time.Now().Before(deadline) {
		cur, err := r.sessions.GetSession(ctx, id)
		if err != nil {
			return handle
		}
		if cur.RunHandle == "" {
			return ""
		}
		handle = cur.RunHandle
		select {
		case <-ctx.Done():
			return handle
		case <-time.After(pollInterval):
		}
	}
	return handle
}

// Cancel stops the session's agent from any process: it records the
// cancellation first (so the agent's death is not read as a failure), then
// sends SIGTERM to the agent's process group, and SIGKILL after the grace
// period. A handle whose process is gone, or is no longer the session's agent
// (its pid reused), is left alone.
//
// With Sessions it also waits until the runner has recorded the run's end
// (it clears the handle once the agent exited and its output was drained), so
// a cancel that lands between the run's start and its agent's start still
// answers only when the agent is gone. The wait is bounded, in case no
// runner is alive to record anything.
func (r *Runtime) Cancel(ctx context.Context, s core.Session, markCancelled func(context.Context) error) error {
	if err := markCancelled(ctx); err != nil {
		return err
	}
	ws, err := r.workspace(s.ID)
	if err != nil {
		return nil
	}
	deadline := time.Now().Add(r.killGrace + killWait)
	stopped := map[int]bool{}
	handle := s.RunHandle
	if r.asksToStop(ws) {
		// An ACP agent is asked to end its turn (session/cancel) by the
		// runner, which sees the cancelled status: give that the grace
		// before signalling.
		handle = r.awaitRunEnd(ctx, s.ID, handle, time.Now().Add(r.killGrace+watchLag))
		if handle == "" {
			return nil
		}
	}
	for {
		pgid, ok := parseHandle(handle)
		if !ok || !safeGroup(pgid) || !leaderRunning(pgid) {
			// The agent may have started after the handle was read, before
			// it was recorded: find its group by the session's marker.
			pgid = markedGroup(s.ID)
		}
		if pgid != 0 && !stopped[pgid] {
			stopped[pgid] = true
			if ownedBy(pgid, s.ID, ws) {
				r.log.InfoContext(ctx, "stopping agent", "session", s.ID, "pgid", pgid)
				// Wait for the whole group, not just its leader: a child still
				// exiting would make "stopped" untrue.
				if err := r.stopGroup(ctx, pgid, func() bool { return len(groupMembers(pgid)) == 0 }); err != nil {
					return err
				}
			} else {
				r.log.WarnContext(ctx, "run handle names a process of another program; not signalling it", "session", s.ID, "pgid", pgid)
			}
		}
		if r.sessions == nil {
			return nil
		}
		cur, err := r.sessions.GetSession(ctx, s.ID)
		if err != nil || cur.RunHandle == "" {
			return nil
		}
		if time.Now().After(deadline) {
			r.log.WarnContext(ctx, "the runner has not recorded the cancelled run's end; answering anyway", "session", s.ID)
			return nil
		}
		handle = cur.RunHandle
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// stopGroup sends SIGTERM to group pgid, waits up to the kill grace for gone,
// then sends SIGKILL and waits a bounded time again.
func (r *Runtime) stopGroup(ctx context.Context, pgid int, gone func() bool) error {
	if err := signalGroup(pgid, syscall.SIGTERM); err != nil {
		return nil // already gone (ESRCH) or not ours to signal
	}
	if done, err := waitUntil(ctx, r.killGrace, gone); done || err != nil {
		if err != nil {
			_ = signalGroup(pgid, syscall.SIGKILL)
		}
		return err
	}
	r.log.InfoContext(ctx, "agent ignored SIGTERM; killing", "pgid", pgid)
	_ = signalGroup(pgid, syscall.SIGKILL)
	done, err := waitUntil(ctx, killWait, gone)
	if err != nil {
		return err
	}
	if !done {
		r.log.WarnContext(ctx, "agent still running after SIGKILL", "pgid", pgid)
	}
	return nil
}

// waitUntil polls cond until it holds (true), d passes (false) or ctx ends.
func waitUntil(ctx context.Context, d time.Duration, cond func() bool) (bool, error) {
	deadline := time.Now().Add(d)
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if cond() {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C:
		}
	}
}
