package core

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The transition functions: every change of a session's status, its
// archived flag and its messages' statuses is decided here, by a pure
// function of the current state (no I/O), checked against the transition
// table. Service, Runner and sweep read the session, call one of these, and
// apply the Change with a compare-and-set; on a lost race they read again and
// decide again. Nothing else assigns a status: TestOnlyTransitionsAssignStatus
// holds the package to it.

// errNoChange lets a decision say there is nothing to write.
var errNoChange = errors.New("no change")

// errBadTransition is a change the table does not allow: an internal error,
// since every public operation checks its preconditions first.
var errBadTransition = errors.New("transition not allowed")

// moveTo moves s to status to, after checking the table, and returns the
// status event. A terminal status records the completion time. The run
// handle is left alone: only the runner, recording the run's end, clears
// it (a cancel waits for that).
func moveTo(s *Session, to Status, now time.Time, reason string) (EventInput, error) {
	if !CanTransition(s.Status, to) {
		return EventInput{}, fmt.Errorf("%w: %s → %s", errBadTransition, s.Status, to)
	}
	prev := s.Status
	s.Status = to
	if to.Terminal() {
		s.CompletedAt = &now
	}
	return statusEvent(now, prev, to, reason), nil
}

// newSessionState is a session's state at creation: pending, its first
// message queued.
func newSessionState(s *Session, m *Message) {
	s.Status, m.Status = StatusPending, MessageQueued
}

// decideFollowUp adds message m: queued behind an active run, or starting a
// new run of a session that ended (back to creating).
func decideFollowUp(s Session, m Message, now time.Time) (Change, error) {
	if err := CheckOperation(OpSend, s.Status, s.Archived); err != nil {
		return Change{}, err
	}
	if archiving(s, now) {
		return Change{}, Errorf(CodeSessionArchived, "session %s is being archived; if the archive fails, send the message again", s.ID)
	}
	m.Status = MessageQueued
	queued := s.Status.Active()
	ch := Change{Messages: []Message{m}, Events: []EventInput{userMessageEvent(now, m, queued)}}
	if !queued {
		ev, err := moveTo(&s, StatusCreating, now, "follow-up message")
		if err != nil {
			return Change{}, err
		}
		s.Error, s.CompletedAt = nil, nil
		ch.Events = append(ch.Events, ev)
	}
	ch.Session = s
	return ch, nil
}

// decideCancel cancels an active session and its running and queued messages.
func decideCancel(s Session, msgs []Message, now time.Time) (Change, error) {
	if err := CheckOperation(OpCancel, s.Status, s.Archived); err != nil {
		return Change{}, err
	}
	ev, err := moveTo(&s, StatusCancelled, now, "cancelled by request")
	if err != nil {
		return Change{}, err
	}
	ch := Change{Events: []EventInput{ev}}
	for _, m := range msgs {
		if m.Status == MessageQueued || m.Status == MessageRunning {
			m.Status, m.CompletedAt = MessageCancelled, &now
			ch.Messages = append(ch.Messages, m)
		}
	}
	ch.Session = s
	return ch, nil
}

// decideArchive archives a terminal session and wipes its key; an archived
// one needs nothing (errNoChange).
func decideArchive(s Session, now time.Time) (Change, error) {
	if s.Archived {
		return Change{}, errNoChange
	}
	if err := CheckOperation(OpArchive, s.Status, s.Archived); err != nil {
		return Change{}, err
	}
	s.Archived = true
	s.CursorKeyCiphertext = nil
	s.ArchivingAt = nil
	ev := statusEvent(now, s.Status, s.Status, "archived")
	ev.Payload = mustJSON(map[string]any{"status": s.Status, "archived": true, "reason": "archived; the stored Cursor API key was wiped"})
	return Change{Session: s, Events: []EventInput{ev}, Scrub: true}, nil
}

// ArchiveLease is how long a mark that an archive began upstream holds
// follow-ups off: long past any upstream archive call, short enough that the
// mark of an archiver that died lapses soon.
const ArchiveLease = 2 * time.Minute

