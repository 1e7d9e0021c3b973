package core

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// errRunTimedOut is the cancel cause of a run stopped by RunLimits.RunTimeout.
var errRunTimedOut = errors.New("run timed out")

// liveSink notes when the runtime last logged an event, so a quiet run can
// be flagged as stalled.
type liveSink struct {
	RunSink
	last atomic.Int64 // unix nanoseconds
}

func (s *liveSink) Emit(e EventInput) {
	s.last.Store(time.Now().UnixNano())
	s.RunSink.Emit(e)
}

// liveness is the stall watch and the time limit of one run.
type liveness struct {
	limits RunLimits
	sink   *liveSink
	ctx    context.Context
	stop   context.CancelFunc
	done   chan struct{}
}

// watchRun applies the runtime's limits to a run: the returned context ends
// at RunTimeout, and while the run lasts a stalled event is logged through w
// after every StallTimeout without an event.
func (r *Runner) watchRun(ctx context.Context, spec RunSpec, sink RunSink, w *EventWriter) *liveness {
	lv := &liveness{limits: r.cfg.Limits[spec.Session.Runtime], sink: &liveSink{RunSink: sink}, done: make(chan struct{})}
	lv.sink.last.Store(time.Now().UnixNano())
	if lv.limits.RunTimeout > 0 {
		lv.ctx, lv.stop = context.WithTimeoutCause(ctx, lv.limits.RunTimeout, errRunTimedOut)
	} else {
		lv.ctx, lv.stop = context.WithCancel(ctx)
	}
	stall := lv.limits.StallTimeout
	if stall <= 0 {
		close(lv.done)
		return lv
	}
	tick := min(max(stall/4, time.Millisecond), time.Second)
	go func() {
		defer close(lv.done)
		t := time.NewTicker(tick)
		defer t.Stop()
		var flagged int64 // the last event time already reported as stalled
		for {
			select {
			case <-lv.ctx.Done():
				return
			case <-t.C:
			}
			last := lv.sink.last.Load()
			idle := time.Since(time.Unix(0, last))
			if idle < stall || last == flagged {
				continue
			}
			flagged = last
			ev := EventInput{MessageID: spec.Message.ID, CursorRunID: spec.RunID, Type: EventStalled, CreatedAt: r.cfg.Clock.Now(),
				Payload: mustJSON(map[string]any{
					"message":      fmt.Sprintf("no event for %s: the agent may be stuck; cancel the session to stop it", idle.Round(time.Millisecond)),
					"idle_seconds": int64(idle.Seconds()),
				})}
			w.Emit(ev)
		}
	}()
	return lv
}

// end stops the watch; it reports whether the run hit its time limit.
func (lv *liveness) end() (timedOut bool) {
	timedOut = errors.Is(context.Cause(lv.ctx), errRunTimedOut)
	lv.stop()
	<-lv.done
	return timedOut
}

// timeoutError is the outcome error of a run stopped by its time limit.
func (lv *liveness) timeoutError() string {
	return fmt.Sprintf("the run timed out: it was stopped after %s", lv.limits.RunTimeout)
}
