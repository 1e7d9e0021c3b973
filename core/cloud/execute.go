package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// polledPosition is stored as the stream position with a result read by
// polling the run (its stream expired, or ended without a result): a runner
// that adopts the run then polls again without logging the result twice.
const polledPosition = "flapjack:polled"

// maxCoalesce bounds one coalesced assistant or thinking event; a longer
// message is split, so a runaway reply cannot grow without limit in memory.
const maxCoalesce = 256 << 10

// errStreamEnded is a stream that closed before its done event.
var errStreamEnded = errors.New("the run stream ended before the run did")

// Execute follows the run's event stream into the session log until the run
// ends, and returns its outcome. A dropped connection is resumed with
// Last-Event-ID; an expired stream falls back to polling the run. When ctx
// ends (the runner shuts down, or the session was cancelled) it returns
// Detached: the run goes on upstream and the next runner adopts it, resuming
// after the last event logged (Session.StreamPosition), so nothing is lost or
// logged twice.
func (r *Runtime) Execute(ctx context.Context, spec core.RunSpec, sink core.RunSink) (core.RunOutcome, error) {
	if spec.Session.CursorAgentID == nil || *spec.Session.CursorAgentID == "" || spec.RunID == "" {
		return failed("the session has no Cursor agent run to follow"), nil
	}
	if spec.CursorAPIKey == "" {
		return failed(errNoKey), nil
	}
	// The runner has recorded the run: its journal entry has done its job.
	if err := r.cfg.Journal.DeleteUpstreamCall(ctx, spec.Session.ID, spec.Message.ID); err != nil {
		r.log.WarnContext(ctx, "removing a create journal entry", "session", spec.Session.ID, "err", err)
	}
	f := &follower{
		r:       r,
		c:       r.client(spec.CursorAPIKey),
		agentID: *spec.Session.CursorAgentID,
		runID:   spec.RunID,
		repoURL: spec.Session.RepoURL,
		in:      &ingest{sink: sink, clock: r.clock, messageID: spec.Message.ID, runID: spec.RunID, repoURL: spec.Session.RepoURL},
	}
	position := ""
	if spec.Adopted {
		position = spec.Session.StreamPosition
	}
	if position == polledPosition {
		return f.poll(ctx, false)
	}
	f.in.lastID = position
	return f.follow(ctx)
}

func failed(msg string) core.RunOutcome {
	return core.RunOutcome{Status: core.MessageError, Error: msg}
}

// detached is the outcome of a run left to the next runner.
func detached() core.RunOutcome { return core.RunOutcome{Detached: true} }

// follower follows one run.
type follower struct {
	r       *Runtime
	c       *Client
	agentID string
	runID   string
	repoURL string
	in      *ingest
}

// follow reads the stream, reconnecting after drops, until the run's done
// event, then builds the outcome.
func (f *follower) follow(ctx context.Context) (core.RunOutcome, error) {
	log := f.r.log.With("agent", f.agentID, "run", f.runID)
	failures := 0
	for {
		progressed, err := f.readStream(ctx)
		if ctx.Err() != nil {
			return detached(), nil
		}
		if err == nil {
			return f.finish(ctx)
		}
		status, code := HTTPStatus(err), ErrorCode(err)
		switch {
		case status == http.StatusGone || code == "stream_expired" || code == "invalid_last_event_id":
			log.InfoContext(ctx, "run stream cannot be replayed; polling the run", "code", code, "after", f.in.lastID)
			f.in.flush()
			f.in.partial = true
			return f.poll(ctx, true)
		case status == http.StatusNotFound:
			f.in.flush()
			return failed(fmt.Sprintf("Cursor no longer has run %s of agent %s: %s", f.runID, f.agentID, describe(err))), nil
		case status >= 400 && status < 500 && status != http.StatusTooManyRequests:
			f.in.flush()
			return failed("following the Cursor run failed: " + describe(err)), nil
		}
		if progressed {
			failures = 0
		}
		if failures++; failures > maxReconnects {
			log.WarnContext(ctx, "run stream keeps failing; polling the run", "err", err)
			f.in.flush()
			f.in.partial = true
			return f.poll(ctx, true)
		}
		log.InfoContext(ctx, "run stream dropped; resuming", "after", f.in.lastID, "err", err)
		if err := f.r.sleep(ctx, backoff(failures-1)); err != nil {
			return detached(), nil
		}
	}
}

