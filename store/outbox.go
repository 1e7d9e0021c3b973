package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// The status webhook outbox. Rows are inserted in the transaction of the
// status change they report (CreateSession, Apply), so a status change and
// its delivery commit or vanish together; the runner's delivery loop
// (core/webhook) reads and updates them through the methods below.

const deliveryColumns = `id, session_id, seq, url, payload, state, attempts, next_attempt_at, created_at`

// insertDeliveries queues one delivery per status event in events when sess
// (the session as this transaction leaves it) has a webhook URL whose
// receiver has not answered 410 Gone. Other event types never queue one.
func insertDeliveries(ctx context.Context, tx *sql.Tx, sess core.Session, events []core.Event) error {
	if sess.WebhookURL == nil {
		return nil
	}
	url := *sess.WebhookURL
	for _, ev := range events {
		if ev.Type != core.EventStatus {
			continue
		}
		payload, err := core.StatusWebhookPayload(sess, ev)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO webhook_deliveries
			(id, session_id, seq, url, payload, state, next_attempt_at, created_at)
			SELECT ?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6
			WHERE NOT EXISTS (SELECT 1 FROM webhook_stops WHERE session_id = ?2 AND url = ?4)`,
			core.NewID(core.PrefixWebhook), sess.ID, ev.Seq, url, string(payload), ms(ev.CreatedAt))
		if err != nil {
			return fmt.Errorf("webhook delivery for seq %d: %w", ev.Seq, err)
		}
	}
	return nil
}

// cancelStaleDeliveries cancels the session's pending deliveries to any URL
// but url (nil: to every URL), and forgets 410 stops of other URLs, so that
// setting a URL again starts afresh. The caller changed the URL, so the log
// gets no event for it: webhook events are about attempts.
func cancelStaleDeliveries(ctx context.Context, tx *sql.Tx, sessionID string, url *string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET state = 'cancelled'
		WHERE session_id = ? AND state = 'pending' AND url IS NOT ?`, sessionID, strArg(url)); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM webhook_stops WHERE session_id = ? AND url IS NOT ?`, sessionID, strArg(url))
	return err
}

// HasPendingDeliveries reports whether any delivery waits to be sent.
func (s *Store) HasPendingDeliveries(ctx context.Context) (bool, error) {
	var ok bool
	err := s.db.QueryRowContext(ctx,
		`SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE state = 'pending')`).Scan(&ok)
	return ok, wrap("has pending deliveries", err)
}

// NextDeliveryAt returns when the earliest pending delivery is due; ok is
// false when none is pending.
func (s *Store) NextDeliveryAt(ctx context.Context) (at time.Time, ok bool, err error) {
	var v sql.NullInt64
	err = s.db.QueryRowContext(ctx,
		`SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE state = 'pending'`).Scan(&v)
	if err != nil || !v.Valid {
		return time.Time{}, false, wrap("next delivery", err)
	}
	return fromMS(v.Int64), true, nil
}

// dueDeliveriesSQL is the delivery loop's read; TestOutboxQueryPlans holds
// it to its partial index.
const dueDeliveriesSQL = `SELECT ` + deliveryColumns + ` FROM webhook_deliveries
	WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?`

// DueDeliveries returns up to limit pending deliveries due at now, the
// longest-waiting first.
func (s *Store) DueDeliveries(ctx context.Context, now time.Time, limit int) ([]core.Delivery, error) {
	rows, err := s.db.QueryContext(ctx, dueDeliveriesSQL, ms(now), limit)
	if err != nil {
		return nil, wrap("due deliveries", err)
	}
	return scanDeliveries(rows)
}

// ListDeliveries returns every delivery of a session, in seq order.
func (s *Store) ListDeliveries(ctx context.Context, sessionID string) ([]core.Delivery, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+deliveryColumns+` FROM webhook_deliveries
		WHERE session_id = ? ORDER BY seq`, sessionID)
	if err != nil {
		return nil, wrap("list deliveries", err)
	}
	return scanDeliveries(rows)
}

func scanDeliveries(rows *sql.Rows) ([]core.Delivery, error) {
	defer rows.Close()
	out := []core.Delivery{}
	for rows.Next() {
		var (
			d              core.Delivery
			payload, state string
			next, created  int64
		)
		if err := rows.Scan(&d.ID, &d.SessionID, &d.Seq, &d.URL, &payload, &state, &d.Attempts, &next, &created); err != nil {
			return nil, wrap("scan delivery", err)
		}
		d.Payload = json.RawMessage(payload)
		d.State = core.DeliveryState(state)
		d.NextAttemptAt, d.CreatedAt = fromMS(next), fromMS(created)
		out = append(out, d)
	}
	return out, wrap("scan deliveries", rows.Err())
}

// RecordDeliveryAttempt records one attempt and appends its webhook events,
// in one transaction. A delivery that stopped being pending meanwhile (its
// URL was changed) keeps its state; the attempt is logged all the same.
func (s *Store) RecordDeliveryAttempt(ctx context.Context, a core.DeliveryAttempt) error {
	switch a.State {
	case core.DeliveryPending, core.DeliveryDelivered, core.DeliveryFailed, core.DeliveryStopped:
	default:
		return fmt.Errorf("store: record delivery %s: state %q is not an attempt's outcome", a.ID, a.State)
	}
	var status any
	if a.HTTPStatus != 0 {
		status = a.HTTPStatus
	}
	err := s.writeSession(ctx, a.SessionID, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1,
			next_attempt_at = ?, last_attempt_at = ?, last_status = ?, last_error = ?
			WHERE id = ? AND state = 'pending'`,
			string(a.State), ms(a.NextAttemptAt), ms(a.At), status, emptyNull(a.Error), a.ID)
		if err != nil {
			return err
		}
		if a.State == core.DeliveryStopped {
			if _, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET state = 'stopped'
				WHERE session_id = ? AND url = ? AND state = 'pending'`, a.SessionID, a.URL); err != nil {
				return err
			}
			// Only while the URL is still the session's: a URL changed since
			// must not be blocked if it is set again later.
			if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_stops (session_id, url, created_at)
				SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM sessions WHERE id = ?1 AND webhook_url = ?2)
				ON CONFLICT DO NOTHING`, a.SessionID, a.URL, ms(a.At)); err != nil {
				return err
			}
		}
		_, err = s.appendEvents(ctx, tx, a.SessionID, a.Events)
		return err
	})
	return wrap("record delivery "+a.ID, err)
}

