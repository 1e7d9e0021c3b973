package store

import (
	"context"
	"database/sql"
	"errors"

	"github.com/flapjack-dev/flapjack/core"
)

// The journal of upstream calls in flight (core.UpstreamCall). Each method is
// one statement, committed with synchronous=FULL before it returns, so an
// entry saved before a call survives a crash during the call.

// SaveUpstreamCall inserts or replaces the entry of c's session and message.
func (s *Store) SaveUpstreamCall(ctx context.Context, c core.UpstreamCall) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO upstream_calls (session_id, message_id, started_at, agent_id, run_id)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (session_id, message_id) DO UPDATE SET
			started_at = excluded.started_at, agent_id = excluded.agent_id, run_id = excluded.run_id`,
		c.SessionID, c.MessageID, ms(c.StartedAt), nullIfEmpty(c.AgentID), nullIfEmpty(c.RunID))
	return wrap("save upstream call", err)
}

// GetUpstreamCall returns the entry of a session's message; ok is false when
// there is none.
func (s *Store) GetUpstreamCall(ctx context.Context, sessionID, messageID string) (c core.UpstreamCall, ok bool, err error) {
	c, err = scanUpstreamCall(s.db.QueryRowContext(ctx, `SELECT session_id, message_id, started_at, agent_id, run_id
		FROM upstream_calls WHERE session_id = ? AND message_id = ?`, sessionID, messageID))
	if errors.Is(err, sql.ErrNoRows) {
		return core.UpstreamCall{}, false, nil
	}
	return c, err == nil, wrap("get upstream call", err)
}

// ListUpstreamCalls returns every entry, oldest first.
func (s *Store) ListUpstreamCalls(ctx context.Context) ([]core.UpstreamCall, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT session_id, message_id, started_at, agent_id, run_id
		FROM upstream_calls ORDER BY started_at, session_id, message_id`)
	if err != nil {
		return nil, wrap("list upstream calls", err)
	}
	defer rows.Close()
	var out []core.UpstreamCall
	for rows.Next() {
		c, err := scanUpstreamCall(rows)
		if err != nil {
			return nil, wrap("list upstream calls", err)
		}
		out = append(out, c)
	}
	return out, wrap("list upstream calls", rows.Err())
}

// DeleteUpstreamCall removes the entry of a session's message, if any.
func (s *Store) DeleteUpstreamCall(ctx context.Context, sessionID, messageID string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM upstream_calls WHERE session_id = ? AND message_id = ?`, sessionID, messageID)
	return wrap("delete upstream call", err)
}

// DeleteUpstreamCalls removes every entry of a session.
func (s *Store) DeleteUpstreamCalls(ctx context.Context, sessionID string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM upstream_calls WHERE session_id = ?`, sessionID)
	return wrap("delete upstream calls", err)
}

func scanUpstreamCall(row interface{ Scan(...any) error }) (core.UpstreamCall, error) {
	var c core.UpstreamCall
	var started int64
	var agent, run sql.NullString
	if err := row.Scan(&c.SessionID, &c.MessageID, &started, &agent, &run); err != nil {
		return core.UpstreamCall{}, err
	}
	c.StartedAt, c.AgentID, c.RunID = fromMS(started), agent.String, run.String
	return c, nil
}
