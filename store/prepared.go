package store

import (
	"context"
	"database/sql"
	"errors"

	"github.com/flapjack-dev/flapjack/core"
)

// Prepared is the Store with the token lookup a REST server repeats on every
// request as a prepared statement (the Store prepares its own hot reads):
// SQLite then parses it once per connection instead of once per call,
// which is most of what such a read costs. Answers are the Store's, read
// fresh every time.
type Prepared struct {
	*Store
	actor *sql.Stmt
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
	for _, st := range []*sql.Stmt{p.actor} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}

// ActorForToken is Store.ActorForToken on a prepared statement.
func (p *Prepared) ActorForToken(ctx context.Context, hash []byte) (core.Actor, string, error) {
	return actorForToken(p.actor.QueryRowContext(ctx, hash), hash)
}
