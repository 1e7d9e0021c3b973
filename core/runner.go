package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// RunnerConfig wires a Runner.
type RunnerConfig struct {
	Store    Store
	Box      *Box
	Clock    Clock
	Runtimes map[string]Runtime
	Logger   *slog.Logger
	// PollInterval is how often the database is checked for new work (default 100ms).
	PollInterval time.Duration
	// IdleTimeout makes Run return after this long without active sessions or
	// pending webhook deliveries; 0 runs until the context ends.
	IdleTimeout time.Duration
	// Limits bound the runs of each runtime, by runtime name (concurrency,
	// stall and time limits); a runtime without an entry has none.
	Limits map[string]RunLimits
	// WorkspaceTTL expires sessions that ended this long ago on a runtime that
	// keeps workspaces (WorkspaceHolder), removing them; 0 keeps them forever.
	WorkspaceTTL time.Duration
	// SweepInterval is how often expiry is checked (default DefaultSweepInterval).
	SweepInterval time.Duration
	// Redactor hides secrets in events, errors and logs; each run's Cursor
	// key is added to it while the run lasts.
	Redactor *Redactor
	// Step, for tests, is called at each interleaving point (see Step).
	Step func(Step)
}

// Runner drives active sessions: it moves them through the state machine, runs
// their messages one at a time on their runtime, and records the outcome. There
// is exactly one per data directory (the caller holds the lock).
type Runner struct {
	cfg     RunnerConfig
	mu      sync.Mutex
	driving map[string]bool
	wg      sync.WaitGroup
	// gates hold the run slots of runtimes with Limits.MaxConcurrent.
	gates map[string]*runGate
}

// NewRunner returns a Runner.
func NewRunner(cfg RunnerConfig) *Runner {
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	if cfg.Redactor == nil {
		cfg.Redactor = NewRedactor()
	}
	cfg.Logger = slog.New(RedactHandler(cfg.Logger.Handler(), cfg.Redactor))
	r := &Runner{cfg: cfg, driving: map[string]bool{}, gates: map[string]*runGate{}}
	for name, l := range cfg.Limits {
		if l.MaxConcurrent > 0 {
			r.gates[name] = newRunGate(l.MaxConcurrent)
		}
	}
	return r
}

// scrubEvery is how often a runner checkpoints the WAL, so wiped bytes a
// busy checkpoint left behind do not stay on disk.
const scrubEvery = 10 * time.Second

// rescanEvery re-reads the work list even when data_version has not moved, as a
// safety net; data_version is the fast path.
const rescanEvery = 2 * time.Second

// Run adopts every active session and then picks up new work as it is committed,
// until ctx ends or the runner has been idle for IdleTimeout. On return every
// session it was driving has been handed back in a consistent state.
func (r *Runner) Run(ctx context.Context) error {
	driveCtx, stop := context.WithCancel(context.Background())
	defer func() {
		stop()
		r.wg.Wait()
	}()
	tick := time.NewTicker(r.cfg.PollInterval)
	defer tick.Stop()
	lastVersion := int64(-1)
	var lastScan time.Time
	var sw sweeper
	var lastScrub time.Time
	idleSince := time.Now()
	for {
		v, err := r.cfg.Store.DataVersion(ctx)
		if err != nil && ctx.Err() == nil {
			r.cfg.Logger.Error("runner: reading data_version", "err", err)
		}
		if v != lastVersion || time.Since(lastScan) >= rescanEvery {
			lastVersion, lastScan = v, time.Now()
			if err := r.scan(ctx, driveCtx); err != nil && ctx.Err() == nil {
				r.cfg.Logger.Error("runner: scanning for work", "err", err)
			}
		}
		r.maybeSweep(driveCtx, &sw)
		if time.Since(lastScrub) >= scrubEvery {
			// Wiped bytes (archived keys) a checkpoint could not remove
			// while a reader held the WAL leave the disk now.
			lastScrub = time.Now()
			if err := r.cfg.Store.Scrub(ctx); err != nil && ctx.Err() == nil {
				r.cfg.Logger.Debug("runner: WAL checkpoint postponed", "err", err)
			}
		}
		if r.busy() {
			idleSince = time.Now()
		} else if r.cfg.IdleTimeout > 0 && time.Since(idleSince) >= r.cfg.IdleTimeout {
			// Webhooks still to send keep the runner (and its delivery loop)
			// alive, and so does a workspace expiry due within another idle
			// window: leaving would strand it until someone starts a runner.
			pending, err := r.cfg.Store.HasPendingDeliveries(ctx)
			expiring, err2 := ExpiryDue(ctx, r.cfg.Store, r.cfg.WorkspaceTTL, r.cfg.IdleTimeout, r.cfg.Clock.Now())
			if err == nil && err2 == nil && (pending || expiring) {
				idleSince = time.Now()
			} else {
				r.cfg.Logger.Info("runner: idle, exiting", "idle", r.cfg.IdleTimeout)
				return nil
			}
		}
		select {
		case <-ctx.Done():
			r.cfg.Logger.Info("runner: stopping, handing sessions over")
			return nil
		case <-tick.C:
		}
	}
}