// readStream reads one connection of the stream; nil means the done event.
// progressed reports whether the stream position moved (the status event
// re-sent on every connection does not count).
func (f *follower) readStream(ctx context.Context) (progressed bool, err error) {
	from := f.in.lastID
	defer func() { progressed = f.in.lastID != from }()
	st, err := f.c.StreamRun(ctx, f.agentID, f.runID, f.in.lastID)
	if err != nil {
		return false, err
	}
	defer st.Close()
	for {
		ev, err := st.Next()
		if errors.Is(err, io.EOF) {
			return false, errStreamEnded
		}
		if err != nil {
			return false, err
		}
		if ev.TooLarge {
			f.r.log.WarnContext(ctx, "dropped an oversized stream event", "run", f.runID, "event", ev.Name, "id", ev.ID)
		}
		if f.in.handle(ev) {
			return false, nil
		}
	}
}

// finish builds the outcome after the done event: from the stream's result
// when it had one, else from the run itself.
func (f *follower) finish(ctx context.Context) (core.RunOutcome, error) {
	if res := f.in.result; res != nil && TerminalRunStatus(res.Status) {
		return f.outcome(ctx, final{status: res.Status, text: res.Text, durationMS: res.DurationMS, git: res.Git}), nil
	}
	return f.poll(ctx, f.in.result == nil)
}

// poll reads the run until it is terminal and builds the outcome from it;
// with logResult it also logs the result event the stream did not deliver.
func (f *follower) poll(ctx context.Context, logResult bool) (core.RunOutcome, error) {
	failures := 0
	for {
		run, err := f.c.GetRun(ctx, f.agentID, f.runID)
		if ctx.Err() != nil {
			return detached(), nil
		}
		if err != nil {
			if definite(err) && HTTPStatus(err) != http.StatusTooManyRequests {
				return failed(fmt.Sprintf("reading Cursor run %s failed: %s", f.runID, describe(err))), nil
			}
			if failures++; failures > maxPollFailures {
				return failed(fmt.Sprintf("lost contact with Cursor while waiting for run %s to end: %s", f.runID, describe(err))), nil
			}
			if err := f.r.sleep(ctx, waitAfter(err, failures-1)); err != nil {
				return detached(), nil
			}
			continue
		}
		failures = 0
		if TerminalRunStatus(run.Status) {
			fin := final{status: run.Status, text: run.Result, durationMS: run.DurationMS, git: run.Git}
			fin.errCode, fin.errMessage = runError(run.Error)
			if logResult {
				f.in.emit(core.EventResult, f.resultPayload(fin), polledPosition)
			}
			return f.outcome(ctx, fin), nil
		}
		if err := f.r.sleep(ctx, f.r.cfg.PollInterval); err != nil {
			return detached(), nil
		}
	}
}

// final is how a run ended, from its result event or the run object.
type final struct {
	status     string
	text       string
	durationMS int64
	git        *Git
	errCode    string
	errMessage string
}

