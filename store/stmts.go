package store

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// stmts are the statements the hot paths run: a session's row, messages
// and events read on every poll, and the appends of every event batch.
// Prepared once on the pool, database/sql prepares each once per
// connection (Tx.StmtContext reuses it inside transactions) instead of
// SQLite parsing the SQL again on every call. Each is prepared on first
// use, so opening the store (an MCP server's start) pays for none of them.
type stmts struct {
	db *sql.DB

	mu       sync.Mutex
	prepared map[string]*sql.Stmt
	closed   bool
}

func newStmts(db *sql.DB) *stmts { return &stmts{db: db, prepared: map[string]*sql.Stmt{}} }

// get returns query prepared; a failure is returned and tried again next
// time.
func (st *stmts) get(ctx context.Context, query string) (*sql.Stmt, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if s := st.prepared[query]; s != nil {
		return s, nil
	}
	if st.closed {
		return nil, errors.New("store is closed")
	}
	s, err := st.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	st.prepared[query] = s
	return s, nil
}

func (st *stmts) close() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
	var errs []error
	for _, s := range st.prepared {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// The hot statements (see stmts).
const (
	getSessionSQL   = `SELECT ` + sessionColumns + ` FROM sessions WHERE id = ?`
	listMessagesSQL = `SELECT ` + messageColumns + ` FROM messages WHERE session_id = ? ORDER BY ordinal`
)
