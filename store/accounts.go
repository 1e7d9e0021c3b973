package store

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// Accounts: orgs, users, memberships and API tokens of the REST server. The
// token format is not the store's business: it keeps what it is given (a
// SHA-256 and a display prefix) and finds tokens by that hash.

// PrefixToken starts every token id. The id names a token in lists and on
// revoke; it is not the secret.
const PrefixToken = "tok-"

// ErrExists is returned when a name is already taken.
var ErrExists = errors.New("already exists")

// Org is an organisation: the unit that owns agents and sessions.
type Org struct {
	ID        string
	Name      string
	CreatedAt time.Time
	// Members is the number of users in the org (filled by ListOrgs).
	Members int
}

// User is a person or script that holds tokens and belongs to orgs.
type User struct {
	ID        string
	Name      string
	CreatedAt time.Time
	// OrgIDs are the orgs the user belongs to, sorted (filled by ListUsers).
	OrgIDs []string
}

// Token describes an API token; the token itself is never stored.
type Token struct {
	ID         string
	UserID     string
	UserName   string
	Name       string
	Prefix     string
	CreatedAt  time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
}

// NewToken is what CreateToken stores for a freshly minted token.
type NewToken struct {
	UserID string
	Name   string
	// Prefix is the part of the token shown in lists.
	Prefix string
	// Hash is the SHA-256 of the whole token.
	Hash []byte
}

// CreateOrg creates an org; ErrExists if the name is taken.
func (s *Store) CreateOrg(ctx context.Context, name string) (Org, error) {
	o := Org{ID: core.NewID(core.PrefixOrg), Name: name, CreatedAt: core.SystemClock{}.Now()}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO orgs (id, name, created_at) VALUES (?, ?, ?)`, o.ID, o.Name, ms(o.CreatedAt))
		return uniqueErr(err)
	})
	return o, wrap("create org "+name, err)
}

// ListOrgs returns every org with its member count, oldest first.
func (s *Store) ListOrgs(ctx context.Context) ([]Org, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT o.id, o.name, o.created_at,
		(SELECT COUNT(*) FROM org_members m WHERE m.org_id = o.id)
		FROM orgs o ORDER BY o.created_at, o.id`)
	if err != nil {
		return nil, wrap("list orgs", err)
	}
	defer rows.Close()
	out := []Org{}
	for rows.Next() {
		var o Org
		var created int64
		if err := rows.Scan(&o.ID, &o.Name, &created, &o.Members); err != nil {
			return nil, wrap("list orgs", err)
		}
		o.CreatedAt = fromMS(created)
		out = append(out, o)
	}
	return out, wrap("list orgs", rows.Err())
}

// FindOrg returns the org with this id, else the one with this name, else
// core.ErrNotFound.
func (s *Store) FindOrg(ctx context.Context, idOrName string) (Org, error) {
	var o Org
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT id, name, created_at FROM orgs WHERE id = ?1
		UNION ALL SELECT id, name, created_at FROM orgs WHERE name = ?1 AND id <> ?1 LIMIT 1`, idOrName).
		Scan(&o.ID, &o.Name, &created)
	if errors.Is(err, sql.ErrNoRows) {
		err = core.ErrNotFound
	}
	o.CreatedAt = fromMS(created)
	return o, wrap("find org "+idOrName, err)
}

// CreateUser creates a user in no org; ErrExists if the name is taken.
func (s *Store) CreateUser(ctx context.Context, name string) (User, error) {
	u := User{ID: core.NewID(core.PrefixUser), Name: name, CreatedAt: core.SystemClock{}.Now(), OrgIDs: []string{}}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO users (id, name, created_at) VALUES (?, ?, ?)`, u.ID, u.Name, ms(u.CreatedAt))
		return uniqueErr(err)
	})
	return u, wrap("create user "+name, err)
}

