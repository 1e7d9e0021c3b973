package core

// Step names a point between two effects of an operation, where another
// operation may run: after a decision and before it is applied, after a
// change is committed and before resources are released, after an upstream
// call and before it is recorded. Tests set ServiceConfig.Step and
// RunnerConfig.Step to run a second operation at each point and check that
// no interleaving leaves a session half done; production leaves them nil.
type Step string

const (
	// StepDecided: a decision was made on the session as read, and is not
	// applied yet (every operation's compare-and-set window).
	StepDecided Step = "decided"
	// StepArchiveMarked: the session is marked as being archived; its
	// upstream agent is untouched.
	StepArchiveMarked Step = "archive-marked"
	// StepArchivedUpstream: the upstream agent is archived; the session not yet.
	StepArchivedUpstream Step = "archived-upstream"
	// StepArchiveCommitted: the session is archived; its workspace is not
	// released yet.
	StepArchiveCommitted Step = "archive-committed"
	// StepExpireCommitted: the session is expired; its workspace is not
	// released yet.
	StepExpireCommitted Step = "expire-committed"
)

// at calls step, if set, at point p.
func at(step func(Step), p Step) {
	if step != nil {
		step(p)
	}
}