// outcome maps a terminal run to the message's outcome. A run cancelled
// upstream waits briefly for flapjack's own cancel to be recorded (Cancel
// calls Cursor first): if it is, the run is left to it (Detached).
func (f *follower) outcome(ctx context.Context, fin final) core.RunOutcome {
	if fin.status == RunCancelled {
		t := time.NewTimer(f.r.cfg.CancelGrace)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return detached()
		case <-t.C:
		}
	}
	out := core.RunOutcome{ResultText: fin.text, DurationMS: fin.durationMS}
	if fin.durationMS > 0 {
		// Cursor's run reports its duration only: no tokens, no cost.
		d := fin.durationMS
		out.Usage = &core.Usage{DurationMS: &d}
	}
	if out.ResultText == "" {
		out.ResultText = f.in.lastAssistant
	}
	out.PRURL, out.PRBranch = pickBranch(fin.git, f.repoURL)
	if fin.status == RunFinished {
		out.Status = core.MessageFinished
		return out
	}
	out.Status = core.MessageError
	code, msg := fin.errCode, fin.errMessage
	if e := f.in.lastErr; e != nil && (e.Code != "" || e.Message != "") {
		code, msg = e.Code, e.Message
	}
	switch {
	case fin.status == RunError && code == "" && msg == "":
		out.Error = "the Cursor run ended with status ERROR and Cursor gave no cause"
	case fin.status == RunError:
		out.Error = "the Cursor run failed: " + joinNonEmpty(": ", code, msg)
	case fin.status == RunCancelled:
		out.Status, out.Error = core.MessageCancelled, "the Cursor run was cancelled outside flapjack"
	case fin.status == RunExpired:
		out.Expired, out.Error = true, "the Cursor run expired before it finished"
	default:
		out.Error = "the Cursor run ended with status " + fin.status
	}
	return out
}

func joinNonEmpty(sep string, parts ...string) string {
	var keep []string
	for _, p := range parts {
		if p != "" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, sep)
}

// pickBranch returns the PR URL and branch for the session's repository: the
// branch with a PR (on the session's repo first), else the first branch.
func pickBranch(g *Git, repoURL string) (prURL, branch string) {
	if g == nil {
		return "", ""
	}
	for _, onRepo := range []bool{true, false} {
		for _, b := range g.Branches {
			if b.PRURL != "" && (!onRepo || b.RepoURL == "" || sameRepo(b.RepoURL, repoURL)) {
				return b.PRURL, b.Branch
			}
		}
	}
	for _, onRepo := range []bool{true, false} {
		for _, b := range g.Branches {
			if b.Branch != "" && (!onRepo || b.RepoURL == "" || sameRepo(b.RepoURL, repoURL)) {
				return "", b.Branch
			}
		}
	}
	return "", ""
}

// ---- Mapping the stream to events ----

// Payloads of the events a cloud run logs. Field names follow the local
// runtime's, so clients read both alike.
type (
	textPayload struct {
		Text string `json:"text"`
	}
	toolCallPayload struct {
		CallID string `json:"call_id"`
		Name   string `json:"name"`
		// Tool repeats Name; Path is the one file the call targets, if any.
		Tool      string          `json:"tool"`
		Path      string          `json:"path,omitempty"`
		Status    string          `json:"status"`
		Args      json.RawMessage `json:"args"`
		Result    json.RawMessage `json:"result"`
		Truncated bool            `json:"truncated"`
	}
	resultPayload struct {
		// RunStatus is Cursor's status of the run (FINISHED, ERROR, ...).
		RunStatus  string `json:"run_status"`
		Text       string `json:"text"`
		DurationMS int64  `json:"duration_ms"`
		Branch     string `json:"branch,omitempty"`
		PRURL      string `json:"pr_url,omitempty"`
		// PartialStream says part of the run's stream could not be read (it
		// expired); this result comes from the run itself.
		PartialStream bool `json:"partial_stream,omitempty"`
	}
	errorPayload struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
)

func (f *follower) resultPayload(fin final) resultPayload {
	pr, branch := pickBranch(fin.git, f.repoURL)
	return resultPayload{RunStatus: fin.status, Text: fin.text, DurationMS: fin.durationMS, Branch: branch, PRURL: pr, PartialStream: f.in.partial}
}