// ListUsers returns every user with their orgs, oldest first.
func (s *Store) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT u.id, u.name, u.created_at,
		COALESCE((SELECT group_concat(org_id, ',') FROM
			(SELECT org_id FROM org_members m WHERE m.user_id = u.id ORDER BY org_id)), '')
		FROM users u ORDER BY u.created_at, u.id`)
	if err != nil {
		return nil, wrap("list users", err)
	}
	defer rows.Close()
	out := []User{}
	for rows.Next() {
		var u User
		var created int64
		var orgs string
		if err := rows.Scan(&u.ID, &u.Name, &created, &orgs); err != nil {
			return nil, wrap("list users", err)
		}
		u.CreatedAt, u.OrgIDs = fromMS(created), splitIDs(orgs)
		out = append(out, u)
	}
	return out, wrap("list users", rows.Err())
}

// FindUser returns the user with this id, else the one with this name, else
// core.ErrNotFound.
func (s *Store) FindUser(ctx context.Context, idOrName string) (User, error) {
	var u User
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT id, name, created_at FROM users WHERE id = ?1
		UNION ALL SELECT id, name, created_at FROM users WHERE name = ?1 AND id <> ?1 LIMIT 1`, idOrName).
		Scan(&u.ID, &u.Name, &created)
	if errors.Is(err, sql.ErrNoRows) {
		err = core.ErrNotFound
	}
	u.CreatedAt, u.OrgIDs = fromMS(created), []string{}
	return u, wrap("find user "+idOrName, err)
}

// AddMember makes a user a member of an org; adding twice is a no-op.
// core.ErrNotFound when either does not exist.
func (s *Store) AddMember(ctx context.Context, orgID, userID string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		var ok bool
		err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM orgs WHERE id = ?)
			AND EXISTS (SELECT 1 FROM users WHERE id = ?)`, orgID, userID).Scan(&ok)
		if err != nil {
			return err
		}
		if !ok {
			return core.ErrNotFound
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO org_members (org_id, user_id) VALUES (?, ?)
			ON CONFLICT DO NOTHING`, orgID, userID)
		return err
	})
	return wrap("add member", err)
}

// CreateToken stores a new token of an existing user (core.ErrNotFound otherwise).
func (s *Store) CreateToken(ctx context.Context, nt NewToken) (Token, error) {
	var t Token
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		t, err = insertToken(ctx, tx, nt)
		return err
	})
	return t, wrap("create token", err)
}

// CreateFirstToken stores nt only if no token exists at all, revoked ones
// included, and reports whether it did: of two servers starting at once on a
// fresh directory, only one mints the first token.
func (s *Store) CreateFirstToken(ctx context.Context, nt NewToken) (Token, bool, error) {
	var t Token
	created := false
	err := s.write(ctx, func(tx *sql.Tx) error {
		var exists bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM tokens)`).Scan(&exists); err != nil || exists {
			return err
		}
		var err error
		t, err = insertToken(ctx, tx, nt)
		created = err == nil
		return err
	})
	return t, created, wrap("create first token", err)
}

func insertToken(ctx context.Context, tx *sql.Tx, nt NewToken) (Token, error) {
	if len(nt.Hash) == 0 || nt.Prefix == "" {
		return Token{}, errors.New("a token needs a hash and a prefix")
	}
	t := Token{ID: core.NewID(PrefixToken), UserID: nt.UserID, Name: nt.Name, Prefix: nt.Prefix, CreatedAt: core.SystemClock{}.Now()}
	if err := tx.QueryRowContext(ctx, `SELECT name FROM users WHERE id = ?`, nt.UserID).Scan(&t.UserName); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Token{}, core.ErrNotFound
		}
		return Token{}, err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO tokens (id, user_id, name, prefix, hash, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`, t.ID, t.UserID, t.Name, t.Prefix, nt.Hash, ms(t.CreatedAt))
	return t, err
}