// HasWork reports whether any session, webhook delivery or workspace expiry
// (with this TTL, 0 for none) needs a runner now; a
// process that gives up the runner lock checks this afterwards, so work
// committed meanwhile is not lost.
func HasWork(ctx context.Context, st Store, ttl time.Duration) (bool, error) {
	list, err := st.ListSessions(ctx, activeFilter())
	if err != nil || len(list) > 0 {
		return len(list) > 0, err
	}
	if pending, err := st.HasPendingDeliveries(ctx); err != nil || pending {
		return pending, err
	}
	return ExpiryDue(ctx, st, ttl, 0, time.Now())
}

func activeFilter() SessionFilter {
	no := false
	return SessionFilter{Statuses: []Status{StatusPending, StatusCreating, StatusRunning}, Archived: &no, OldestFirst: true}
}

func (r *Runner) busy() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.driving) > 0
}

// scan starts a driver for every active session that has none.
func (r *Runner) scan(ctx, driveCtx context.Context) error {
	list, err := r.cfg.Store.ListSessions(ctx, activeFilter())
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range list {
		if r.driving[s.ID] || driveCtx.Err() != nil {
			continue
		}
		r.driving[s.ID] = true
		if g := r.gates[s.Runtime]; g != nil && (s.Status == StatusPending || s.Status == StatusCreating) {
			// Queued here, oldest first, so the turn is the start order.
			g.enqueue(s.ID)
		}
		r.wg.Add(1)
		go func(id string) {
			defer r.wg.Done()
			defer func() {
				r.mu.Lock()
				delete(r.driving, id)
				r.mu.Unlock()
			}()
			r.drive(driveCtx, id)
		}(s.ID)
	}
	return nil
}

// drive moves one session along until it needs nothing more from the runner.
// Every step re-reads the session, so a cancel or archive by another process
// is seen at the next step.
func (r *Runner) drive(ctx context.Context, id string) {
	log := r.cfg.Logger.With("session", id)
	hold := &slotHold{id: id}
	defer hold.done()
	for ctx.Err() == nil {
		ss, err := r.cfg.Store.GetSession(ctx, id)
		if err != nil {
			if ctx.Err() == nil {
				log.Error("runner: reading session", "err", err)
			}
			return
		}
		msgs, err := r.cfg.Store.ListMessages(ctx, id)
		if err != nil {
			log.Error("runner: reading messages", "err", err)
			return
		}
		if ss.Archived {
			return
		}
		hold.gate = r.gates[ss.Runtime]
		running, next := openMessages(msgs)
		switch {
		case ss.Status == StatusPending:
			// A session waits for a run slot in pending.
			if !r.waitForSlot(ctx, log, hold, ss) {
				continue
			}
			r.decide(ctx, log, id, func(s Session, _ []Message) (Change, error) {
				if s.Status != StatusPending {
					return Change{}, errNoChange // moved on meanwhile; the loop re-reads
				}
				return decidePrepare(s, r.cfg.Clock.Now())
			})

		case ss.Status == StatusCreating:
			m := next
			if running != nil {
				m = running
			}
			if m == nil {
				r.endSession(ctx, log, ss, StatusError, "the session has no message to run")
				continue
			}
			rt := r.cfg.Runtimes[ss.Runtime]
			if rt == nil {
				r.failMessage(ctx, log, ss, *m, fmt.Sprintf("this runner has no %q runtime", ss.Runtime))
				continue
			}
			if !r.waitForSlot(ctx, log, hold, ss) {
				continue
			}
			r.prepareAndRun(ctx, log, rt, ss, *m, msgs)

		case ss.Status == StatusRunning:
			rt := r.cfg.Runtimes[ss.Runtime]
			switch {
			case rt == nil:
				r.endSession(ctx, log, ss, StatusError, fmt.Sprintf("this runner has no %q runtime", ss.Runtime))
			case running != nil:
				// A run this runner did not start: its runner went away.
				spec, err := r.spec(ss, *running, msgs, true)
				if err != nil {
					r.failMessage(ctx, log, ss, *running, err.Error())
					continue
				}
				if running.CursorRunID != nil {
					spec.RunID = *running.CursorRunID
				}
				r.execute(ctx, log, rt, spec)
			case next != nil:
				if r.waitForSlot(ctx, log, hold, ss) {
					r.prepareAndRun(ctx, log, rt, ss, *next, msgs)
				}
			default:
				r.endSession(ctx, log, ss, lastOutcome(msgs), "")
			}

		case next != nil && ss.Status != StatusExpired:
			// Terminal with a queued message (left by a run that failed under a
			// previous runner): start its run.
			r.decide(ctx, log, id, func(s Session, _ []Message) (Change, error) {
				if !s.Status.Terminal() {
					return Change{}, errNoChange
				}
				return decideResumeQueued(s, r.cfg.Clock.Now())
			})

		default:
			return
		}
	}
}

