// Package store implements core.Store on an embedded SQLite file
// (modernc.org/sqlite, pure Go). Several processes may open the same file: the
// MCP server, the REST server, the CLI and the runner all share one data
// directory, so every write is an IMMEDIATE transaction and every connection
// waits on the file lock instead of failing.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flapjack-dev/flapjack/core"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

var _ core.Store = (*Store)(nil)

//go:embed migrations/*.sql
var migrationFS embed.FS

// dsnParams configures every pooled connection. They live in the DSN because a
// one-off Exec would configure only whichever connection happened to run it.
// No mmap_size: reads through a memory map were faster, but every mapped
// page a reader touches counts in the process's resident memory, and serve
// promises a bound on that (TestServeMemoryStaysBounded: 121 MiB without,
// 229 MiB with a 256 MiB map).
const dsnParams = "_txlock=immediate" +
	"&" + busyTimeout +
	"&_pragma=journal_mode(WAL)" +
	"&_pragma=synchronous(FULL)" +
	"&_pragma=foreign_keys(1)" +
	"&_pragma=secure_delete(1)"

// busyTimeout is how long a connection waits for another process's lock.
const busyTimeout = "_pragma=busy_timeout(10000)"

// Store is a core.Store on one SQLite database file. It is safe for concurrent
// use, and other processes may use the same file at the same time.
type Store struct {
	db *sql.DB

	// writeSem serializes this process's write transactions, so goroutines queue
	// here instead of spinning in SQLite's busy handler. Other processes are
	// still kept out by the file lock.
	writeSem chan struct{}

	// dvMu guards dvConn. PRAGMA data_version is per connection, so the value
	// is only meaningful when every read goes through the same one.
	dvMu   sync.Mutex
	dvConn *sql.Conn

	// commits tells waiters and the ReadCache what each commit changed.
	commits *commits
	// stmts are the hot paths' prepared statements.
	stmts *stmts
	// scope is the running write transaction's (writeSem held).
	scope writeScope

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the database at path and brings its schema up
// to date.
func Open(path string) (*Store, error) {
	if err := checkPathLength(path); err != nil {
		return nil, err
	}
	if err := createPrivate(path); err != nil {
		return nil, err
	}
	if err := retryBusy(func() error { return sizeNewPages(path) }); err != nil {
		return nil, err
	}
	dsn, err := dsnFor(path, dsnParams)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// Opening a connection runs five pragmas; keep a few warm for readers.
	db.SetMaxIdleConns(8)
	s := &Store{db: db, writeSem: make(chan struct{}, 1)}
	ctx := context.Background()
	if err := retryBusy(func() error { return s.migrate(ctx) }); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: migrate %s: %w", path, err)
	}
	s.dvConn, err = db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// The -shm file exists once the database is open in WAL mode.
	if s.commits, err = newCommits(path + "-shm"); err != nil {
		s.dvConn.Close()
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s.stmts = newStmts(db)
	return s, nil
}

// maxSQLitePath is the longest file path SQLite's unix VFS opens
// (MAX_PATHNAME 512, with its terminating NUL); the journal's is the longest.
const maxSQLitePath = 511

// checkPathLength refuses a database path whose journal's path SQLite could
// not open, with a message naming the limit: SQLite itself only says
// "unable to open database file (14)".
func checkPathLength(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if n := len(abs) + len("-journal"); n > maxSQLitePath {
		dirMax := maxSQLitePath - len("-journal") - (len(abs) - len(filepath.Dir(abs)))
		return fmt.Errorf("store: the path %s is too long for SQLite: its journal's path would be %d bytes, over SQLite's limit of %d; use a data directory whose path is at most %d bytes (this one has %d)",
			abs, n, maxSQLitePath, dirMax, len(filepath.Dir(abs)))
	}
	return nil
}

// createPrivate creates the database file readable by its owner only, before
// SQLite opens it: SQLite gives the -wal and -shm files the database file's
// mode, so all three stay private whatever the umask. An existing file is
// made private too. (Windows has no such modes; its ACLs come from the
// directory.)
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("store: create %s: %w", path, err)
	}
	f.Close()
	if runtime.GOOS == "windows" {
		return nil
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("store: make %s private: %w", p, err)
		}
	}
	return nil
}

// newPageSize is the page size of a database flapjack creates. A block of
// events (eventblocks.go: at most 128 events, about 10 KiB of agent lines)
// then lies in one page, so a page of 200 events reads two or three pages
// instead of nine through overflow chains, and SQLite hands each block over
// without assembling it. A file made before keeps its 4 KiB pages: WAL mode
// fixes the size, and changing it would rewrite the whole file.
const newPageSize = 16 << 10