// archiving reports whether an archive of s is under way.
func archiving(s Session, now time.Time) bool {
	return s.ArchivingAt != nil && now.Sub(*s.ArchivingAt) < ArchiveLease
}

// decideArchiveMark marks an ended session as being archived before its
// upstream agent is archived, so no follow-up lands in between and finds
// the agent gone. The mark has millisecond precision, as stored, so its
// archiver can tell it apart (decideArchiveUnmark).
func decideArchiveMark(s Session, now time.Time) (Change, error) {
	if s.Archived {
		return Change{}, errNoChange
	}
	if err := CheckOperation(OpArchive, s.Status, s.Archived); err != nil {
		return Change{}, err
	}
	t := now.Truncate(time.Millisecond)
	s.ArchivingAt = &t
	return Change{Session: s}, nil
}

// decideArchiveUnmark removes the mark made at t after the upstream archive
// failed: the session is as it was, key included. A newer mark (another
// archive under way) stays.
func decideArchiveUnmark(s Session, t time.Time) (Change, error) {
	if s.ArchivingAt == nil || !s.ArchivingAt.Equal(t) {
		return Change{}, errNoChange
	}
	s.ArchivingAt = nil
	return Change{Session: s}, nil
}

// decideExpire expires a session whose workspace outlived its TTL.
func decideExpire(s Session, now time.Time, reason string) (Change, error) {
	if s.Archived || !s.Status.Terminal() || s.Status == StatusExpired {
		return Change{}, errNoChange // only a session that ended has a workspace to expire
	}
	ev, err := moveTo(&s, StatusExpired, now, reason)
	if err != nil {
		return Change{}, err
	}
	return Change{Session: s, Events: []EventInput{ev}}, nil
}

// decidePrepare is the runner taking a pending session up (pending → creating).
func decidePrepare(s Session, now time.Time) (Change, error) {
	if s.Archived || s.Status != StatusPending {
		return Change{}, errNoChange
	}
	ev, err := moveTo(&s, StatusCreating, now, "preparing the run")
	if err != nil {
		return Change{}, err
	}
	return Change{Session: s, Events: []EventInput{ev}}, nil
}

// decideResumeQueued starts the run of a message left queued on a session
// that ended (by a run that failed under a previous runner).
func decideResumeQueued(s Session, now time.Time) (Change, error) {
	if !s.Status.Terminal() || s.Status == StatusExpired || s.Archived {
		return Change{}, errNoChange
	}
	ev, err := moveTo(&s, StatusCreating, now, "running the next queued message")
	if err != nil {
		return Change{}, err
	}
	s.Error, s.CompletedAt = nil, nil
	return Change{Session: s, Events: []EventInput{ev}}, nil
}

// decideRunStart marks m running under runID (what Prepare set up) and the
// session running, with the run handle "starting". It returns the change and
// the session and message as they are then.
func decideRunStart(s Session, m Message, runID, agentID string, now time.Time) (Change, Session, Message, error) {
	if s.Archived {
		return Change{}, Session{}, Message{}, errNoChange
	}
	if agentID != "" {
		s.CursorAgentID = &agentID
	}
	m.Status, m.StartedAt, m.CursorRunID = MessageRunning, &now, &runID
	s.LatestRunID, s.StreamPosition = &runID, ""
	// The run is in flight from here until its outcome clears the handle.
	s.RunHandle = RunHandleStarting
	if s.StartedAt == nil {
		s.StartedAt = &now
	}
	ch := Change{Messages: []Message{m}}
	if s.Status != StatusRunning {
		ev, err := moveTo(&s, StatusRunning, now, "run started")
		if err != nil {
			return Change{}, Session{}, Message{}, err
		}
		ev.MessageID, ev.CursorRunID = m.ID, runID
		ch.Events = append(ch.Events, ev)
	}
	ch.Session = s
	return ch, s, m, nil
}

// decideEnd ends a session the runner cannot go on with (no message to run,
// a runtime it lacks, the last outcome after an adopted run).
func decideEnd(s Session, to Status, reason string, now time.Time) (Change, error) {
	if s.Archived {
		return Change{}, errNoChange
	}
	ev, err := moveTo(&s, to, now, reason)
	if err != nil {
		return Change{}, err
	}
	s.RunHandle = "" // nothing runs any more
	if reason != "" && to == StatusError {
		s.Error = &reason
	}
	return Change{Session: s, Events: []EventInput{ev}}, nil
}