// openMessages returns the running message and the oldest queued one.
func openMessages(msgs []Message) (running, next *Message) {
	for i := range msgs {
		switch msgs[i].Status {
		case MessageRunning:
			if running == nil {
				running = &msgs[i]
			}
		case MessageQueued:
			if next == nil {
				next = &msgs[i]
			}
		}
	}
	return running, next
}

// lastOutcome maps the last finished message to a session status.
func lastOutcome(msgs []Message) Status {
	for i := len(msgs) - 1; i >= 0; i-- {
		switch msgs[i].Status {
		case MessageFinished:
			return StatusFinished
		case MessageError:
			return StatusError
		case MessageCancelled:
			return StatusCancelled
		}
	}
	return StatusFinished
}

func (r *Runner) spec(ss Session, m Message, msgs []Message, adopted bool) (RunSpec, error) {
	prompt := m.Prompt
	if ss.Preamble != "" {
		prompt = ss.Preamble + "\n\n" + m.Prompt
	}
	followUp := false
	for _, o := range msgs {
		if o.ID != m.ID && o.StartedAt != nil {
			followUp = true
		}
	}
	spec := RunSpec{Session: ss, Message: m, Prompt: prompt, FollowUp: followUp, Adopted: adopted}
	if m.CursorRunID != nil {
		spec.RunID = *m.CursorRunID
	}
	if ss.CursorKeyCiphertext != nil && r.cfg.Box != nil {
		key, err := r.cfg.Box.Open(ss.CursorKeyCiphertext, PurposeCursorKey, ss.OrgID, ss.ID)
		if err != nil {
			// Never run it keyless: the agent would act without the
			// credentials it was started with.
			return spec, fmt.Errorf("the session's Cursor API key cannot be decrypted (%v); was the master key changed? Start a new session with the key", err)
		}
		spec.CursorAPIKey = string(key)
	}
	return spec, nil
}

