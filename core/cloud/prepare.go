package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// errNoKey is why a run cannot start without a key.
const errNoKey = "the session has no usable Cursor API key (none was given, it was wiped, or it cannot be decrypted with this master key)"

// recoveryPageSize and recoveryMaxPages bound the agent listing of a crash
// recovery; the list is newest first and stops at the first older agent.
const (
	recoveryPageSize = 100
	recoveryMaxPages = 20
)

// Prepare starts the message's run upstream: the first message creates the
// agent and its first run, a later one a follow-up run. Every call is written
// to a journal before it is made, so after a crash anywhere before the runner
// recorded the result, the next Prepare for the message finds the agent or run
// instead of creating a second one.
func (r *Runtime) Prepare(ctx context.Context, spec core.RunSpec) (core.RunStart, error) {
	if spec.CursorAPIKey == "" {
		return core.RunStart{}, errors.New(errNoKey)
	}
	c := r.client(spec.CursorAPIKey)
	e, found, err := r.cfg.Journal.GetUpstreamCall(ctx, spec.Session.ID, spec.Message.ID)
	if err != nil {
		return core.RunStart{}, err
	}
	if found && e.RunID != "" {
		// The call succeeded but the runner did not record it.
		return core.RunStart{CursorAgentID: e.AgentID, RunID: e.RunID}, nil
	}
	if spec.Session.CursorAgentID != nil && *spec.Session.CursorAgentID != "" {
		return r.prepareFollowUp(ctx, c, spec, e, found)
	}
	return r.prepareCreate(ctx, c, spec, e, found)
}

// createRequest maps the session's snapshot settings to POST /v1/agents.
func createRequest(spec core.RunSpec) CreateAgentRequest {
	s := spec.Session
	req := CreateAgentRequest{
		Prompt: Prompt{Text: spec.Prompt},
		Repos:  []RepoRef{{URL: s.RepoURL, StartingRef: s.StartingRef}},
		// The branch names the session, so crash recovery finds exactly
		// this agent and never one started elsewhere (Cursor's own UI).
		BranchName:          SessionBranch(s.ID),
		AutoCreatePR:        s.AutoCreatePR,
		SkipReviewerRequest: s.SkipReviewerRequest,
		WorkOnCurrentBranch: s.WorkOnCurrentBranch,
	}
	// "auto" means the account's default model, which is what omitting it does.
	if s.ModelID != "" && s.ModelID != core.DefaultModelID {
		m := &ModelSpec{ID: s.ModelID}
		ids := make([]string, 0, len(s.ModelParams))
		for id := range s.ModelParams {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			m.Params = append(m.Params, ModelParam{ID: id, Value: s.ModelParams[id]})
		}
		req.Model = m
	}
	return req
}

// definite reports whether a failed call certainly did not take effect: Cursor
// answered with a 4xx. A 5xx (a gateway may time out after the work was done)
// and a lost connection leave it open.
func definite(err error) bool {
	s := HTTPStatus(err)
	return s >= 400 && s < 500
}

// waitAfter is how long to wait before retrying after err: the server's
// Retry-After, else exponential backoff.
func waitAfter(err error, attempt int) time.Duration {
	var e *APIError
	if errors.As(err, &e) && e.RetryAfter > 0 {
		return e.RetryAfter
	}
	return backoff(attempt)
}

// prepareCreate creates the session's agent. A create call in flight when the
// last runner stopped (journaled, without result) is looked for first.
func (r *Runtime) prepareCreate(ctx context.Context, c *Client, spec core.RunSpec, e core.UpstreamCall, found bool) (core.RunStart, error) {
	if found {
		start, ok, err := r.recoverCreate(ctx, c, spec, e.StartedAt)
		if err != nil {
			return core.RunStart{}, err
		}
		if ok {
			return start, r.record(ctx, e, start)
		}
		// The call never took effect: create now.
	}
	req := createRequest(spec)
	for attempt := 0; ; attempt++ {
		e = core.UpstreamCall{SessionID: spec.Session.ID, MessageID: spec.Message.ID, StartedAt: r.clock.Now()}
		if err := r.cfg.Journal.SaveUpstreamCall(ctx, e); err != nil {
			return core.RunStart{}, fmt.Errorf("recording the create call: %w", err)
		}
		start, err := r.tryCreate(ctx, c, req, e)
		if err == nil {
			return start, nil
		}
		if ctx.Err() != nil {
			// Possibly sent: the journal entry stays for the next runner.
			return core.RunStart{}, ctx.Err()
		}
		status := HTTPStatus(err)
		switch {
		case status == http.StatusTooManyRequests || notSent(err):
			// Certainly not created: retry as the client would.
		case definite(err):
			r.forget(ctx, e)
			return core.RunStart{}, fmt.Errorf("Cursor refused to create the agent: %s", describe(err))
		default:
			// It may have reached Cursor: look before trying again.
			start, ok, rerr := r.recoverCreate(ctx, c, spec, e.StartedAt)
			if rerr != nil {
				return core.RunStart{}, fmt.Errorf("creating the Cursor agent failed (%s), and whether it was created cannot be told: %w", describe(err), rerr)
			}
			if ok {
				return start, r.record(ctx, e, start)
			}
		}
		if attempt >= r.cfg.MaxRetries {
			r.forget(ctx, e)
			return core.RunStart{}, fmt.Errorf("creating the Cursor agent failed: %s", describe(err))
		}
		r.log.InfoContext(ctx, "create agent failed; retrying", "session", spec.Session.ID, "err", describe(err))
		if err := r.sleep(ctx, waitAfter(err, attempt)); err != nil {
			return core.RunStart{}, err
		}
	}
}

