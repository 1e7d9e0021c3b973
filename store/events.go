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
	var last int64
	err = tx.StmtContext(ctx, advance).QueryRowContext(ctx, len(in), created[len(in)-1], position, position, sessionID).Scan(&last)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, core.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	last -= int64(len(in)) // the seq before the batch
	for i, e := range in {
		ev := core.Event{
			ID:        core.EventID(sessionID, last+1+int64(i)),
			SessionID: sessionID,
			Type:      e.Type,
			Payload:   json.RawMessage(payloads[i]),
			Seq:       last + 1 + int64(i),
			CreatedAt: fromMS(created[i]),
		}
		if e.MessageID != "" {
			ev.MessageID = &e.MessageID
		}
		if e.CursorRunID != "" {
			ev.CursorRunID = &e.CursorRunID
		}
		out = append(out, ev)
	}
	if err := s.writeBlocks(ctx, tx, sessionID, last+1, in, payloads, created); err != nil {
		return nil, err
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
	// advanceSessionSQL moves the counters by a batch of ? events and
	// returns the new last seq.
	advanceSessionSQL = `UPDATE sessions SET last_event_seq = last_event_seq + ?, last_event_at = ?,
		stream_position = CASE WHEN ? = '' THEN stream_position ELSE ? END WHERE id = ?
		RETURNING last_event_seq`
	markMessageSQL = `UPDATE messages SET first_event_seq = COALESCE(first_event_seq, ?), last_event_seq = ?
		WHERE id = ? AND session_id = ?`
)

// The block statements (eventblocks.go); TestQueryPlans holds them to the
// (session_id, last_seq) index. The block holding seq since+1 is the first
// whose last_seq passes since, so a page costs the same at any depth. A
// message's events lie between the first and last seq its row records
// (other events may be between them), so its read is one bounded range too:
// as no block holds more than maxBlockEvents, none that starts at or before
// the message's last seq ends maxBlockEvents after it.
const (
	lastBlockSQL = `SELECT rowid, first_seq, last_seq, body FROM event_blocks
		WHERE session_id = ? ORDER BY last_seq DESC LIMIT 1`
	insertBlockSQL = `INSERT INTO event_blocks (session_id, first_seq, last_seq, body) VALUES (?, ?, ?, ?)`
	updateBlockSQL = `UPDATE event_blocks SET last_seq = ?, body = ? WHERE rowid = ?`
	listEventsSQL  = `SELECT first_seq, body FROM event_blocks
		WHERE session_id = ? AND last_seq > ? ORDER BY last_seq`
	listMessageEventsSQL = `SELECT first_seq, body FROM event_blocks
		WHERE session_id = ?1
		AND last_seq > MAX(?2, COALESCE((SELECT first_event_seq - 1 FROM messages WHERE id = ?3 AND session_id = ?1), ` + maxInt64 + `))
		AND first_seq <= COALESCE((SELECT last_event_seq FROM messages WHERE id = ?3 AND session_id = ?1), 0)
		AND last_seq < COALESCE((SELECT last_event_seq FROM messages WHERE id = ?3 AND session_id = ?1), 0) + ` + maxBlockEventsSQL + `
		ORDER BY last_seq`
	maxInt64 = "9223372036854775807"
	// A block ending at or past the message's last seq plus this starts
	// after it: the bound that keeps that read on the index.
	maxBlockEventsSQL = "128"
)

// writeBlocks stores the batch's events, the first with seq first: into the
// session's last block while it has room and ends just before first, then
// into new blocks.
func (s *Store) writeBlocks(ctx context.Context, tx *sql.Tx, sessionID string, first int64, in []core.EventInput, payloads [][]byte, created []int64) error {
	lastStmt, err := s.stmts.get(ctx, lastBlockSQL)
	if err != nil {
		return err
	}
	var (
		w                 blockWriter
		rowid             int64 // of the block w continues; 0: a new one
		wFirst            = first
		firstSeq, lastSeq int64
		body              []byte
	)
	switch err := tx.StmtContext(ctx, lastStmt).QueryRowContext(ctx, sessionID).Scan(&rowid, &firstSeq, &lastSeq, &body); {
	case errors.Is(err, sql.ErrNoRows):
		rowid = 0
	case err != nil:
		return err
	case lastSeq != first-1:
		rowid = 0 // not contiguous (never so from appends): start afresh
	default:
		// The writer goes on from the block's last record; a block that
		// does not parse or does not hold its seqs (damaged outside
		// flapjack) is left as it is and the batch starts a new one, so
		// the damage stays in that block.
		r := blockReader{body: body}
		for {
			_, ok, err := r.next()
			if err != nil {
				rowid = 0
				break
			}
			if !ok {
				if int64(r.n) == lastSeq-firstSeq+1 {
					w = blockWriter{body: body, count: r.n, last: r.last}
					wFirst = firstSeq
				} else {
					rowid = 0
				}
				break
			}
		}
	}
	flush := func(last int64) error {
		var st string
		var args []any
		if rowid != 0 {
			st, args = updateBlockSQL, []any{last, w.body, rowid}
		} else {
			st, args = insertBlockSQL, []any{sessionID, wFirst, last, w.body}
		}
		prepared, err := s.stmts.get(ctx, st)
		if err != nil {
			return err
		}
		_, err = tx.StmtContext(ctx, prepared).ExecContext(ctx, args...)
		return err
	}
	for i, e := range in {
		seq := first + int64(i)
		if !w.fits(len(payloads[i])) {
			// A full last block the batch has not added to is left as
			// it is.
			if i > 0 {
				if err := flush(seq - 1); err != nil {
					return err
				}
			}
			w, rowid, wFirst = blockWriter{}, 0, seq
		}
		w.add(record{
			created:   created[i],
			typ:       []byte(e.Type),
			messageID: nonEmpty(e.MessageID),
			runID:     nonEmpty(e.CursorRunID),
			payload:   payloads[i],
		})
	}
	return flush(first + int64(len(in)) - 1)
}