// WebhookSecrets returns the stored signing secrets, newest first.
func (s *Store) WebhookSecrets(ctx context.Context) ([]core.WebhookSecret, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, ciphertext, created_at, retired_at
		FROM webhook_secrets ORDER BY created_at DESC, rowid DESC`)
	if err != nil {
		return nil, wrap("webhook secrets", err)
	}
	defer rows.Close()
	var out []core.WebhookSecret
	for rows.Next() {
		var (
			w       core.WebhookSecret
			created int64
			retired sql.NullInt64
		)
		if err := rows.Scan(&w.ID, &w.Sealed, &created, &retired); err != nil {
			return nil, wrap("webhook secrets", err)
		}
		w.CreatedAt, w.RetiredAt = fromMS(created), timePtr(retired)
		out = append(out, w)
	}
	return out, wrap("webhook secrets", rows.Err())
}

// AddFirstWebhookSecret stores w unless a current secret exists; of two
// processes creating the first secret at once, exactly one wins and the
// other reads the winner's.
func (s *Store) AddFirstWebhookSecret(ctx context.Context, w core.WebhookSecret) (added bool, err error) {
	err = s.write(ctx, func(tx *sql.Tx) error {
		var exists bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM webhook_secrets WHERE retired_at IS NULL)`).Scan(&exists); err != nil || exists {
			return err
		}
		added = true
		return insertSecret(ctx, tx, w)
	})
	return added, wrap("add webhook secret", err)
}

// RotateWebhookSecret retires the current secret at w.CreatedAt, deletes
// secrets retired before forgetBefore, and stores w as the current one.
func (s *Store) RotateWebhookSecret(ctx context.Context, w core.WebhookSecret, forgetBefore time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE webhook_secrets SET retired_at = ? WHERE retired_at IS NULL`, ms(w.CreatedAt)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM webhook_secrets WHERE retired_at < ?`, ms(forgetBefore)); err != nil {
			return err
		}
		return insertSecret(ctx, tx, w)
	})
	return wrap("rotate webhook secret", err)
}

func insertSecret(ctx context.Context, tx *sql.Tx, w core.WebhookSecret) error {
	if len(w.Sealed) == 0 {
		return fmt.Errorf("webhook secret %s is empty", w.ID)
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO webhook_secrets (id, ciphertext, created_at, retired_at) VALUES (?, ?, ?, NULL)`,
		w.ID, w.Sealed, ms(w.CreatedAt))
	return err
}