// decide reads the session, asks the transition function for the change
// and applies it (applyDecision); it reports whether a change was committed.
// A persistent failure is logged and backed off, so it does not spin.
func (r *Runner) decide(ctx context.Context, log *slog.Logger, id string, fn func(Session, []Message) (Change, error)) (Change, bool) {
	read := func(ctx context.Context) (Session, []Message, error) {
		s, err := r.cfg.Store.GetSession(ctx, id)
		if err != nil {
			return Session{}, nil, err
		}
		msgs, err := r.cfg.Store.ListMessages(ctx, id)
		return s, msgs, err
	}
	ch, err := applyDecision(ctx, r.cfg.Store, r.cfg.Step, read, fn)
	if err != nil && !errors.Is(err, errNoChange) && ctx.Err() == nil {
		log.Error("runner: recording a change", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return ch, err == nil
}

// prepareAndRun prepares the next message's run, records it started (with what
// Prepare returned, in the same transaction) and executes it.
func (r *Runner) prepareAndRun(ctx context.Context, log *slog.Logger, rt Runtime, ss Session, m Message, msgs []Message) {
	spec, err := r.spec(ss, m, msgs, false)
	if err != nil {
		r.failMessage(ctx, log, ss, m, err.Error())
		return
	}
	defer r.cfg.Redactor.Add(spec.CursorAPIKey)()
	start, err := rt.Prepare(ctx, spec)
	if err != nil {
		if ctx.Err() == nil {
			r.failMessage(ctx, log, ss, m, "preparing the run failed: "+err.Error())
		}
		return
	}
	ss2, m2, ok := r.startMessage(ctx, log, ss, m, start)
	if !ok {
		r.abandonStart(ctx, log, rt, ss.ID, start)
		return
	}
	spec.Session, spec.Message, spec.RunID = ss2, m2, *m2.CursorRunID
	r.execute(ctx, log, rt, spec)
}

// abandonStart stops an upstream run that Prepare set up but that could not be
// recorded because the session was cancelled or archived meanwhile; otherwise
// nothing would ever stop it. A start lost to another kind of race is simply
// tried again by the caller's loop (Prepare finds what it made).
func (r *Runner) abandonStart(ctx context.Context, log *slog.Logger, rt Runtime, id string, start RunStart) {
	if start == (RunStart{}) {
		return
	}
	cur, err := r.cfg.Store.GetSession(ctx, id)
	if err != nil || (cur.Status.Active() && !cur.Archived) {
		return
	}
	if start.CursorAgentID != "" {
		cur.CursorAgentID = &start.CursorAgentID
	}
	if start.RunID != "" {
		cur.LatestRunID = &start.RunID
	}
	recorded := func(context.Context) error { return nil } // the session already says so
	if err := rt.Cancel(ctx, cur, recorded); err != nil {
		log.Warn("runner: could not stop an upstream run whose session ended before it started", "run", start.RunID, "err", err)
	}
}

// startMessage marks m running under the run Prepare set up (or a fresh run id)
// and moves the session to running.
func (r *Runner) startMessage(ctx context.Context, log *slog.Logger, ss Session, m Message, start RunStart) (Session, Message, bool) {
	runID := start.RunID
	if runID == "" {
		runID = NewID(PrefixRun)
	}
	// Decided on the state Prepare started from: if anything changed since
	// (a cancel, an archive), the start is not recorded and the caller
	// stops what Prepare set up.
	ch, s2, m2, err := decideRunStart(ss, m, runID, start.CursorAgentID, r.cfg.Clock.Now())
	if err != nil {
		return Session{}, Message{}, false
	}
	if _, err := r.cfg.Store.Apply(ctx, ch); err != nil {
		if !errors.Is(err, ErrConflict) && ctx.Err() == nil {
			log.Error("runner: recording the run's start", "err", err)
		}
		return Session{}, Message{}, false
	}
	s2.Version++
	return s2, m2, true
}

// failMessage records that m could not run and ends the session in error unless
// more messages are queued.
func (r *Runner) failMessage(ctx context.Context, log *slog.Logger, ss Session, m Message, reason string) {
	r.finish(ctx, log, ss.ID, m.ID, RunOutcome{Status: MessageError, Error: reason}, r.cfg.Clock.Now())
}

// endSession moves the session to a terminal status.
func (r *Runner) endSession(ctx context.Context, log *slog.Logger, ss Session, to Status, reason string) {
	reason = r.cfg.Redactor.String(reason)
	status := ss.Status
	r.decide(ctx, log, ss.ID, func(s Session, _ []Message) (Change, error) {
		if s.Status != status || s.Archived {
			return Change{}, errNoChange // moved on meanwhile; the drive loop re-reads
		}
		return decideEnd(s, to, reason, r.cfg.Clock.Now())
	})
}

// watchInterval is how often a run checks whether its session was cancelled or
// archived by another process.
const watchInterval = 250 * time.Millisecond

// execute runs one message through its runtime and records the outcome.
func (r *Runner) execute(ctx context.Context, log *slog.Logger, rt Runtime, spec RunSpec) {
	defer r.cfg.Redactor.Add(spec.CursorAPIKey)()
	w := NewEventWriter(r.cfg.Store, spec.Session.ID, r.cfg.Redactor)
	sink := &runSink{writer: w, store: r.cfg.Store, sessionID: spec.Session.ID}
	// The run's context ends at the runtime's time limit; a stall watch logs
	// quiet spells.
	lv := r.watchRun(ctx, spec, sink, w)
	runCtx, cancel := lv.ctx, lv.stop
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		r.watch(runCtx, cancel, spec.Session.ID)
	}()
	// A log that cannot be written stops the run: going on would lose events.
	go func() {
		select {
		case <-w.Failed():
			cancel()
		case <-runCtx.Done():
		}
	}()
	started := time.Now()
	out, err := rt.Execute(runCtx, spec, lv.sink)
	timedOut := lv.end()
	<-watchDone
	if timedOut {
		if err == nil && out.Detached {
			// The runtime let go of a run that goes on upstream; a timed-out
			// run must stop there too.
			if cerr := rt.Cancel(context.WithoutCancel(ctx), spec.Session, func(context.Context) error { return nil }); cerr != nil {
				log.Warn("runner: could not stop a timed-out upstream run", "run", spec.RunID, "err", cerr)
			}
		}
		// Keep what the runtime reported (a pushed branch, a PR) but say why it ended.
		if err != nil {
			out, err = RunOutcome{}, nil
		}
		out.Status, out.Error, out.Detached = MessageError, lv.timeoutError(), false
	}
	if werr := w.Close(); werr != nil {
		log.Error("runner: writing events", "err", werr)
		// Nothing after the lost batch was written, and the run was stopped
		// (upstream too: a run left going would write to nobody).
		if err == nil && out.Detached && !timedOut {
			if cerr := rt.Cancel(context.WithoutCancel(ctx), spec.Session, func(context.Context) error { return nil }); cerr != nil {
				log.Warn("runner: could not stop an upstream run whose events cannot be stored", "run", spec.RunID, "err", cerr)
			}
		}
		out, err = RunOutcome{Status: MessageError, Error: werr.Error() + "; the run was stopped so that no event is lost silently; send a follow-up to continue"}, nil
	}
	if err == nil && out.Detached {
		log.Info("runner: left a run to the next runner", "message", spec.Message.ID)
		return
	}
	if err != nil {
		log.Error("runner: run failed", "err", err)
		out = RunOutcome{Status: MessageError, Error: err.Error()}
	}
	if ctx.Err() != nil && out.Status != MessageFinished {
		out = RunOutcome{Status: MessageError, Error: "the runner shut down while the agent was running; send a follow-up to continue"}
	}
	if out.Status != MessageFinished && out.Status != MessageCancelled {
		out.Status = MessageError
	}
	if out.DurationMS == 0 {
		out.DurationMS = time.Since(started).Milliseconds()
	}
	r.finish(context.Background(), log, spec.Session.ID, spec.Message.ID, out, r.cfg.Clock.Now())
}

// watch cancels a run when its session stops being "running" (cancelled or
// archived by another process).
func (r *Runner) watch(ctx context.Context, cancel context.CancelFunc, id string) {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ss, err := r.cfg.Store.GetSession(ctx, id)
		if err == nil && (ss.Status != StatusRunning || ss.Archived) {
			cancel()
			return
		}
	}
}