// nonEmpty is s as bytes, nil when empty (an absent id).
func nonEmpty(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// ListEvents reads the blocks from the one holding seq Since+1 on (by
// keyset on their last seq), so a page costs the same at any depth; with a
// MessageID, within that message's range. A Limit of zero or less means no
// limit.
func (s *Store) ListEvents(ctx context.Context, q core.EventQuery) ([]core.Event, error) {
	out := []core.Event{}
	if q.Limit > 0 {
		out = make([]core.Event, 0, min(q.Limit, 1000))
	}
	// Each block's payloads are slices of its body, valid until the next
	// block is read: the span the page keeps of it is copied once, and
	// most of a page's blocks is outside it.
	kept, offsets := 0, make([]int, 0, maxBlockEvents)
	err := s.scanEvents(ctx, q, func(e *core.Event, off int) bool {
		out = append(out, *e)
		offsets = append(offsets, off)
		return true
	}, func(body []byte) {
		if len(offsets) == 0 {
			return
		}
		lo, hi := offsets[0], offsets[len(offsets)-1]+len(out[len(out)-1].Payload)
		span := bytes.Clone(body[lo:hi])
		for i, off := range offsets {
			p := &out[kept+i].Payload
			off -= lo
			*p = span[off : off+len(*p) : off+len(*p)]
		}
		kept, offsets = len(out), offsets[:0]
	})
	if err != nil {
		return nil, err
	}
	core.SetEventIDs(q.SessionID, out)
	return out, nil
}

// StreamEvents calls fn with each event ListEvents would return, without
// holding them: see core.Store.
func (s *Store) StreamEvents(ctx context.Context, q core.EventQuery, fn func(e *core.Event) bool) error {
	return s.scanEvents(ctx, q, func(e *core.Event, _ int) bool { return fn(e) }, nil)
}

// scanEvents reads the events q selects, in seq order, calling fn with each
// until it returns false. *e is reused; its Payload (and ID, when stored)
// is a slice of the block's body at offset off, valid until the block ends,
// and a derived ID is left empty. blockEnd, when not nil, gets each body
// after its last call to fn, while it is still valid.
func (s *Store) scanEvents(ctx context.Context, q core.EventQuery, fn func(e *core.Event, off int) bool, blockEnd func(body []byte)) error {
	if q.Limit > 0 && q.Limit <= core.MaxEventLimit {
		// A page is read in tens of microseconds; watching ctx through it
		// would start two goroutines (database/sql's and the driver's) that
		// cost a tenth of that. A cancelled caller is still turned away
		// before the read begins.
		if err := ctx.Err(); err != nil {
			return wrap("list events", err)
		}
		ctx = context.WithoutCancel(ctx)
	}
	var rows *sql.Rows
	var err error
	if q.MessageID == "" {
		var st *sql.Stmt
		if st, err = s.stmts.get(ctx, listEventsSQL); err == nil {
			rows, err = st.QueryContext(ctx, q.SessionID, q.Since)
		}
	} else {
		var st *sql.Stmt
		if st, err = s.stmts.get(ctx, listMessageEventsSQL); err == nil {
			rows, err = st.QueryContext(ctx, q.SessionID, q.Since, q.MessageID)
		}
	}
	if err != nil {
		return wrap("list events", err)
	}
	defer rows.Close()
	var (
		n, size      int
		typ          core.EventType
		msgID, runID *string
		body         sql.RawBytes // the block's body in place, valid until the next row
		e            core.Event
		stop         bool
	)
	// Neighbours nearly always share type, message and run: each string is
	// made once and shared by the events that repeat it.
	intern := func(b []byte, s **string) *string {
		if b == nil {
			return nil
		}
		if *s == nil || string(b) != **s {
			v := string(b)
			*s = &v
		}
		return *s
	}
	for !stop && rows.Next() {
		var first int64
		if err := rows.Scan(&first, &body); err != nil {
			return wrap("list events", err)
		}
		r := blockReader{body: body}
		for seq := first; !stop; seq++ {
			rec, ok, err := r.next()
			if err != nil {
				return wrap("list events", fmt.Errorf("session %s, block from %d: %w", q.SessionID, first, err))
			}
			if !ok {
				break
			}
			if seq <= q.Since || (q.MessageID != "" && string(rec.messageID) != q.MessageID) {
				continue
			}
			if size += len(rec.payload); q.MaxBytes > 0 && size > q.MaxBytes && n > 0 {
				stop = true // the page is full; no more blocks are read
				break
			}
			if string(rec.typ) != string(typ) {
				typ = core.EventType(rec.typ)
			}
			e = core.Event{
				SessionID:   q.SessionID,
				MessageID:   intern(rec.messageID, &msgID),
				CursorRunID: intern(rec.runID, &runID),
				Type:        typ,
				Payload:     json.RawMessage(rec.payload),
				Seq:         seq,
				CreatedAt:   fromMS(rec.created),
			}
			if rec.id != nil {
				e.ID = string(rec.id)
			}
			n++
			end := len(body) - len(r.body) // the payload ends its record
			stop = !fn(&e, end-len(rec.payload)) || (q.Limit > 0 && n == q.Limit)
		}
		if blockEnd != nil {
			blockEnd(body)
		}
	}
	if err := rows.Err(); err != nil {
		return wrap("list events", err)
	}
	return nil
}