// tryCreate makes one create call and journals its result. It holds
// createMu shared from the call until the result is journaled, so a recovery
// (exclusive) never runs while an agent of ours may exist unjournaled.
func (r *Runtime) tryCreate(ctx context.Context, c *Client, req CreateAgentRequest, e core.UpstreamCall) (core.RunStart, error) {
	r.createMu.RLock()
	defer r.createMu.RUnlock()
	resp, err := c.CreateAgent(ctx, req)
	if err != nil {
		return core.RunStart{}, err
	}
	if resp.Agent.ID == "" || resp.Run.ID == "" {
		return core.RunStart{}, errors.New("Cursor's answer has no agent or run id")
	}
	start := core.RunStart{CursorAgentID: resp.Agent.ID, RunID: resp.Run.ID}
	return start, r.record(ctx, e, start)
}

// record journals a call's result, even when ctx has just ended (the call
// was made); failing that is only logged, because the runner records the same
// result next and recovery can still find it.
func (r *Runtime) record(ctx context.Context, e core.UpstreamCall, start core.RunStart) error {
	e.AgentID, e.RunID = start.CursorAgentID, start.RunID
	if err := r.cfg.Journal.SaveUpstreamCall(context.WithoutCancel(ctx), e); err != nil {
		r.log.WarnContext(ctx, "recording the run in the create journal", "session", e.SessionID, "err", err)
	}
	return nil
}

// forget drops a journal entry of a call that certainly did nothing.
func (r *Runtime) forget(ctx context.Context, e core.UpstreamCall) {
	if err := r.cfg.Journal.DeleteUpstreamCall(context.WithoutCancel(ctx), e.SessionID, e.MessageID); err != nil {
		r.log.WarnContext(ctx, "removing a create journal entry", "session", e.SessionID, "err", err)
	}
}

// recoverCreate looks for the agent a create call made at about since: the
// one on the session's branch (SessionBranch), created no earlier than since
// minus the skew (which bounds the listing), owned by no other session. One
// is the answer; none means the call did nothing; several (the same create
// repeated by hand) cannot be told apart, so the session fails with a reason
// rather than guess.
func (r *Runtime) recoverCreate(ctx context.Context, c *Client, spec core.RunSpec, since time.Time) (core.RunStart, bool, error) {
	r.createMu.Lock()
	defer r.createMu.Unlock()
	taken, err := r.takenAgents(ctx, spec)
	if err != nil {
		return core.RunStart{}, false, err
	}
	cutoff := since.Add(-r.cfg.RecoverySkew)
	var cands []Agent
	cursor := ""
	for range recoveryMaxPages {
		page, err := c.ListAgents(ctx, recoveryPageSize, cursor)
		if err != nil {
			return core.RunStart{}, false, fmt.Errorf("listing Cursor agents: %s", describe(err))
		}
		older := false
		for _, a := range page.Items {
			if a.CreatedAt.IsZero() || a.CreatedAt.Before(cutoff) {
				older = older || !a.CreatedAt.IsZero()
				continue
			}
			// Only the branch this session's create call named: an agent
			// the user started in Cursor itself is never adopted.
			if taken[a.ID] || a.BranchName != SessionBranch(spec.Session.ID) {
				continue
			}
			cands = append(cands, a)
		}
		if older || page.NextCursor == "" || page.NextCursor == cursor {
			break
		}
		cursor = page.NextCursor
	}
	switch len(cands) {
	case 0:
		return core.RunStart{}, false, nil
	case 1:
	default:
		ids := make([]string, len(cands))
		for i, a := range cands {
			ids[i] = a.ID
		}
		return core.RunStart{}, false, fmt.Errorf("the runner stopped while creating the Cursor agent, and %d Cursor agents created since then match this session (%s); see them in Cursor, then send a follow-up to start over",
			len(cands), strings.Join(ids, ", "))
	}
	a := cands[0]
	if a.LatestRunID == "" {
		full, err := c.GetAgent(ctx, a.ID)
		if err != nil {
			return core.RunStart{}, false, fmt.Errorf("reading Cursor agent %s: %s", a.ID, describe(err))
		}
		a.LatestRunID = full.LatestRunID
	}
	if a.LatestRunID == "" {
		return core.RunStart{}, false, fmt.Errorf("found Cursor agent %s that the stopped runner created, but it has no run", a.ID)
	}
	r.log.InfoContext(ctx, "found the Cursor agent a stopped runner created", "session", spec.Session.ID, "agent", a.ID, "run", a.LatestRunID)
	return core.RunStart{CursorAgentID: a.ID, RunID: a.LatestRunID}, true, nil
}