// ListTokens returns every token, revoked ones too, oldest first.
func (s *Store) ListTokens(ctx context.Context) ([]Token, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT t.id, t.user_id, u.name, t.name, t.prefix,
		t.created_at, t.last_used_at, t.revoked_at
		FROM tokens t JOIN users u ON u.id = t.user_id ORDER BY t.created_at, t.id`)
	if err != nil {
		return nil, wrap("list tokens", err)
	}
	defer rows.Close()
	out := []Token{}
	for rows.Next() {
		var t Token
		var created int64
		var used, revoked sql.NullInt64
		if err := rows.Scan(&t.ID, &t.UserID, &t.UserName, &t.Name, &t.Prefix, &created, &used, &revoked); err != nil {
			return nil, wrap("list tokens", err)
		}
		t.CreatedAt, t.LastUsedAt, t.RevokedAt = fromMS(created), timePtr(used), timePtr(revoked)
		out = append(out, t)
	}
	return out, wrap("list tokens", rows.Err())
}

// RevokeToken makes a token unusable for good; revoking twice is a no-op.
// core.ErrNotFound for an unknown id.
func (s *Store) RevokeToken(ctx context.Context, id string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`,
			ms(core.SystemClock{}.Now()), id)
		return mustAffect(res, err)
	})
	return wrap("revoke token "+id, err)
}

// actorForTokenSQL finds a live token by hash with its user's orgs, sorted,
// in one statement: authentication runs on every request.
const actorForTokenSQL = `SELECT t.id, t.user_id, t.hash,
	COALESCE((SELECT group_concat(org_id, ',') FROM
		(SELECT org_id FROM org_members m WHERE m.user_id = t.user_id ORDER BY org_id)), '')
	FROM tokens t WHERE t.hash = ? AND t.revoked_at IS NULL`

// ActorForToken returns the actor a live token acts as, and the token's id.
// The actor's OrgIDs come from SQL and are never nil (a nil list would mean
// every org to the Service); DefaultOrgID is set only for a single org.
// core.ErrNotFound for an unknown or revoked token.
func (s *Store) ActorForToken(ctx context.Context, hash []byte) (core.Actor, string, error) {
	return actorForToken(s.db.QueryRowContext(ctx, actorForTokenSQL, hash), hash)
}

// actorForToken scans the row of actorForTokenSQL.
func actorForToken(row *sql.Row, hash []byte) (core.Actor, string, error) {
	var id, user, orgs string
	var stored []byte
	err := row.Scan(&id, &user, &stored, &orgs)
	if errors.Is(err, sql.ErrNoRows) {
		return core.Actor{}, "", core.ErrNotFound
	}
	if err != nil {
		return core.Actor{}, "", wrap("actor for token", err)
	}
	// The index found the row by hash; compare once more in constant time so
	// no code path ever accepts a token by a variable-time comparison.
	if subtle.ConstantTimeCompare(stored, hash) != 1 {
		return core.Actor{}, "", core.ErrNotFound
	}
	a := core.Actor{UserID: user, OrgIDs: splitIDs(orgs)}
	if len(a.OrgIDs) == 1 {
		a.DefaultOrgID = a.OrgIDs[0]
	}
	return a, id, nil
}

// TouchToken records that a token was used at t, unless it was recorded less
// than a minute before: last-used is a hint, not worth a write per request.
func (s *Store) TouchToken(ctx context.Context, id string, t time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE tokens SET last_used_at = ?
			WHERE id = ? AND (last_used_at IS NULL OR last_used_at <= ?)`,
			ms(t), id, ms(t.Add(-time.Minute)))
		return err
	})
	return wrap("touch token", err)
}

// splitIDs splits a comma-joined id list; ids never contain commas.
func splitIDs(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}

// uniqueErr turns a UNIQUE constraint failure into ErrExists.
func uniqueErr(err error) error {
	var coded interface{ Code() int }
	// SQLITE_CONSTRAINT_UNIQUE = 2067, SQLITE_CONSTRAINT_PRIMARYKEY = 1555.
	if errors.As(err, &coded) && (coded.Code() == 2067 || coded.Code() == 1555) {
		return ErrExists
	}
	return err
}