// sizeNewPages gives an empty database file newPageSize pages. It runs before
// the pooled connections open, because the first of them switches the file
// to WAL, which fixes its page size; on a file with content (or one another
// process has just begun) the pragma changes nothing. While another process
// holds a lock on the empty file, the switch fails busy at once: Open calls
// this again (retryBusy), and finds the file sized or still empty.
func sizeNewPages(path string) error {
	if fi, err := os.Stat(path); err != nil || fi.Size() > 0 {
		return nil // Open reports a missing file when it opens it
	}
	dsn, err := dsnFor(path, busyTimeout)
	if err != nil {
		return err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return fmt.Errorf("store: open %s: %w", path, err)
	}
	defer db.Close()
	// One connection, so both pragmas apply to the same one.
	db.SetMaxOpenConns(1)
	for _, pragma := range []string{fmt.Sprintf("PRAGMA page_size = %d", newPageSize), "PRAGMA journal_mode = WAL"} {
		if _, err := db.Exec(pragma); err != nil {
			return fmt.Errorf("store: create %s: %s: %w", path, pragma, err)
		}
	}
	return db.Close()
}

// Close releases the database. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.dvMu.Lock()
		err := s.dvConn.Close()
		s.dvMu.Unlock()
		s.closeErr = errors.Join(err, s.stmts.close(), s.commits.close(), s.db.Close())
	})
	return s.closeErr
}

// dsnFor builds a SQLite URI for path. The path is made absolute and
// percent-encoded, because SQLite decodes %HH in URI paths and a raw '?' or
// '#' would otherwise end the path. params follow the '?'.
func dsnFor(p, params string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	abs = filepath.ToSlash(abs)
	if !strings.HasPrefix(abs, "/") {
		abs = "/" + abs // Windows drive letter: file:/C:/...
	}
	var b strings.Builder
	b.WriteString("file:")
	for i := 0; i < len(abs); i++ {
		c := abs[i]
		if c == '/' || c == '-' || c == '.' || c == '_' || c == '~' || c == ':' ||
			'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	b.WriteString("?")
	b.WriteString(params)
	return b.String(), nil
}

// migration is one embedded schema step; version is its file number.
type migration struct {
	version int
	name    string
	sql     string
	// then, if set, runs after sql in the same transaction: a step SQL
	// cannot express.
	then func(context.Context, *sql.Tx) error
}

// migrationStep is the Go step of migration version, if it has one.
func migrationStep(version int) func(context.Context, *sql.Tx) error {
	switch version {
	case 10:
		return packEvents
	}
	return nil
}

// migrations reads the embedded files, which must be numbered 1, 2, 3... so a
// missing or duplicated file is caught before anything is applied.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, n := range names {
		base := path.Base(n)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive number and '_'", base)
		}
		body, err := migrationFS.ReadFile(n)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, sql: string(body), then: migrationStep(v)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: expected number %d", m.name, i+1)
		}
	}
	return ms, nil
}

