package core

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// RunLimits bound the runs of one runtime (RunnerConfig.Limits). Zero fields
// impose nothing.
type RunLimits struct {
	// MaxConcurrent is how many runs of the runtime may be prepared or executed
	// at once; the other sessions wait, in the order the runner found them.
	MaxConcurrent int
	// StallTimeout: a run that logs no event for this long gets a stalled event
	// (one per quiet spell), so a stuck agent is visible in the log.
	StallTimeout time.Duration
	// RunTimeout stops a run (its runtime's Execute) that takes longer, and
	// ends it in error saying it timed out.
	RunTimeout time.Duration
}

// runGate admits at most limit runs at once, strictly first come, first
// served: a waiter takes a free slot only when every waiter before it has one.
// A fair queue is what lets a waiting session be told its position.
type runGate struct {
	limit int

	mu      sync.Mutex
	running int
	queue   []string // session ids in arrival order
	// changed is closed (and replaced) whenever a slot frees or the queue
	// moves, waking every waiter to look at its position again.
	changed chan struct{}
}

func newRunGate(limit int) *runGate {
	return &runGate{limit: limit, changed: make(chan struct{})}
}

// notifyLocked wakes the waiters; g.mu is held.
func (g *runGate) notifyLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// enqueue puts a session at the end of the queue unless it is queued already.
// The runner enqueues in its scan, oldest session first, so the queue order
// is the sessions' start order whatever order their goroutines run in.
func (g *runGate) enqueue(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !slices.Contains(g.queue, id) {
		g.queue = append(g.queue, id)
	}
}

// leave takes a session out of the queue (it stopped waiting).
func (g *runGate) leave(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if i := slices.Index(g.queue, id); i >= 0 {
		g.queue = slices.Delete(g.queue, i, i+1)
		g.notifyLocked()
	}
}

// tryAcquire gives the session a slot if its turn has come: the sessions
// before it in the queue fill the free slots first. Otherwise it returns its
// place in line (1 = next when a slot frees) and a channel closed at the next
// change.
func (g *runGate) tryAcquire(id string) (ok bool, position int, changed <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := slices.Index(g.queue, id)
	if i < 0 {
		g.queue = append(g.queue, id)
		i = len(g.queue) - 1
	}
	free := g.limit - g.running
	if i < free {
		g.queue = slices.Delete(g.queue, i, i+1)
		g.running++
		g.notifyLocked()
		return true, 0, nil
	}
	return false, i - max(free, 0) + 1, g.changed
}

// release frees a slot.
func (g *runGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running--
	g.notifyLocked()
}

// active returns the number of held slots and of waiters.
func (g *runGate) active() (running, waiting int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running, len(g.queue)
}

// slotHold is a driver's claim on its runtime's gate: the slot is held from
// the first run until the session needs the runner no more, so follow-ups
// queued behind a run do not lose their turn.
type slotHold struct {
	gate *runGate
	id   string
	held bool
}

// done gives the slot back and leaves the queue.
func (h *slotHold) done() {
	if h.gate == nil {
		return
	}
	h.gate.leave(h.id)
	if h.held {
		h.held = false
		h.gate.release()
	}
}

// waitForSlot makes sure the session's driver holds a run slot of its
// runtime. It returns true when the caller may go on with ss as read (no gate,
// the slot already held, or a slot free at once); false when it waited (or
// gave up because ctx ended or the session moved on), so the caller must read
// the session again. While it waits, a status event tells the session's log
// its position whenever that changes.
func (r *Runner) waitForSlot(ctx context.Context, log *slog.Logger, h *slotHold, ss Session) bool {
	if h.gate == nil || h.held {
		return true
	}
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	last := 0
	for {
		ok, pos, changed := h.gate.tryAcquire(ss.ID)
		if ok {
			h.held = true
			return last == 0
		}
		if pos != last {
			last = pos
			r.queuedEvent(ctx, log, ss, pos, h.gate.limit)
		}
		select {
		case <-ctx.Done():
			h.gate.leave(ss.ID)
			return false
		case <-changed:
		case <-t.C:
			// Cancelled or archived by another process while waiting?
			cur, err := r.cfg.Store.GetSession(ctx, ss.ID)
			if err == nil && (cur.Status != ss.Status || cur.Archived) {
				h.gate.leave(ss.ID)
				return false
			}
		}
	}
}

// queuedEvent logs that the session waits for a run slot, and where in line.
// It is appended outside Apply: the session does not change, and no webhook
// should fire for it.
func (r *Runner) queuedEvent(ctx context.Context, log *slog.Logger, ss Session, position, limit int) {
	now := r.cfg.Clock.Now()
	ev := EventInput{Type: EventStatus, CreatedAt: now, Payload: mustJSON(map[string]any{
		"status":          ss.Status,
		"previous_status": ss.Status,
		"queued":          true,
		"queue_position":  position,
		"reason":          fmt.Sprintf("queued: position %d, waiting for one of the %d run slots of the %s runtime", position, limit, ss.Runtime),
	})}
	if _, err := r.cfg.Store.AppendEvents(ctx, ss.ID, []EventInput{ev}); err != nil && ctx.Err() == nil {
		log.Error("runner: logging the queue position", "err", err)
	}
}
