package core

// transitions is the session state machine of DESIGN.md as one table: for each
// status, the statuses a session may move to.
//
//	pending  → creating (the runner picks it up), cancelled, error
//	creating → running (the run started), cancelled, error
//	running  → finished, error, cancelled, expired (the upstream run expired)
//	finished, error, cancelled → creating (a follow-up starts a new run), expired
//	expired  → nothing
//
// A follow-up sent while a session is active is queued instead: no transition.
func transitions() map[Status][]Status {
	return map[Status][]Status{
		StatusPending:   {StatusCreating, StatusCancelled, StatusError},
		StatusCreating:  {StatusRunning, StatusCancelled, StatusError},
		StatusRunning:   {StatusFinished, StatusError, StatusCancelled, StatusExpired},
		StatusFinished:  {StatusCreating, StatusExpired},
		StatusError:     {StatusCreating, StatusExpired},
		StatusCancelled: {StatusCreating, StatusExpired},
		StatusExpired:   {},
	}
}

// CanTransition reports whether a session may move from one status to another.
func CanTransition(from, to Status) bool {
	for _, s := range transitions()[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Operation names what a caller wants to do with a session, for the checks that
// depend on its status and archived flag.
type Operation string

// Operations checked against a session's state.
const (
	OpSend    Operation = "send"
	OpCancel  Operation = "cancel"
	OpArchive Operation = "archive"
	OpUpdate  Operation = "update"
)

// CheckOperation says whether op is allowed on a session in this state, and if not,
// the error the caller gets. It is the single place these rules live.
func CheckOperation(op Operation, status Status, archived bool) error {
	switch op {
	case OpSend:
		if archived {
			return Errorf(CodeSessionArchived, "the session is archived and takes no more messages")
		}
		if status == StatusExpired {
			return Errorf(CodeSessionExpired, "the session has expired and takes no more messages; start a new session")
		}
		return nil
	case OpCancel:
		if archived || !status.Active() {
			return Errorf(CodeSessionNotActive, "the session is %s; only pending, creating or running sessions can be cancelled", status)
		}
		return nil
	case OpArchive:
		if !status.Terminal() {
			return Errorf(CodeSessionActive, "the session is %s; cancel it before archiving", status)
		}
		return nil
	case OpUpdate:
		if archived {
			return Errorf(CodeSessionArchived, "the session is archived and cannot be changed")
		}
		return nil
	}
	return Internal(nil)
}
