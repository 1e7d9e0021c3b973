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
	// Prepare readies the session for its next run while it is "creating" (a
	// workspace clone, for example). It must be safe to call again after a crash.
	Prepare(ctx context.Context, spec RunSpec) error
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

// RunSink receives a run's events and its handle.
type RunSink interface {
	// Emit logs one event of the run. Events are written in order, in batches;
	// the runtime need not wait for them.
	Emit(e EventInput)
	// SetHandle records the run's handle (a local agent's process group id) so
	// Cancel can reach the run from another process.
	SetHandle(ctx context.Context, handle string) error
}

// RunOutcome is how a run ended.
type RunOutcome struct {
	// Status is MessageFinished or MessageError.
	Status     MessageStatus
	ResultText string
	// Error says why the run failed; client-safe, no secrets.
	Error    string
	PRURL    string
	PRBranch string
	// DurationMS is the run's own duration when the runtime knows it; 0 = measure.
	DurationMS int64
}