// takenAgents is every Cursor agent known to belong to another session: in
// the journal, or (with Config.Sessions) recorded on a session.
func (r *Runtime) takenAgents(ctx context.Context, spec core.RunSpec) (map[string]bool, error) {
	taken := map[string]bool{}
	entries, err := r.cfg.Journal.ListUpstreamCalls(ctx)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.AgentID != "" && e.SessionID != spec.Session.ID {
			taken[e.AgentID] = true
		}
	}
	if r.cfg.Sessions != nil {
		list, err := r.cfg.Sessions.ListSessions(ctx, core.SessionFilter{})
		if err != nil {
			return nil, fmt.Errorf("listing sessions: %w", err)
		}
		for _, s := range list {
			if s.ID != spec.Session.ID && s.CursorAgentID != nil {
				taken[*s.CursorAgentID] = true
			}
		}
	}
	return taken, nil
}

// SessionBranch is the branch every Cursor agent of a session is created
// with: it names the session, and crash recovery matches on it alone.
func SessionBranch(sessionID string) string { return "flapjack/" + sessionID }

// prepareFollowUp sends the message as a new run of the session's agent.
// agent_busy (another run still active) is waited out for as long as ctx
// allows; it never reaches the user. After a call whose outcome is unknown
// (a crash, a 5xx, a lost connection) the agent's latest run is checked before
// the call is repeated.
func (r *Runtime) prepareFollowUp(ctx context.Context, c *Client, spec core.RunSpec, e core.UpstreamCall, found bool) (core.RunStart, error) {
	agentID := *spec.Session.CursorAgentID
	prevRun := ""
	if spec.Session.LatestRunID != nil {
		prevRun = *spec.Session.LatestRunID
	}
	if !found {
		e = core.UpstreamCall{SessionID: spec.Session.ID, MessageID: spec.Message.ID, AgentID: agentID, StartedAt: r.clock.Now()}
	}
	uncertain := found
	req := CreateRunRequest{Prompt: Prompt{Text: spec.Prompt}}
	busyWait, failures := busyWaitFirst, 0
	for {
		if uncertain {
			start, ok, err := r.recoverRun(ctx, c, agentID, prevRun, e.StartedAt)
			switch {
			case ok:
				return start, r.record(ctx, e, start)
			case err != nil && definite(err):
				return core.RunStart{}, fmt.Errorf("reading Cursor agent %s: %s", agentID, describe(err))
			case err != nil:
				if ctx.Err() != nil {
					return core.RunStart{}, ctx.Err()
				}
				if failures++; failures > r.cfg.MaxRetries {
					return core.RunStart{}, fmt.Errorf("cannot tell whether the follow-up run was created: %s", describe(err))
				}
				if err := r.sleep(ctx, waitAfter(err, failures-1)); err != nil {
					return core.RunStart{}, err
				}
				continue
			}
		}
		if err := r.cfg.Journal.SaveUpstreamCall(ctx, e); err != nil {
			return core.RunStart{}, fmt.Errorf("recording the follow-up call: %w", err)
		}
		run, err := c.CreateRun(ctx, agentID, req)
		switch code := ErrorCode(err); {
		case err == nil && run.ID != "":
			start := core.RunStart{CursorAgentID: agentID, RunID: run.ID}
			return start, r.record(ctx, e, start)
		case err == nil:
			err = errors.New("Cursor's answer has no run id")
		case ctx.Err() != nil:
			return core.RunStart{}, ctx.Err()
		case code == "agent_busy":
			r.log.InfoContext(ctx, "the Cursor agent is busy; waiting to send the follow-up", "session", spec.Session.ID, "wait", busyWait)
			if err := r.sleep(ctx, max(busyWait, waitAfter(err, 0))); err != nil {
				return core.RunStart{}, err
			}
			busyWait = min(2*busyWait, busyWaitMax)
			if r.stoppedWaiting(ctx, spec) {
				r.forget(ctx, e)
				return core.RunStart{}, errors.New("the session stopped waiting for this run (it was cancelled)")
			}
			continue
		case definite(err):
			r.forget(ctx, e)
			if code == "agent_archived" {
				return core.RunStart{}, fmt.Errorf("the session's Cursor agent %s was archived in Cursor; unarchive it there or start a new session", agentID)
			}
			return core.RunStart{}, fmt.Errorf("Cursor refused the follow-up: %s", describe(err))
		}
		// Unknown outcome: check before sending again.
		uncertain = true
		if failures++; failures > r.cfg.MaxRetries {
			return core.RunStart{}, fmt.Errorf("sending the follow-up to Cursor failed: %s", describe(err))
		}
		r.log.InfoContext(ctx, "follow-up failed; checking and retrying", "session", spec.Session.ID, "err", describe(err))
		if err := r.sleep(ctx, waitAfter(err, failures-1)); err != nil {
			return core.RunStart{}, err
		}
	}
}

