package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/flapjack-dev/flapjack/core"
)

const sessionColumns = `id, org_id, code_agent_id, cursor_agent_id, repo_url, starting_ref, status,
	latest_run_id, pr_url, pr_branch, error, archived, webhook_url, model_id, model_params,
	auto_create_pr, work_on_current_branch, skip_reviewer_request, runtime, preamble,
	cursor_key_ciphertext, run_handle, version, last_event_seq, last_event_at,
	created_by, created_at, started_at, completed_at, stream_position, usage, archiving_at`

const messageColumns = `id, session_id, cursor_run_id, role, prompt, status, result_text,
	duration_ms, pr_url, error, started_at, completed_at, created_at, usage`

// CreateSession inserts sess (with sess.Version as its starting version, so the
// caller's copy can go straight into Apply), its first message and its opening
// events in one transaction. The event counters are the store's: sess.LastEventSeq
// and sess.LastEventAt are ignored.
func (s *Store) CreateSession(ctx context.Context, sess core.Session, first core.Message, events []core.EventInput) ([]core.Event, error) {
	params, err := paramsArg(sess.ModelParams)
	if err != nil {
		return nil, wrap("create session", err)
	}
	var out []core.Event
	err = s.writeSession(ctx, sess.ID, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO sessions (`+sessionColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, ?, ?, ?, ?, ?, ?, ?)`,
			sess.ID, sess.OrgID, sess.CodeAgentID, strArg(sess.CursorAgentID), sess.RepoURL, sess.StartingRef,
			string(sess.Status), strArg(sess.LatestRunID), strArg(sess.PRURL), strArg(sess.PRBranch),
			strArg(sess.Error), sess.Archived, strArg(sess.WebhookURL), sess.ModelID, params,
			sess.AutoCreatePR, sess.WorkOnCurrentBranch, sess.SkipReviewerRequest, sess.Runtime, sess.Preamble,
			blobArg(sess.CursorKeyCiphertext), sess.RunHandle, sess.Version,
			sess.CreatedBy, ms(sess.CreatedAt), msPtr(sess.StartedAt), msPtr(sess.CompletedAt), sess.StreamPosition, usageArg(sess.Usage), msPtr(sess.ArchivingAt))
		if err != nil {
			return err
		}
		if err := upsertMessages(ctx, tx, sess.ID, []core.Message{first}); err != nil {
			return err
		}
		if out, err = s.appendEvents(ctx, tx, sess.ID, events); err != nil {
			return err
		}
		return insertDeliveries(ctx, tx, sess, out)
	})
	if err != nil {
		return nil, wrap("create session", err)
	}
	return out, nil
}

// GetSession returns one session, or core.ErrNotFound.
func (s *Store) GetSession(ctx context.Context, id string) (core.Session, error) {
	st, err := s.stmts.get(ctx, getSessionSQL)
	if err != nil {
		return core.Session{}, wrap("get session "+id, err)
	}
	sess, err := scanSession(st.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = core.ErrNotFound
	}
	return sess, wrap("get session "+id, err)
}

// ListSessions filters in SQL. A nil OrgIDs means every org, an empty non-nil
// one means none.
func (s *Store) ListSessions(ctx context.Context, f core.SessionFilter) ([]core.Session, error) {
	out := []core.Session{}
	if f.OrgIDs != nil && len(f.OrgIDs) == 0 {
		return out, nil
	}
	var where []string
	var args []any
	if f.OrgIDs != nil {
		where, args = inClause(where, args, "org_id", f.OrgIDs)
	}
	if f.CodeAgentID != "" {
		where, args = append(where, "code_agent_id = ?"), append(args, f.CodeAgentID)
	}
	if len(f.Statuses) > 0 {
		where, args = inClause(where, args, "status", f.Statuses)
	}
	if f.Archived != nil {
		where, args = append(where, "archived = ?"), append(args, *f.Archived)
	}
	where, args = afterClause(where, args, f.After)
	order := ` ORDER BY created_at DESC, id DESC`
	if f.OldestFirst {
		order = ` ORDER BY created_at, id`
	}
	order, args = limitClause(order, args, f.Limit)
	rows, err := s.db.QueryContext(ctx, `SELECT `+sessionColumns+` FROM sessions`+whereSQL(where)+order, args...)
	if err != nil {
		return nil, wrap("list sessions", err)
	}
	defer rows.Close()
	for rows.Next() {
		sess, err := scanSession(rows)
		if err != nil {
			return nil, wrap("list sessions", err)
		}
		out = append(out, sess)
	}
	return out, wrap("list sessions", rows.Err())
}

// ListMessages returns a session's messages in send order; none for an unknown
// session.
func (s *Store) ListMessages(ctx context.Context, sessionID string) ([]core.Message, error) {
	st, err := s.stmts.get(ctx, listMessagesSQL)
	if err != nil {
		return nil, wrap("list messages", err)
	}
	rows, err := st.QueryContext(ctx, sessionID)
	if err != nil {
		return nil, wrap("list messages", err)
	}
	defer rows.Close()
	out := []core.Message{}
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, wrap("list messages", err)
		}
		out = append(out, m)
	}
	return out, wrap("list messages", rows.Err())
}

