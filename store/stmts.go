package store

import (
	"context"
	"database/sql"
	"errors"
)

// stmts are the statements the hot paths run: a session's row, messages
// and events read on every poll, and the appends of every event batch.
// Prepared once on the pool, database/sql prepares each once per
// connection (Tx.StmtContext reuses it inside transactions) instead of
// SQLite parsing the SQL again on every call.
type stmts struct {
	getSession, listMessages, listEvents, listMessageEvents *sql.Stmt
	insertEvent, advance, markMessage                       *sql.Stmt
}

func prepareStmts(ctx context.Context, db *sql.DB) (*stmts, error) {
	st := &stmts{}
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&st.getSession, `SELECT ` + sessionColumns + ` FROM sessions WHERE id = ?`},
		{&st.listMessages, `SELECT ` + messageColumns + ` FROM messages WHERE session_id = ? ORDER BY ordinal`},
		{&st.listEvents, listEventsSQL},
		{&st.listMessageEvents, listMessageEventsSQL},
		{&st.insertEvent, insertEventSQL},
		{&st.advance, advanceSessionSQL},
		{&st.markMessage, markMessageSQL},
	} {
		s, err := db.PrepareContext(ctx, p.sql)
		if err != nil {
			st.close()
			return nil, err
		}
		*p.dst = s
	}
	return st, nil
}

func (st *stmts) close() error {
	var errs []error
	for _, s := range []*sql.Stmt{st.getSession, st.listMessages, st.listEvents, st.listMessageEvents, st.insertEvent, st.advance, st.markMessage} {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	return errors.Join(errs...)
}
