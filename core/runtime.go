package core

import "context"

// Runtime executes the runs of sessions: Cursor's cloud API, or an agent CLI on
// this machine. The Runner calls Prepare and Execute; the Service calls Cancel and
// Archive in the caller's process, because their answers carry the outcome.
type Runtime interface {
	// Name is the runtime's name ("cloud", "local").
	Name() string
	// NeedsCursorKey reports whether runs need a Cursor API key.
	NeedsCursorKey() bool
	// AllowsLocalRepos reports whether file:// URLs and absolute paths may be used.
	AllowsLocalRepos() bool
	// Ready says why the runtime cannot run sessions as configured (no agent
	// command, for example), or nil. Starts and follow-ups check it, so the
	// caller learns at once instead of from a failed run.
	Ready() error
	// Prepare readies the session for its next run (a workspace clone; for a
	// cloud runtime, the upstream create or follow-up call). What it returns is
	// stored in the same transaction that marks the run started. It must be safe
	// to call again after a crash before that transaction, and must then find
	// what the first call created instead of creating it twice.
	Prepare(ctx context.Context, spec RunSpec) (RunStart, error)
	// Execute runs one message to its end, writing its events through sink, and
	// returns how it ended. Cancelling ctx stops the run and everything it started.
	Execute(ctx context.Context, spec RunSpec, sink RunSink) (RunOutcome, error)
	// Cancel stops the session's active run from any process. It calls
	// markCancelled at the moment the session must be recorded as cancelled
	// (before a local agent is signalled, so its exit is not taken for a
	// failure; after an upstream API confirmed), and returns only once the run
	// has stopped. An error from markCancelled is returned unchanged.
	Cancel(ctx context.Context, s Session, markCancelled func(context.Context) error) error
	// Archive releases what the session holds (workspace, upstream agent).
	Archive(ctx context.Context, s Session) error
}

// ModelParamsChecker is a Runtime whose readiness depends on a template's or
// session's modelParams (the local runtime: modelParams.agent picks the
// agent CLI, which must be known and installed). The Service calls it at
// template create and update and at start, instead of Ready, so a bad
// choice is refused then rather than failing the run later. The error says
// what to install or set.
type ModelParamsChecker interface {
	CheckModelParams(params map[string]any) error
}

// RunSpec is what a runtime needs to run one message.
type RunSpec struct {
	Session Session
	Message Message
	// RunID identifies this run (the message's cursor_run_id).
	RunID string
	// Prompt is the text for the agent: the session's preamble, then the message.
	Prompt string
	// CursorAPIKey is the decrypted key, empty when the session has none.
	CursorAPIKey string
	// FollowUp is set for every run after the session's first.
	FollowUp bool
	// Adopted is set when the run was started by a runner that has gone away; the
	// runtime resumes it if it can, or reports why it cannot.
	Adopted bool
}

// RunHandleStarting is a session's RunHandle from the moment the runner marks
// a run started until the runtime records its own handle; the runner clears
// the handle when it records the run's end. A non-empty handle therefore means
// a run is in flight.
const RunHandleStarting = "starting"

// RunStart is what Prepare learned about the run it set up. Empty fields are
// filled by the runner (a fresh run id) or left alone.
type RunStart struct {
	// RunID becomes the message's cursor_run_id and the session's latest_run_id.
	RunID string
	// CursorAgentID becomes the session's cursor_agent_id.
	CursorAgentID string
}

// RunSink receives a run's events and its handle.
type RunSink interface {
	// Emit logs one event of the run. Events are written in order, in batches;
	// the runtime need not wait for them. Emit is safe for concurrent use.
	Emit(e EventInput)
	// SetHandle records the run's handle (a local agent's process group id) so
	// Cancel can reach the run from another process.
	SetHandle(ctx context.Context, handle string) error
}

// RunOutcome is how a run ended.
type RunOutcome struct {
	// Status is MessageFinished, MessageError, or MessageCancelled for a run
	// cancelled upstream (outside flapjack).
	Status MessageStatus
	// Expired marks a run that expired upstream (Cursor's EXPIRED): the
	// session becomes expired, as the spec maps run statuses one to one.
	Expired    bool
	ResultText string
	// Error says why the run failed; client-safe, no secrets.
	Error    string
	PRURL    string
	PRBranch string
	// DurationMS is the run's own duration when the runtime knows it; 0 = measure.
	DurationMS int64
	// Usage is what the agent reported about tokens, cost and duration; nil
	// when it reported nothing.
	Usage *Usage
	// Detached means the runtime stopped following a run that goes on without
	// it (an upstream run when the runner shuts down): nothing is recorded, and
	// the next runner adopts the run (RunSpec.Adopted) and resumes it.
	Detached bool
}
