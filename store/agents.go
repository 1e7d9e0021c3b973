package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/flapjack-dev/flapjack/core"
)

const agentColumns = `id, org_id, name, description, model_id, model_params, default_repo_url,
	default_starting_ref, auto_create_pr, work_on_current_branch, skip_reviewer_request,
	preamble, runtime, created_by, created_at, updated_at`

// InsertAgent stores a new agent; its org must exist.
func (s *Store) InsertAgent(ctx context.Context, a core.CodeAgent) error {
	params, err := paramsArg(a.ModelParams)
	if err != nil {
		return wrap("insert agent", err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO code_agents (`+agentColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			a.ID, a.OrgID, a.Name, a.Description, a.ModelID, params, strArg(a.DefaultRepoURL),
			a.DefaultStartingRef, a.AutoCreatePR, a.WorkOnCurrentBranch, a.SkipReviewerRequest,
			a.Preamble, a.Runtime, a.CreatedBy, ms(a.CreatedAt), ms(a.UpdatedAt))
		return err
	})
	return wrap("insert agent", err)
}

// GetAgent returns one agent, or core.ErrNotFound.
func (s *Store) GetAgent(ctx context.Context, id string) (core.CodeAgent, error) {
	a, err := scanAgent(s.db.QueryRowContext(ctx, `SELECT `+agentColumns+` FROM code_agents WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = core.ErrNotFound
	}
	return a, wrap("get agent "+id, err)
}

// ListAgents returns agents newest first. A nil OrgIDs means every org; an
// empty non-nil slice means none, so a caller with no orgs sees nothing.
func (s *Store) ListAgents(ctx context.Context, f core.AgentFilter) ([]core.CodeAgent, error) {
	out := []core.CodeAgent{}
	if f.OrgIDs != nil && len(f.OrgIDs) == 0 {
		return out, nil
	}
	var where []string
	var args []any
	if f.OrgIDs != nil {
		where, args = inClause(where, args, "org_id", f.OrgIDs)
	}
	where, args = afterClause(where, args, f.After)
	order, args := limitClause(` ORDER BY created_at DESC, id DESC`, args, f.Limit)
	rows, err := s.db.QueryContext(ctx, `SELECT `+agentColumns+` FROM code_agents`+whereSQL(where)+order, args...)
	if err != nil {
		return nil, wrap("list agents", err)
	}
	defer rows.Close()
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, wrap("list agents", err)
		}
		out = append(out, a)
	}
	return out, wrap("list agents", rows.Err())
}

// UpdateAgent overwrites everything but id, org, creator and creation time.
func (s *Store) UpdateAgent(ctx context.Context, a core.CodeAgent) error {
	params, err := paramsArg(a.ModelParams)
	if err != nil {
		return wrap("update agent", err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE code_agents SET name = ?, description = ?, model_id = ?,
			model_params = ?, default_repo_url = ?, default_starting_ref = ?, auto_create_pr = ?,
			work_on_current_branch = ?, skip_reviewer_request = ?, preamble = ?, runtime = ?,
			updated_at = ?
			WHERE id = ?`,
			a.Name, a.Description, a.ModelID, params, strArg(a.DefaultRepoURL), a.DefaultStartingRef,
			a.AutoCreatePR, a.WorkOnCurrentBranch, a.SkipReviewerRequest, a.Preamble, a.Runtime,
			ms(a.UpdatedAt), a.ID)
		return mustAffect(res, err)
	})
	return wrap("update agent "+a.ID, err)
}

// DeleteAgent removes an agent. Its sessions stay: they hold their own copy of
// its settings.
func (s *Store) DeleteAgent(ctx context.Context, id string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		return mustAffect(tx.ExecContext(ctx, `DELETE FROM code_agents WHERE id = ?`, id))
	})
	return wrap("delete agent "+id, err)
}

// mustAffect turns "no row matched" into core.ErrNotFound.
func mustAffect(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return core.ErrNotFound
	}
	return nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

func scanAgent(r scanner) (core.CodeAgent, error) {
	var (
		a          core.CodeAgent
		params     sql.NullString
		repo       sql.NullString
		created    int64
		updated    int64
		autoPR     bool
		curBranch  bool
		skipReview bool
	)
	err := r.Scan(&a.ID, &a.OrgID, &a.Name, &a.Description, &a.ModelID, &params, &repo,
		&a.DefaultStartingRef, &autoPR, &curBranch, &skipReview,
		&a.Preamble, &a.Runtime, &a.CreatedBy, &created, &updated)
	if err != nil {
		return core.CodeAgent{}, err
	}
	a.ModelParams, err = paramsFrom(params)
	if err != nil {
		return core.CodeAgent{}, fmt.Errorf("agent %s: model_params: %w", a.ID, err)
	}
	a.DefaultRepoURL = strPtr(repo)
	a.AutoCreatePR, a.WorkOnCurrentBranch, a.SkipReviewerRequest = autoPR, curBranch, skipReview
	a.CreatedAt, a.UpdatedAt = fromMS(created), fromMS(updated)
	return a, nil
}

// inClause appends "col IN (?, ...)" for vals to where and args.
func inClause[T ~string](where []string, args []any, col string, vals []T) ([]string, []any) {
	where = append(where, col+` IN (`+placeholders(len(vals))+`)`)
	for _, v := range vals {
		args = append(args, string(v))
	}
	return where, args
}

// whereSQL joins conditions with AND, or returns "" for none.
func whereSQL(where []string) string {
	if len(where) == 0 {
		return ""
	}
	return ` WHERE ` + strings.Join(where, ` AND `)
}

// afterClause keeps the rows after k in the newest-first order (created_at
// DESC, id DESC): a keyset seek, so every page costs the same.
func afterClause(where []string, args []any, k *core.PageKey) ([]string, []any) {
	if k == nil {
		return where, args
	}
	return append(where, `(created_at, id) < (?, ?)`), append(args, ms(k.CreatedAt), k.ID)
}

// limitClause appends LIMIT when n is positive.
func limitClause(order string, args []any, n int) (string, []any) {
	if n <= 0 {
		return order, args
	}
	return order + ` LIMIT ?`, append(args, n)
}