// Apply writes c in one transaction: the session's mutable columns under a
// compare-and-set on Version, the messages, the events, and the webhook
// outbox (see core.Change). With c.Scrub it then checkpoints the WAL so wiped
// bytes leave the disk; if that checkpoint cannot finish, the change stays
// committed and the events are returned with an error.
func (s *Store) Apply(ctx context.Context, c core.Change) ([]core.Event, error) {
	sess := c.Session
	var out []core.Event
	err := s.writeSession(ctx, sess.ID, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE sessions SET status = ?, cursor_agent_id = ?,
			latest_run_id = ?, pr_url = ?, pr_branch = ?, error = ?, archived = ?, webhook_url = ?,
			started_at = ?, completed_at = ?, cursor_key_ciphertext = ?, run_handle = ?,
			stream_position = ?, usage = ?, archiving_at = ?, version = version + 1
			WHERE id = ? AND version = ?`,
			string(sess.Status), strArg(sess.CursorAgentID), strArg(sess.LatestRunID), strArg(sess.PRURL),
			strArg(sess.PRBranch), strArg(sess.Error), sess.Archived, strArg(sess.WebhookURL),
			msPtr(sess.StartedAt), msPtr(sess.CompletedAt), blobArg(sess.CursorKeyCiphertext), sess.RunHandle,
			sess.StreamPosition, usageArg(sess.Usage), msPtr(sess.ArchivingAt), sess.ID, sess.Version)
		if err := mustAffect(res, err); err != nil {
			if !errors.Is(err, core.ErrNotFound) {
				return err
			}
			var exists bool
			if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM sessions WHERE id = ?)`, sess.ID).Scan(&exists); err != nil {
				return err
			}
			if exists {
				return core.ErrConflict
			}
			return core.ErrNotFound
		}
		if err := cancelStaleDeliveries(ctx, tx, sess.ID, sess.WebhookURL); err != nil {
			return err
		}
		if err := upsertMessages(ctx, tx, sess.ID, c.Messages); err != nil {
			return err
		}
		if out, err = s.appendEvents(ctx, tx, sess.ID, c.Events); err != nil {
			return err
		}
		return insertDeliveries(ctx, tx, sess, out)
	})
	if err != nil {
		return nil, wrap("apply to session "+sess.ID, err)
	}
	if c.Scrub {
		if err := s.checkpoint(ctx); err != nil {
			// Committed: the caller must not report a failure. The runner
			// checkpoints again (Scrub) until no reader holds the WAL.
			return out, fmt.Errorf("%w: session %s: %v", core.ErrScrubPending, sess.ID, err)
		}
	}
	return out, nil
}

// Scrub checkpoints the WAL into the database file and truncates it, so bytes
// a committed change wiped (an archived session's key) leave the disk; it
// fails while a reader holds the WAL, and is tried again later.
func (s *Store) Scrub(ctx context.Context) error { return s.checkpoint(ctx) }

// checkpoint copies the WAL into the database file and truncates it, so pages
// that held wiped data exist only in their secure_delete-zeroed form.
func (s *Store) checkpoint(ctx context.Context) error {
	var busy, logFrames, done int64
	err := s.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &done)
	if err != nil {
		return fmt.Errorf("wal checkpoint: %w", err)
	}
	if busy != 0 {
		return errors.New("wal checkpoint blocked by a reader; wiped bytes may remain in the WAL until the next checkpoint")
	}
	return nil
}

// SetRunHandle records the active run's handle and bumps Version, so an Apply
// made from a copy read before the handle existed loses its compare-and-set
// instead of silently erasing the handle (which would make the run uncancellable
// from another process).
func (s *Store) SetRunHandle(ctx context.Context, sessionID, handle string) error {
	err := s.writeSession(ctx, sessionID, func(tx *sql.Tx) error {
		return mustAffect(tx.ExecContext(ctx, `UPDATE sessions SET run_handle = ?, version = version + 1 WHERE id = ?`, handle, sessionID))
	})
	return wrap("set run handle of "+sessionID, err)
}