// finish records a run's outcome on its message and, unless more messages are
// queued, ends the session with it. It retries lost races.
func (r *Runner) finish(ctx context.Context, log *slog.Logger, sessionID, messageID string, out RunOutcome, now time.Time) {
	// Whatever a runtime or upstream said goes through the redactor, on every
	// path (a failed Prepare as much as a finished run).
	out.Error, out.ResultText = r.cfg.Redactor.String(out.Error), r.cfg.Redactor.String(out.ResultText)
	out.PRURL, out.PRBranch = r.cfg.Redactor.String(out.PRURL), r.cfg.Redactor.String(out.PRBranch)
	_, err := applyDecision(ctx, r.cfg.Store, r.cfg.Step, func(ctx context.Context) (Session, []Message, error) {
		ss, err := r.cfg.Store.GetSession(ctx, sessionID)
		if err != nil {
			return Session{}, nil, err
		}
		msgs, err := r.cfg.Store.ListMessages(ctx, sessionID)
		return ss, msgs, err
	}, func(ss Session, msgs []Message) (Change, error) {
		return decideOutcome(ss, msgs, messageID, out, now)
	})
	if err != nil {
		log.Error("runner: recording run outcome", "err", err)
	}
}

// applyMessages overlays updated messages on the list.
func applyMessages(msgs, updated []Message) []Message {
	out := make([]Message, len(msgs))
	copy(out, msgs)
	for _, u := range updated {
		for i := range out {
			if out[i].ID == u.ID {
				out[i] = u
			}
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// runSink is the RunSink a runtime writes to.
type runSink struct {
	writer    *EventWriter
	store     Store
	sessionID string
}

func (s *runSink) Emit(e EventInput) { s.writer.Emit(e) }

func (s *runSink) SetHandle(ctx context.Context, handle string) error {
	return s.store.SetRunHandle(ctx, s.sessionID, handle)
}
