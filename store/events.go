package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// emptyPayload is what an event without a payload stores, so every payload is
// a JSON value.
const emptyPayload = "{}"

// AppendEvents appends events in one transaction, with consecutive seqs after
// the session's last one, and leaves Version alone: the log grows while the
// Service holds a session copy it will compare-and-set later.
func (s *Store) AppendEvents(ctx context.Context, sessionID string, events []core.EventInput) ([]core.Event, error) {
	if len(events) == 0 {
		var exists bool
		err := s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM sessions WHERE id = ?)`, sessionID).Scan(&exists)
		if err == nil && !exists {
			err = core.ErrNotFound
		}
		if err != nil {
			return nil, wrap("append events to "+sessionID, err)
		}
		return []core.Event{}, nil
	}
	var out []core.Event
	err := s.writeSession(ctx, sessionID, func(tx *sql.Tx) error {
		var err error
		out, err = s.appendEvents(ctx, tx, sessionID, events)
		return err
	})
	if err != nil {
		return nil, wrap("append events to "+sessionID, err)
	}
	return out, nil
}

// appendEvents assigns seqs from the session's last_event_seq and advances it,
// inside the caller's write transaction: the IMMEDIATE lock makes the
// read-then-write safe across processes, and commit order is seq order. The
// transaction must be the session's (writeSession), or its waiters would
// not be woken.
func (s *Store) appendEvents(ctx context.Context, tx *sql.Tx, sessionID string, in []core.EventInput) ([]core.Event, error) {
	out := make([]core.Event, 0, len(in))
	if len(in) == 0 {
		return out, nil
	}
	if s.scope.session != sessionID {
		return nil, fmt.Errorf("events of session %s appended in a transaction of %q: use writeSession", sessionID, s.scope.session)
	}
	// Validate and time the batch first: the session's counters then move
	// in one statement that also says where the batch starts.
	now := time.Now().UTC().Truncate(time.Millisecond)
	created := make([]int64, len(in))
	position := ""
	payloads := make([][]byte, len(in))
	var compact bytes.Buffer
	for i, e := range in {
		// Checked and compacted once here, so readers write it as it is.
		payloads[i] = []byte(emptyPayload)
		if len(e.Payload) > 0 {
			compact.Reset()
			if err := json.Compact(&compact, e.Payload); err != nil {
				return nil, fmt.Errorf("event %s: payload is not valid JSON: %w", e.Type, err)
			}
			payloads[i] = bytes.Clone(compact.Bytes())
		}
		t := e.CreatedAt
		if t.IsZero() {
			t = now
		}
		created[i] = ms(t)
		if e.StreamPosition != "" {
			position = e.StreamPosition
		}
	}
	advance, err := s.stmts.get(ctx, advanceSessionSQL)
	if err != nil {
		return nil, err
	}
	insertStmt, err := s.stmts.get(ctx, insertEventSQL)
	if err != nil {
		return nil, err
	}
	var last int64
	err = tx.StmtContext(ctx, advance).QueryRowContext(ctx, len(in), created[len(in)-1], position, position, sessionID).Scan(&last)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, core.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	last -= int64(len(in)) // the seq before the batch
	insert := tx.StmtContext(ctx, insertStmt)
	for i, e := range in {
		payload := payloads[i]
		last++
		ev := core.Event{
			ID:        core.EventID(sessionID, last),
			SessionID: sessionID,
			Type:      e.Type,
			Payload:   json.RawMessage(payload),
			Seq:       last,
			CreatedAt: fromMS(created[i]),
		}
		if e.MessageID != "" {
			ev.MessageID = &e.MessageID
		}
		if e.CursorRunID != "" {
			ev.CursorRunID = &e.CursorRunID
		}
		_, err := insert.ExecContext(ctx, sessionID, ev.Seq, emptyNull(e.MessageID),
			emptyNull(e.CursorRunID), string(e.Type), string(payload), created[i])
		if err != nil {
			return nil, fmt.Errorf("event seq %d: %w", ev.Seq, err)
		}
		out = append(out, ev)
	}
	// Each message's range grows to cover its new events (a batch is
	// nearly always one message's, so this is one statement).
	var mark *sql.Stmt
	for i := 0; i < len(in); {
		j := i + 1
		for j < len(in) && in[j].MessageID == in[i].MessageID {
			j++
		}
		if id := in[i].MessageID; id != "" {
			if mark == nil {
				m, err := s.stmts.get(ctx, markMessageSQL)
				if err != nil {
					return nil, err
				}
				mark = tx.StmtContext(ctx, m)
			}
			if _, err := mark.ExecContext(ctx, out[i].Seq, out[j-1].Seq, id, sessionID); err != nil {
				return nil, err
			}
		}
		i = j
	}
	return out, nil
}

const (
	// id stays NULL: it is derived from the seq (core.EventID).
	insertEventSQL = `INSERT INTO events
		(session_id, seq, message_id, cursor_run_id, event_type, payload, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`
	// advanceSessionSQL moves the counters by a batch of ? events and
	// returns the new last seq.
	advanceSessionSQL = `UPDATE sessions SET last_event_seq = last_event_seq + ?, last_event_at = ?,
		stream_position = CASE WHEN ? = '' THEN stream_position ELSE ? END WHERE id = ?
		RETURNING last_event_seq`
	markMessageSQL = `UPDATE messages SET first_event_seq = COALESCE(first_event_seq, ?), last_event_seq = ?
		WHERE id = ? AND session_id = ?`
)

// The keyset reads of ListEvents; TestQueryPlans holds them to the primary
// key. A message's events lie between the first and last seq its row
// records (other events may be between them), so that read is one bounded
// range scan too.
const (
	listEventsSQL = `SELECT seq, id, message_id, cursor_run_id, event_type, payload, created_at
		FROM events WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?`
	listMessageEventsSQL = `SELECT seq, id, message_id, cursor_run_id, event_type, payload, created_at
		FROM events WHERE session_id = ?1 AND message_id = ?2
		AND seq > MAX(?3, COALESCE((SELECT first_event_seq - 1 FROM messages WHERE id = ?2 AND session_id = ?1), ` + maxInt64 + `))
		AND seq <= COALESCE((SELECT last_event_seq FROM messages WHERE id = ?2 AND session_id = ?1), 0)
		ORDER BY seq LIMIT ?4`
	maxInt64 = "9223372036854775807"
)

// ListEvents reads by keyset on the (session_id, seq) primary key, with a
// MessageID within that message's range, so a page costs the same at any
// depth.
// A Limit of zero or less means no limit.
func (s *Store) ListEvents(ctx context.Context, q core.EventQuery) ([]core.Event, error) {
	limit := int64(q.Limit)
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	var rows *sql.Rows
	var err error
	if q.MessageID == "" {
		var st *sql.Stmt
		if st, err = s.stmts.get(ctx, listEventsSQL); err == nil {
			rows, err = st.QueryContext(ctx, q.SessionID, q.Since, limit)
		}
	} else {
		var st *sql.Stmt
		if st, err = s.stmts.get(ctx, listMessageEventsSQL); err == nil {
			rows, err = st.QueryContext(ctx, q.SessionID, q.MessageID, q.Since, limit)
		}
	}
	if err != nil {
		return nil, wrap("list events", err)
	}
	defer rows.Close()
	out := []core.Event{}
	if q.Limit > 0 {
		out = make([]core.Event, 0, min(q.Limit, 1000))
	}
	size := 0
	for rows.Next() {
		var (
			e                core.Event
			id, msgID, runID sql.NullString
			typ, payload     string
			created          int64
		)
		if err := rows.Scan(&e.Seq, &id, &msgID, &runID, &typ, &payload, &created); err != nil {
			return nil, wrap("list events", err)
		}
		e.ID = id.String
		if !id.Valid {
			e.ID = core.EventID(q.SessionID, e.Seq)
		}
		e.SessionID = q.SessionID
		e.MessageID, e.CursorRunID = strPtr(msgID), strPtr(runID)
		e.Type = core.EventType(typ)
		e.Payload = json.RawMessage(payload)
		e.CreatedAt = fromMS(created)
		if size += len(payload); q.MaxBytes > 0 && size > q.MaxBytes && len(out) > 0 {
			break // the page is full; no more rows are read
		}
		out = append(out, e)
	}
	return out, wrap("list events", rows.Err())
}