// decideOutcome records how message messageID's run ended: the message's
// status and results, and unless more messages are queued, the session's
// status: finished, error, cancelled (a run cancelled upstream) or expired
// (a run that expired upstream; its queued messages are cancelled then too).
func decideOutcome(s Session, msgs []Message, messageID string, out RunOutcome, now time.Time) (Change, error) {
	ch := Change{}
	s.RunHandle = ""
	for _, m := range msgs {
		if m.ID != messageID || (m.Status != MessageRunning && m.Status != MessageQueued) {
			continue
		}
		m.Status, m.CompletedAt = out.Status, &now
		if m.StartedAt == nil {
			m.StartedAt = &now
		}
		if out.ResultText != "" {
			m.ResultText = &out.ResultText
		}
		d := out.DurationMS
		m.DurationMS = &d
		if !out.Usage.Empty() {
			m.Usage = out.Usage
			s.Usage = s.Usage.Plus(out.Usage)
		}
		if out.PRURL != "" {
			m.PRURL = &out.PRURL
		}
		if out.Status == MessageError || out.Status == MessageCancelled {
			m.Error = &out.Error
			ev := EventInput{MessageID: m.ID, Type: EventError, CreatedAt: now,
				Payload: mustJSON(map[string]any{"message": out.Error, "message_id": m.ID})}
			if m.CursorRunID != nil {
				ev.CursorRunID = *m.CursorRunID
			}
			ch.Events = append(ch.Events, ev)
		}
		ch.Messages = append(ch.Messages, m)
	}
	if out.PRURL != "" {
		s.PRURL = &out.PRURL
	}
	if out.PRBranch != "" {
		s.PRBranch = &out.PRBranch
	}
	// A run that ended upstream ends the session: its queued messages will
	// not run.
	if out.Expired || out.Status == MessageCancelled {
		for _, m := range msgs {
			if m.Status == MessageQueued && m.ID != messageID {
				m.Status, m.CompletedAt = MessageCancelled, &now
				ch.Messages = append(ch.Messages, m)
			}
		}
	}
	_, next := openMessages(applyMessages(msgs, ch.Messages))
	if (s.Status == StatusRunning || s.Status == StatusCreating) && next == nil && !s.Archived {
		to, reason := StatusFinished, "run finished"
		switch {
		case out.Expired && CanTransition(s.Status, StatusExpired):
			to, reason = StatusExpired, out.Error
		case out.Status == MessageCancelled:
			to, reason = StatusCancelled, out.Error
		case out.Status == MessageError || out.Expired:
			to, reason = StatusError, out.Error
		}
		ev, err := moveTo(&s, to, now, reason)
		if err != nil {
			return Change{}, err
		}
		s.Error = nil
		if to == StatusError {
			s.Error = &reason
		}
		ev.MessageID = messageID
		ch.Events = append(ch.Events, ev)
	}
	ch.Session = s
	return ch, nil
}

// applyDecision is the one compare-and-set loop: read the session and its
// messages, decide the change, apply it; on a lost race read again and
// decide again, a bounded number of times. The decision's errors (the
// documented ones, errNoChange) come back unchanged.
func applyDecision(ctx context.Context, st Store, step func(Step), read func(context.Context) (Session, []Message, error), decide func(Session, []Message) (Change, error)) (Change, error) {
	for range maxRetries {
		s, msgs, err := read(ctx)
		if err != nil {
			return Change{}, err
		}
		ch, err := decide(s, msgs)
		if err != nil {
			return Change{}, err
		}
		at(step, StepDecided)
		if _, err := st.Apply(ctx, ch); errors.Is(err, ErrConflict) {
			continue
		} else if err != nil && !errors.Is(err, ErrScrubPending) {
			return ch, err
		}
		// Committed (a pending scrub is the runner's to finish).
		return ch, nil
	}
	return Change{}, fmt.Errorf("too many concurrent changes to one session")
}