// ingest turns stream events into log events. Assistant and thinking
// fragments are coalesced into one event each, flushed at a tool call, a
// status change, the other kind of text, the result, an error or the end.
// Every event carries as StreamPosition the id of the last stream event it
// covers, so the position stored with the log is always where a resumed
// stream must continue.
type ingest struct {
	sink      core.RunSink
	clock     core.Clock
	messageID string
	runID     string
	repoURL   string

	// lastID is the id of the last stream event read (the Last-Event-ID to
	// reconnect with: what is buffered here is not lost by a reconnect).
	lastID string
	// status is the run's last upstream status.
	status string

	bufKind core.EventType
	buf     strings.Builder
	bufPos  string

	lastAssistant string
	result        *resultData
	lastErr       *errorData
	// partial is set when part of the stream could not be read.
	partial bool
}

// handle maps one stream event and reports whether it was the last (done).
func (in *ingest) handle(ev Event) bool {
	if ev.ID != "" {
		in.lastID = ev.ID
	}
	if ev.TooLarge {
		return false
	}
	switch ev.Name {
	case evStatus:
		var d statusData
		if json.Unmarshal(ev.Data, &d) == nil && d.Status != "" && d.Status != in.status {
			in.flush()
			in.status = d.Status
		}
	case evAssistant, evThinking:
		var d textData
		if json.Unmarshal(ev.Data, &d) != nil || d.Text == "" {
			return false
		}
		kind := core.EventAssistant
		if ev.Name == evThinking {
			kind = core.EventThinking
		}
		if in.bufKind != kind {
			in.flush()
		}
		in.bufKind = kind
		in.buf.WriteString(d.Text)
		in.bufPos = in.lastID
		if in.buf.Len() >= maxCoalesce {
			in.flush()
		}
	case evToolCall:
		var d toolCallData
		if json.Unmarshal(ev.Data, &d) != nil {
			return false
		}
		in.flush()
		in.emit(core.EventToolCall, toolCallPayload{CallID: d.CallID, Name: d.Name, Tool: d.Name, Path: core.ToolPath(d.Args), Status: d.Status, Args: d.Args, Result: d.Result, Truncated: d.Truncated}, in.lastID)
	case evResult:
		var d resultData
		if json.Unmarshal(ev.Data, &d) != nil {
			return false
		}
		in.flush()
		in.result = &d
		if d.Status != "" {
			in.status = d.Status
		}
		pr, branch := pickBranch(d.Git, in.repoURL)
		in.emit(core.EventResult, resultPayload{RunStatus: d.Status, Text: d.Text, DurationMS: d.DurationMS, Branch: branch, PRURL: pr}, in.lastID)
	case evError:
		var d errorData
		if json.Unmarshal(ev.Data, &d) != nil {
			return false
		}
		in.flush()
		in.lastErr = &d
		in.emit(core.EventError, errorPayload(d), in.lastID)
	case evDone:
		in.flush()
		return true
	}
	// interaction_update duplicates the others, heartbeat keeps the
	// connection alive; neither is logged, nor is an event name we do not know.
	return false
}

// flush logs the coalesced text, if any.
func (in *ingest) flush() {
	if in.buf.Len() == 0 {
		return
	}
	text := in.buf.String()
	if in.bufKind == core.EventAssistant {
		in.lastAssistant = text
	}
	in.emit(in.bufKind, textPayload{Text: text}, in.bufPos)
	in.buf.Reset()
	in.bufKind, in.bufPos = "", ""
}

func (in *ingest) emit(typ core.EventType, payload any, position string) {
	b, err := json.Marshal(payload)
	if err != nil {
		return // payloads are plain structs and valid JSON; cannot happen
	}
	in.sink.Emit(core.EventInput{MessageID: in.messageID, CursorRunID: in.runID, Type: typ, Payload: b, CreatedAt: in.clock.Now(), StreamPosition: position})
}
