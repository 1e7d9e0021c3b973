package store

import (
	"context"
	"database/sql"
	"errors"

	"github.com/flapjack-dev/flapjack/core"
)

// Prepared is the Store with the reads a REST server repeats on every request
// (the token's actor, the session, its messages) as prepared statements:
// SQLite then parses each once per connection instead of once per call,
// which is most of what such a read costs. Answers are the Store's, read
// fresh every time.
type Prepared struct {
	*Store
	actor, session, messages *sql.Stmt
}

var _ core.Store = (*Prepared)(nil)

// NewPrepared prepares the statements on s. Close it before s.
func NewPrepared(s *Store) (*Prepared, error) {
	ctx := context.Background()
	p := &Prepared{Store: s}
	for _, st := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&p.actor, actorForTokenSQL},
		{&p.session, `SELECT ` + sessionColumns + ` FROM sessions WHERE id = ?`},
		{&p.messages, `SELECT ` + messageColumns + ` FROM messages WHERE session_id = ? ORDER BY ordinal`},
	} {
		stmt, err := s.db.PrepareContext(ctx, st.sql)
		if err != nil {
			p.Close()
			return nil, wrap("prepare", err)
		}
		*st.dst = stmt
	}
	return p, nil
}

// Close releases the statements (not the Store).
func (p *Prepared) Close() error {
	var errs []error
	for _, st := range []*sql.Stmt{p.actor, p.session, p.messages} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}

// GetSession is Store.GetSession on a prepared statement.
func (p *Prepared) GetSession(ctx context.Context, id string) (core.Session, error) {
	sess, err := scanSession(p.session.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = core.ErrNotFound
	}
	return sess, wrap("get session "+id, err)
}

// ListMessages is Store.ListMessages on a prepared statement.
func (p *Prepared) ListMessages(ctx context.Context, sessionID string) ([]core.Message, error) {
	rows, err := p.messages.QueryContext(ctx, sessionID)
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

// ActorForToken is Store.ActorForToken on a prepared statement.
func (p *Prepared) ActorForToken(ctx context.Context, hash []byte) (core.Actor, string, error) {
	return actorForToken(p.actor.QueryRowContext(ctx, hash), hash)
}