// retryBusy runs fn again while it fails with SQLITE_BUSY, until
// retryBusyFor has passed. When several processes open a brand-new file at
// once, switching it to WAL can return SQLITE_BUSY at once (SQLite skips the
// busy handler where waiting could deadlock), so the first open retries
// instead of failing: both the page size's switch (sizeNewPages) and the
// pooled connections' (migrate is the first to open one). The bound is on
// time, not attempts: a busy answer that already waited out busy_timeout
// (another process holding the file locked) is returned, not retried.
func retryBusy(fn func() error) error {
	deadline := time.Now().Add(retryBusyFor)
	for {
		err := fn()
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// retryBusyFor is how long retryBusy goes on retrying.
const retryBusyFor = 2 * time.Second

// isBusy reports whether err is SQLITE_BUSY (or one of its extended codes).
func isBusy(err error) bool {
	var coded interface{ Code() int }
	return errors.As(err, &coded) && coded.Code()&0xff == 5
}

// migrate applies the pending migrations, each in its own IMMEDIATE transaction
// that re-reads user_version first: of two processes opening a fresh file at
// once, the second waits for the lock and then finds nothing left to do.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	var current int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
		return err
	}
	if current > len(ms) {
		return fmt.Errorf("database schema version %d is newer than this binary knows (%d); upgrade flapjack", current, len(ms))
	}
	for _, m := range ms[current:] {
		err := s.write(ctx, func(tx *sql.Tx) error {
			var v int
			if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
				return err
			}
			if v >= m.version {
				return nil // another process got here first
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			if m.then != nil {
				if err := m.then(ctx, tx); err != nil {
					return fmt.Errorf("%s: %w", m.name, err)
				}
			}
			// PRAGMA takes no bound parameters; the version is our own integer.
			_, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(m.version))
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// write runs fn in one IMMEDIATE transaction (the DSN's _txlock), committing
// when fn returns nil and rolling back otherwise. fn must not change a
// session, its messages or its events: those go through writeSession.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.writeScoped(ctx, writeScope{}, fn)
}

// writeSession is write for a transaction that changes one session (its row,
// messages or events): its waiters are woken once it commits.
func (s *Store) writeSession(ctx context.Context, sessionID string, fn func(tx *sql.Tx) error) error {
	return s.writeScoped(ctx, writeScope{session: sessionID}, fn)
}

func (s *Store) writeScoped(ctx context.Context, scope writeScope, fn func(tx *sql.Tx) error) error {
	select {
	case s.writeSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.writeSem }()
	s.scope = scope
	defer func() { s.scope = writeScope{} }()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	// Holding the write lock, nobody else can commit until this does: the
	// header read now and the one after the commit bracket this commit alone
	// when its transaction counter moved by one.
	// (Migrations run before commits exists, while no one can wait.)
	var before walHeader
	okBefore := false
	if s.commits != nil {
		before, okBefore = s.commits.header()
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if s.commits == nil {
		return tx.Commit()
	}
	s.commits.committing()
	if err := tx.Commit(); err != nil {
		s.commits.notCommitted()
		return err
	}
	after, okAfter := s.commits.header()
	s.commits.committed(before, after, okBefore && okAfter, scope)
	return nil
}

// Meta keys of the owner's ids.
const (
	metaOwnerOrg  = "owner_org_id"
	metaOwnerUser = "owner_user_id"
)

// EnsureOwner returns the owner org and user recorded in meta, creating them in
// one transaction on first use, so concurrent first calls agree on one owner.
func (s *Store) EnsureOwner(ctx context.Context) (core.Owner, error) {
	if o, ok, err := readOwner(ctx, s.db); err != nil || ok {
		return o, wrap("ensure owner", err)
	}
	var o core.Owner
	err := s.write(ctx, func(tx *sql.Tx) error {
		var ok bool
		var err error
		if o, ok, err = readOwner(ctx, tx); err != nil || ok {
			return err
		}
		o = core.Owner{OrgID: core.NewID(core.PrefixOrg), UserID: core.NewID(core.PrefixUser)}
		now := time.Now().UnixMilli()
		stmts := []struct {
			q    string
			args []any
		}{
			{`INSERT INTO orgs (id, name, created_at) VALUES (?, 'default', ?)`, []any{o.OrgID, now}},
			{`INSERT INTO users (id, name, created_at) VALUES (?, 'owner', ?)`, []any{o.UserID, now}},
			{`INSERT INTO org_members (org_id, user_id) VALUES (?, ?)`, []any{o.OrgID, o.UserID}},
			{`INSERT INTO meta (key, value) VALUES (?, ?), (?, ?)`, []any{metaOwnerOrg, o.OrgID, metaOwnerUser, o.UserID}},
		}
		for _, st := range stmts {
			if _, err := tx.ExecContext(ctx, st.q, st.args...); err != nil {
				return err
			}
		}
		return nil
	})
	return o, wrap("ensure owner", err)
}

// queryer is what *sql.DB and *sql.Tx share for reads.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func readOwner(ctx context.Context, q queryer) (core.Owner, bool, error) {
	rows, err := q.QueryContext(ctx, `SELECT key, value FROM meta WHERE key IN (?, ?)`, metaOwnerOrg, metaOwnerUser)
	if err != nil {
		return core.Owner{}, false, err
	}
	defer rows.Close()
	var o core.Owner
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return core.Owner{}, false, err
		}
		switch k {
		case metaOwnerOrg:
			o.OrgID = v
		case metaOwnerUser:
			o.UserID = v
		}
	}
	if err := rows.Err(); err != nil {
		return core.Owner{}, false, err
	}
	return o, o.OrgID != "" && o.UserID != "", nil
}

// OrgExists reports whether an org id names an org.
func (s *Store) OrgExists(ctx context.Context, orgID string) (bool, error) {
	var ok bool
	err := s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM orgs WHERE id = ?)`, orgID).Scan(&ok)
	return ok, wrap("org exists", err)
}

// HasCiphertext reports whether any row holds a sealed secret: a session's
// Cursor key or a webhook signing secret.
func (s *Store) HasCiphertext(ctx context.Context) (bool, error) {
	var ok bool
	err := s.db.QueryRowContext(ctx,
		`SELECT EXISTS (SELECT 1 FROM sessions WHERE cursor_key_ciphertext IS NOT NULL)
			OR EXISTS (SELECT 1 FROM webhook_secrets)`).Scan(&ok)
	return ok, wrap("has ciphertext", err)
}

// MasterKeyCheck records value as the master key's check value unless one is
// recorded already, and returns the one recorded (the first process's).
func (s *Store) MasterKeyCheck(ctx context.Context, value []byte) ([]byte, error) {
	if _, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO master_key_check (id, value) VALUES (1, ?)`, value); err != nil {
		return nil, wrap("master key check", err)
	}
	var stored []byte
	err := s.db.QueryRowContext(ctx, `SELECT value FROM master_key_check WHERE id = 1`).Scan(&stored)
	return stored, wrap("master key check", err)
}

// DataVersion returns PRAGMA data_version of the Store's dedicated connection.
// It changes after any other connection commits, this process's pool included.
func (s *Store) DataVersion(ctx context.Context) (int64, error) {
	s.dvMu.Lock()
	defer s.dvMu.Unlock()
	var v int64
	err := s.dvConn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v)
	return v, wrap("data version", err)
}

// wrap prefixes err with the operation, keeping it matchable with errors.Is.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("store: %s: %w", op, err)
}