// upsertMessages inserts new messages at the end of the session's send order
// and updates the run fields of existing ones. Role, prompt, creation time and
// order never change.
func upsertMessages(ctx context.Context, tx *sql.Tx, sessionID string, msgs []core.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO messages (id, session_id, ordinal, cursor_run_id,
			role, prompt, status, result_text, duration_ms, pr_url, error, started_at, completed_at, created_at, usage)
		VALUES (?1, ?2, (SELECT COALESCE(MAX(ordinal), 0) + 1 FROM messages WHERE session_id = ?2),
			?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
		ON CONFLICT (id) DO UPDATE SET cursor_run_id = excluded.cursor_run_id, status = excluded.status,
			result_text = excluded.result_text, duration_ms = excluded.duration_ms,
			pr_url = excluded.pr_url, error = excluded.error, started_at = excluded.started_at,
			completed_at = excluded.completed_at, usage = excluded.usage
		WHERE messages.session_id = excluded.session_id`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, m := range msgs {
		if m.SessionID != "" && m.SessionID != sessionID {
			return fmt.Errorf("message %s belongs to session %s, not %s", m.ID, m.SessionID, sessionID)
		}
		res, err := stmt.ExecContext(ctx, m.ID, sessionID, strArg(m.CursorRunID), m.Role, m.Prompt,
			string(m.Status), strArg(m.ResultText), intArg(m.DurationMS), strArg(m.PRURL), strArg(m.Error),
			msPtr(m.StartedAt), msPtr(m.CompletedAt), ms(m.CreatedAt), usageArg(m.Usage))
		if err != nil {
			return fmt.Errorf("message %s: %w", m.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("message %s belongs to another session than %s", m.ID, sessionID)
		}
	}
	return nil
}

func scanSession(r scanner) (core.Session, error) {
	var (
		s                                          core.Session
		status                                     string
		cursorAgent, latestRun, prURL, prBranch    sql.NullString
		errText, webhook, params, usage            sql.NullString
		lastEventAt, startedAt, completedAt        sql.NullInt64
		archivingAt                                sql.NullInt64
		created                                    int64
		archived, autoPR, curBranch, skipReviewers bool
	)
	err := r.Scan(&s.ID, &s.OrgID, &s.CodeAgentID, &cursorAgent, &s.RepoURL, &s.StartingRef, &status,
		&latestRun, &prURL, &prBranch, &errText, &archived, &webhook, &s.ModelID, &params,
		&autoPR, &curBranch, &skipReviewers, &s.Runtime, &s.Preamble,
		&s.CursorKeyCiphertext, &s.RunHandle, &s.Version, &s.LastEventSeq, &lastEventAt,
		&s.CreatedBy, &created, &startedAt, &completedAt, &s.StreamPosition, &usage, &archivingAt)
	if err != nil {
		return core.Session{}, err
	}
	s.ArchivingAt = timePtr(archivingAt)
	if s.Usage, err = usageFrom(usage); err != nil {
		return core.Session{}, fmt.Errorf("session %s: usage: %w", s.ID, err)
	}
	s.ModelParams, err = paramsFrom(params)
	if err != nil {
		return core.Session{}, fmt.Errorf("session %s: model_params: %w", s.ID, err)
	}
	s.Status = core.Status(status)
	s.CursorAgentID, s.LatestRunID = strPtr(cursorAgent), strPtr(latestRun)
	s.PRURL, s.PRBranch, s.Error, s.WebhookURL = strPtr(prURL), strPtr(prBranch), strPtr(errText), strPtr(webhook)
	s.Archived, s.AutoCreatePR, s.WorkOnCurrentBranch, s.SkipReviewerRequest = archived, autoPR, curBranch, skipReviewers
	s.LastEventAt, s.StartedAt, s.CompletedAt = timePtr(lastEventAt), timePtr(startedAt), timePtr(completedAt)
	s.CreatedAt = fromMS(created)
	return s, nil
}

func scanMessage(r scanner) (core.Message, error) {
	var (
		m                                core.Message
		status                           string
		runID, result, prURL, errText    sql.NullString
		usage                            sql.NullString
		duration, startedAt, completedAt sql.NullInt64
		created                          int64
	)
	err := r.Scan(&m.ID, &m.SessionID, &runID, &m.Role, &m.Prompt, &status, &result,
		&duration, &prURL, &errText, &startedAt, &completedAt, &created, &usage)
	if err != nil {
		return core.Message{}, err
	}
	if m.Usage, err = usageFrom(usage); err != nil {
		return core.Message{}, fmt.Errorf("message %s: usage: %w", m.ID, err)
	}
	m.Status = core.MessageStatus(status)
	m.CursorRunID, m.ResultText, m.PRURL, m.Error = strPtr(runID), strPtr(result), strPtr(prURL), strPtr(errText)
	m.DurationMS = intPtr(duration)
	m.StartedAt, m.CompletedAt = timePtr(startedAt), timePtr(completedAt)
	m.CreatedAt = fromMS(created)
	return m, nil
}

// usageArg stores a usage as JSON, NULL when nothing is known.
func usageArg(u *core.Usage) any {
	if u.Empty() {
		return nil
	}
	b, err := json.Marshal(u)
	if err != nil {
		return nil
	}
	return string(b)
}

func usageFrom(v sql.NullString) (*core.Usage, error) {
	if !v.Valid || v.String == "" {
		return nil, nil
	}
	var u core.Usage
	if err := json.Unmarshal([]byte(v.String), &u); err != nil {
		return nil, err
	}
	return &u, nil
}