// stoppedWaiting reports whether the session's status changed (a cancel)
// while a follow-up waited out agent_busy: the run must not be sent then. The
// runner does not watch a session during Prepare, so the wait checks.
func (r *Runtime) stoppedWaiting(ctx context.Context, spec core.RunSpec) bool {
	if r.cfg.Sessions == nil {
		return false
	}
	ss, err := r.cfg.Sessions.GetSession(ctx, spec.Session.ID)
	return err == nil && (ss.Status != spec.Session.Status || ss.Archived)
}

// recoverRun reports the agent's latest run as this message's when it is not
// the session's previous run and was created no earlier than since (minus the
// skew), that is by our own earlier call.
func (r *Runtime) recoverRun(ctx context.Context, c *Client, agentID, prevRun string, since time.Time) (core.RunStart, bool, error) {
	a, err := c.GetAgent(ctx, agentID)
	if err != nil {
		return core.RunStart{}, false, err
	}
	if a.LatestRunID == "" || a.LatestRunID == prevRun {
		return core.RunStart{}, false, nil
	}
	run, err := c.GetRun(ctx, agentID, a.LatestRunID)
	if err != nil {
		return core.RunStart{}, false, err
	}
	if !run.CreatedAt.IsZero() && run.CreatedAt.Before(since.Add(-r.cfg.RecoverySkew)) {
		return core.RunStart{}, false, nil
	}
	return core.RunStart{CursorAgentID: agentID, RunID: a.LatestRunID}, true, nil
}

// ---- Journal ----

// Journal keeps the upstream calls in flight (core.UpstreamCall) in the
// database, so they share its durability and backups; store.Store
// satisfies it. An entry is saved before a create or follow-up call is made
// and completed with its result; Execute removes it once the runner has
// recorded the run, Archive what is left of the session's.
type Journal interface {
	SaveUpstreamCall(ctx context.Context, c core.UpstreamCall) error
	GetUpstreamCall(ctx context.Context, sessionID, messageID string) (core.UpstreamCall, bool, error)
	ListUpstreamCalls(ctx context.Context) ([]core.UpstreamCall, error)
	DeleteUpstreamCall(ctx context.Context, sessionID, messageID string) error
	DeleteUpstreamCalls(ctx context.Context, sessionID string) error
}

// ImportJournalDir moves the entries an older flapjack kept as files under
// dir (<data-dir>/cloud/<session>.<message>.json) into j, and removes each
// file once its entry is saved, then dir when it is empty. A missing dir is
// nothing to do; an unreadable file is left where it is and reported.
func ImportJournalDir(ctx context.Context, dir string, j Journal) (int, error) {
	matches, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, m := range matches {
		var e struct {
			SessionID string    `json:"session_id"`
			MessageID string    `json:"message_id"`
			StartedAt time.Time `json:"started_at"`
			AgentID   string    `json:"agent_id"`
			RunID     string    `json:"run_id"`
		}
		raw, err := os.ReadFile(m)
		if err == nil {
			err = json.Unmarshal(raw, &e)
		}
		if err == nil && (e.SessionID == "" || e.MessageID == "") {
			err = errors.New("no session or message id")
		}
		if err == nil {
			err = j.SaveUpstreamCall(ctx, core.UpstreamCall{SessionID: e.SessionID, MessageID: e.MessageID,
				StartedAt: e.StartedAt, AgentID: e.AgentID, RunID: e.RunID})
		}
		if err == nil {
			err = os.Remove(m)
			n++
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("importing the create journal entry %s: %w", filepath.Base(m), err))
		}
	}
	if len(errs) == 0 {
		_ = os.Remove(dir) // removes only an empty directory: one holding anything else stays
	}
	return n, errors.Join(errs...)
}
