package core

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DefaultSweepInterval is how often a runner looks for workspaces past their
// time to live.
const DefaultSweepInterval = time.Minute

// WorkspaceHolder is a Runtime that keeps files on this machine for each
// session (the local runtime's git workspace). The runner releases them once a
// session has ended more than RunnerConfig.WorkspaceTTL ago, and the session
// becomes expired, so finished sessions do not fill the disk.
type WorkspaceHolder interface {
	// ReleaseWorkspace removes what the session keeps on this machine. It is
	// idempotent and cheap when there is nothing left.
	ReleaseWorkspace(ctx context.Context, s Session) error
}

// sweep expires the sessions that ended more than WorkspaceTTL ago on a
// runtime with workspaces, and removes their workspaces. A session is marked
// expired first, in one compare-and-set: a follow-up racing with the sweep
// either wins (the session runs again and keeps its workspace) or is refused
// with SESSION_EXPIRED, never run in a workspace being deleted. Expired
// sessions are swept again, so a removal that failed is retried.
func (r *Runner) sweep(ctx context.Context) {
	ttl := r.cfg.WorkspaceTTL
	if ttl <= 0 {
		return
	}
	log := r.cfg.Logger
	no := false
	list, err := r.cfg.Store.ListSessions(ctx, SessionFilter{
		Statuses: []Status{StatusFinished, StatusError, StatusCancelled, StatusExpired},
		Archived: &no, OldestFirst: true,
	})
	if err != nil {
		if ctx.Err() == nil {
			log.Error("runner: listing sessions to expire", "err", err)
		}
		return
	}
	now := r.cfg.Clock.Now()
	for _, s := range list {
		if ctx.Err() != nil {
			return
		}
		holder, ok := r.cfg.Runtimes[s.Runtime].(WorkspaceHolder)
		if !ok {
			continue
		}
		sl := log.With("session", s.ID)
		if s.Status != StatusExpired {
			if now.Sub(endedAt(s)) < ttl {
				continue
			}
			reason := fmt.Sprintf("expired: the workspace was removed %s after the session ended; start a new session to go on", ttl)
			ch, err := decideExpire(s, now, reason)
			if err != nil {
				continue
			}
			at(r.cfg.Step, StepDecided)
			if _, err := r.cfg.Store.Apply(ctx, ch); err != nil {
				if !errors.Is(err, ErrConflict) && ctx.Err() == nil {
					sl.Error("runner: expiring session", "err", err)
				}
				continue
			}
			s = ch.Session
			sl.Info("runner: session expired", "ttl", ttl)
			at(r.cfg.Step, StepExpireCommitted)
		}
		if err := holder.ReleaseWorkspace(ctx, s); err != nil && ctx.Err() == nil {
			sl.Warn("runner: removing an expired session's workspace failed; will retry", "err", err)
		}
	}
}

// endedAt is when a terminal session ended.
func endedAt(s Session) time.Time {
	switch {
	case s.CompletedAt != nil:
		return *s.CompletedAt
	case s.LastEventAt != nil:
		return *s.LastEventAt
	}
	return s.CreatedAt
}

// sweeper runs sweep at start and then every interval, one sweep at a time,
// beside the runner's scan so a slow removal never delays new work.
type sweeper struct {
	last    time.Time
	running chan struct{} // non-nil while a sweep runs; closed when it ends
}

// maybeSweep starts a sweep when one is due and none is running.
func (r *Runner) maybeSweep(ctx context.Context, sw *sweeper) {
	if r.cfg.WorkspaceTTL <= 0 {
		return
	}
	if sw.running != nil {
		select {
		case <-sw.running:
			sw.running = nil
		default:
			return
		}
	}
	every := r.cfg.SweepInterval
	if every <= 0 {
		// At least every min(TTL/2, 1 min): a short TTL is honoured
		// within half of it.
		every = min(DefaultSweepInterval, max(r.cfg.WorkspaceTTL/2, time.Second))
	}
	if !sw.last.IsZero() && time.Since(sw.last) < every {
		return
	}
	sw.last = time.Now()
	done := make(chan struct{})
	sw.running = done
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(done)
		r.sweep(ctx)
	}()
}

// ExpiryDue reports whether a session's workspace will be past its TTL
// within the given time: a runner must exist for it then, so one does not
// idle out before, and waiting processes start one when it is due.
func ExpiryDue(ctx context.Context, st Store, ttl, within time.Duration, now time.Time) (bool, error) {
	if ttl <= 0 {
		return false, nil
	}
	no := false
	list, err := st.ListSessions(ctx, SessionFilter{
		Statuses: []Status{StatusFinished, StatusError, StatusCancelled},
		Archived: &no, OldestFirst: true,
	})
	if err != nil {
		return false, err
	}
	for _, s := range list {
		if s.Runtime == RuntimeLocal && !endedAt(s).Add(ttl).After(now.Add(within)) {
			return true, nil
		}
	}
	return false, nil
}
