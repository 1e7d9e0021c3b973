package store

import (
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
		out, err = appendEvents(ctx, tx, sessionID, events)
		return err
	})
	if err != nil {
		return nil, wrap("append events to "+sessionID, err)
	}
	return out, nil
}

// appendEvents assigns seqs from the session's last_event_seq and advances it,
// inside the caller's write transaction: the IMMEDIATE lock makes the
// read-then-write safe across processes, and commit order is seq order.
func appendEvents(ctx context.Context, tx *sql.Tx, sessionID string, in []core.EventInput) ([]core.Event, error) {
	out := make([]core.Event, 0, len(in))
	if len(in) == 0 {
		return out, nil
	}
	var last int64
	err := tx.QueryRowContext(ctx, `SELECT last_event_seq FROM sessions WHERE id = ?`, sessionID).Scan(&last)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, core.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO events
		(session_id, seq, id, message_id, cursor_run_id, event_type, payload, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return nil, err
	}
	defer stmt.Close()
	now := time.Now().UTC().Truncate(time.Millisecond)
	for _, e := range in {
		payload := []byte(emptyPayload)
		if len(e.Payload) > 0 {
			if !json.Valid(e.Payload) {
				return nil, fmt.Errorf("event %s: payload is not valid JSON", e.Type)
			}
			payload = e.Payload
		}
		created := e.CreatedAt
		if created.IsZero() {
			created = now
		}
		last++
		ev := core.Event{
			ID:        core.NewSortableID(core.PrefixEvent, created),
			SessionID: sessionID,
			Type:      e.Type,
			Payload:   json.RawMessage(append([]byte(nil), payload...)),
			Seq:       last,
			CreatedAt: fromMS(ms(created)),
		}
		if e.MessageID != "" {
			ev.MessageID = &e.MessageID
		}
		if e.CursorRunID != "" {
			ev.CursorRunID = &e.CursorRunID
		}
		_, err := stmt.ExecContext(ctx, sessionID, ev.Seq, ev.ID, emptyNull(e.MessageID),
			emptyNull(e.CursorRunID), string(e.Type), string(payload), ms(created))
		if err != nil {
			return nil, fmt.Errorf("event seq %d: %w", ev.Seq, err)
		}
		out = append(out, ev)
	}
	position := ""
	for _, e := range in {
		if e.StreamPosition != "" {
			position = e.StreamPosition
		}
	}
	_, err = tx.ExecContext(ctx, `UPDATE sessions SET last_event_seq = ?, last_event_at = ?,
		stream_position = CASE WHEN ? = '' THEN stream_position ELSE ? END WHERE id = ?`,
		last, ms(out[len(out)-1].CreatedAt), position, position, sessionID)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// The keyset reads of ListEvents; TestQueryPlans holds them to their indexes.
// Without statistics the planner would read a message's events through the
// primary key, filtering every later event of the session; INDEXED BY seeks.
const (
	listEventsSQL = `SELECT seq, id, message_id, cursor_run_id, event_type, payload, created_at
		FROM events WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?`
	listMessageEventsSQL = `SELECT seq, id, message_id, cursor_run_id, event_type, payload, created_at
		FROM events INDEXED BY events_message
		WHERE session_id = ? AND message_id = ? AND seq > ? ORDER BY seq LIMIT ?`
)

// ListEvents reads by keyset on the (session_id, seq) primary key, or on
// events_message with a MessageID, so a page costs the same at any depth.
// A Limit of zero or less means no limit.
func (s *Store) ListEvents(ctx context.Context, q core.EventQuery) ([]core.Event, error) {
	limit := int64(q.Limit)
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	var rows *sql.Rows
	var err error
	if q.MessageID == "" {
		rows, err = s.db.QueryContext(ctx, listEventsSQL, q.SessionID, q.Since, limit)
	} else {
		rows, err = s.db.QueryContext(ctx, listMessageEventsSQL, q.SessionID, q.MessageID, q.Since, limit)
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
			e            core.Event
			msgID, runID sql.NullString
			typ, payload string
			created      int64
		)
		if err := rows.Scan(&e.Seq, &e.ID, &msgID, &runID, &typ, &payload, &created); err != nil {
			return nil, wrap("list events", err)
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
