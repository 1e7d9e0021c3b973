package local

import (
	"context"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/platform"
)

// pollInterval is how often a stopping process is checked.
const pollInterval = 20 * time.Millisecond

// killWait bounds the wait for a process group after SIGKILL.
const killWait = 5 * time.Second

// sessionEnv is the variable that marks every process of a session's run; it
// tells a live run apart from an unrelated process that reused its pid.
const sessionEnv = "FLAPJACK_SESSION_ID"

// parseHandle reads a run handle: the agent's process group (its leader's
// pid, pgid = pid) and the leader's start time when it was recorded.
func parseHandle(h string) (platform.Proc, bool) { return platform.ParseProc(h) }

// ownsGroup reports whether the group a handle names is still the session's
// run, so it may be stopped: its leader is the process the handle recorded
// (same pid, same start time), or the leader is gone and the rest of its
// group lives on (a group's id is not reused while the group exists). A
// handle without a start time (from an older flapjack) is checked by what
// the group's processes say about themselves, where the OS tells (markedBy).
func ownsGroup(h platform.Proc, sessionID, ws string) bool {
	if !platform.SafeGroup(h.PID) || !platform.GroupAlive(h.PID) {
		return false
	}
	if h.Start != 0 {
		if _, running := platform.Identify(h.PID); !running {
			return true
		}
		return h.Running()
	}
	return markedBy(h.PID, sessionID, ws)
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
		h, ok := parseHandle(handle)
		if !ok || !platform.SafeGroup(h.PID) || !platform.GroupAlive(h.PID) {
			// The agent may have started after the handle was read, before
			// it was recorded: find its group by the session's marker.
			h = platform.Proc{PID: markedGroup(s.ID)}
		}
		pgid := h.PID
		if pgid != 0 && !stopped[pgid] {
			stopped[pgid] = true
			if ownsGroup(h, s.ID, ws) {
				r.log.InfoContext(ctx, "stopping agent", "session", s.ID, "pgid", pgid)
				// Wait for the whole group, not just its leader: a child still
				// exiting would make "stopped" untrue.
				if err := r.stopGroup(ctx, pgid, func() bool { return !platform.GroupAlive(pgid) }); err != nil {
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

// stopGroup asks group pgid to stop (SIGTERM, or CTRL_BREAK on Windows),
// waits up to the kill grace for gone, then forces it and waits a bounded
// time again.
func (r *Runtime) stopGroup(ctx context.Context, pgid int, gone func() bool) error {
	if err := platform.StopGroup(pgid, false); err != nil && !platform.GroupAlive(pgid) {
		return nil // already gone, or not ours to stop
	}
	if done, err := waitUntil(ctx, r.killGrace, gone); done || err != nil {
		if err != nil {
			_ = platform.StopGroup(pgid, true)
		}
		return err
	}
	r.log.InfoContext(ctx, "agent ignored the request to stop; killing", "pgid", pgid)
	_ = platform.StopGroup(pgid, true)
	done, err := waitUntil(ctx, killWait, gone)
	if err != nil {
		return err
	}
	if !done {
		r.log.WarnContext(ctx, "agent still running after it was killed", "pgid", pgid)
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
