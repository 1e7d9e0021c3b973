package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/platform"
)

// BranchPrefix starts the name of the branch each session works on.
const BranchPrefix = "flapjack/"

// lockPoll is how often a busy repository lock is tried again.
const lockPoll = 50 * time.Millisecond

// cacheDir is the cached clone of a repository URL, as the user gave it: a
// name a person recognises and a hash that tells URLs apart.
func (r *Runtime) cacheDir(repoURL string) string {
	sum := sha256.Sum256([]byte(repoURL))
	base := repoURL
	if i := strings.LastIndexAny(base, "/:"); i >= 0 {
		base = base[i+1:]
	}
	base = strings.TrimSuffix(base, ".git")
	base = strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' {
			return c
		}
		return '_'
	}, base)
	base = strings.TrimLeft(base, ".-")
	if len(base) > 40 {
		base = base[:40]
	}
	if base == "" {
		base = "repo"
	}
	return filepath.Join(r.repos, base+"-"+hex.EncodeToString(sum[:6])+".git")
}

// lockRepo takes the cached clone's lock, an flock on a file beside it:
// clones, fetches and worktree changes of one repository are serialized
// between goroutines and between processes (Archive runs in the caller's).
func (r *Runtime) lockRepo(ctx context.Context, cache string) (unlock func(), err error) {
	if err := os.MkdirAll(r.repos, 0o700); err != nil {
		return nil, fmt.Errorf("create repository cache: %w", err)
	}
	f, err := os.OpenFile(cache+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock repository cache: %w", err)
	}
	for {
		ok, err := platform.LockFile(f, false)
		if ok {
			return func() { _ = platform.UnlockFile(f); _ = f.Close() }, nil
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock repository cache: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(lockPoll):
		}
	}
}

// Prepare makes the session's workspace: a git worktree of the repository's
// cached clone (made on first use, fetched before every new session), on the
// session's branch. A workspace that exists is ready (its state file is
// written last), so Prepare can be repeated after a crash; a follow-up finds
// its workspace and does nothing.
func (r *Runtime) Prepare(ctx context.Context, spec core.RunSpec) (core.RunStart, error) {
	return core.RunStart{}, r.prepare(ctx, spec)
}

func (r *Runtime) prepare(ctx context.Context, spec core.RunSpec) error {
	s := spec.Session
	ws, err := r.workspace(s.ID)
	if err != nil {
		return err
	}
	name, err := r.agentName(s)
	if err != nil {
		return err
	}
	if _, err := r.resolveAgent(name); err != nil {
		return err
	}
	if ready, err := workspaceReady(ws); err != nil || ready {
		return err
	}
	if s.StartingRef != "" {
		if err := core.ValidateRef("starting_ref", s.StartingRef); err != nil {
			return errors.New(core.AsError(err).Message)
		}
	}
	if s.RepoURL == "" || strings.HasPrefix(s.RepoURL, "-") {
		return fmt.Errorf("invalid repository URL %q", displayURL(s.RepoURL))
	}
	if err := os.MkdirAll(r.root, 0o700); err != nil {
		return fmt.Errorf("create workspace root: %w", err)
	}
	r.removeTempDirs(s.ID)
	start := time.Now()
	cache := r.cacheDir(s.RepoURL)
	unlock, err := r.lockRepo(ctx, cache)
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.syncCache(ctx, cache, s.RepoURL); err != nil {
		return errors.New(strings.ReplaceAll(err.Error(), s.RepoURL, displayURL(s.RepoURL)))
	}
	if err := r.addWorktree(ctx, cache, ws, s); err != nil {
		_ = removeAll(ws)
		_, _ = r.git(context.WithoutCancel(ctx), gitRun{dir: cache, args: []string{"worktree", "prune"}})
		return err
	}
	r.log.InfoContext(ctx, "workspace prepared", "session", s.ID, "ref", s.StartingRef, "cache", cache, "elapsed", time.Since(start))
	return nil
}

// workspaceReady reports whether Prepare finished the workspace: a clone (as
// earlier versions made), or a worktree with its state file. A half-made one
// is removed so it can be made again.
func workspaceReady(ws string) (bool, error) {
	fi, err := os.Stat(ws)
	if err != nil {
		if os.IsNotExist(err) {
			return false, nil
		}
		return false, err
	}
	if !fi.IsDir() {
		return false, fmt.Errorf("workspace %s is not a directory", filepath.Base(ws))
	}
	if dir := gitDir(ws); dir != "" {
		if dir == filepath.Join(ws, ".git") {
			return true, nil
		}
		if _, err := os.Stat(filepath.Join(dir, stateFileName)); err == nil {
			return true, nil
		}
	}
	return false, removeAll(ws)
}

// syncCache clones the repository bare into its cache, or fetches it. Remote
// branches land on local branches of the same name (so a worktree sees
// "main" as the user would), except flapjack/*: those are the sessions'
// branches, checked out in their worktrees and owned by them.
func (r *Runtime) syncCache(ctx context.Context, cache, repoURL string) error {
	if _, err := os.Stat(filepath.Join(cache, "HEAD")); err == nil {
		_, err := r.git(ctx, gitRun{dir: cache, args: []string{"fetch", "--quiet", "--force", "--tags", "origin"}})
		return err
	}
	tmp, err := os.MkdirTemp(r.repos, "."+filepath.Base(cache)+".clone-")
	if err != nil {
		return fmt.Errorf("create repository cache: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if _, err := r.git(ctx, gitRun{dir: r.repos, args: []string{"clone", "--quiet", "--bare", "--", repoURL, tmp}}); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"config", "remote.origin.fetch", "+refs/heads/*:refs/heads/*"},
		{"config", "--add", "remote.origin.fetch", "^refs/heads/" + BranchPrefix + "*"},
	} {
		if _, err := r.git(ctx, gitRun{dir: tmp, args: args}); err != nil {
			return err
		}
	}
	_ = removeAll(cache) // a cache without HEAD is a broken one
	if err := os.Rename(tmp, cache); err != nil {
		return fmt.Errorf("create repository cache: %w", err)
	}
	return nil
}

// addWorktree resolves the starting ref in the cache and adds the session's
// worktree on its branch: the branch as it was when it already exists (the
// workspace was removed by hand), else a new one at the starting ref. The
// local branch is always flapjack/<session-id>, also with
// workOnCurrentBranch (then it is pushed to the starting branch), because one
// branch cannot be checked out in two worktrees.
func (r *Runtime) addWorktree(ctx context.Context, cache, ws string, s core.Session) error {
	if _, err := r.git(ctx, gitRun{dir: cache, args: []string{"worktree", "prune"}}); err != nil {
		return err
	}
	ref := s.StartingRef
	if ref == "" {
		head, err := r.git(ctx, gitRun{dir: cache, args: []string{"symbolic-ref", "--quiet", "HEAD"}})
		if err != nil || !strings.HasPrefix(head, "refs/heads/") {
			return fmt.Errorf("repository %s has no default branch; set a starting ref", displayURL(s.RepoURL))
		}
		ref = strings.TrimPrefix(head, "refs/heads/")
	}
	isTag := false
	sha, err := r.revParse(ctx, cache, "refs/heads/"+ref)
	if err != nil {
		return err
	}
	if sha == "" {
		isTag = true
		if sha, err = r.revParse(ctx, cache, "refs/tags/"+ref); err != nil {
			return err
		}
	}
	if sha == "" {
		return fmt.Errorf("starting ref %s not found in %s", ref, displayURL(s.RepoURL))
	}
	if s.WorkOnCurrentBranch && isTag {
		return fmt.Errorf("starting ref %s is a tag; work_on_current_branch needs a branch", ref)
	}
	branch := BranchPrefix + s.ID
	st := sessionState{BaseRef: ref, BaseIsTag: isTag, BaseCommit: sha, Branch: branch, PushBranch: branch}
	if s.WorkOnCurrentBranch {
		st.PushBranch = ref
	}
	existing, err := r.revParse(ctx, cache, "refs/heads/"+branch)
	if err != nil {
		return err
	}
	args := []string{"worktree", "add", "--quiet", "-b", branch, "--", ws, sha}
	if existing != "" {
		args = []string{"worktree", "add", "--quiet", "--", ws, branch}
	}
	if _, err := r.git(ctx, gitRun{dir: cache, args: args}); err != nil {
		return err
	}
	dir := gitDir(ws)
	if dir == "" || dir == filepath.Join(ws, ".git") {
		return fmt.Errorf("workspace of session %s is not a worktree", s.ID)
	}
	return writeState(filepath.Join(dir, stateFileName), st)
}

// revParse resolves name to a commit id, "" when it does not exist.
func (r *Runtime) revParse(ctx context.Context, dir, name string) (string, error) {
	out, err := r.git(ctx, gitRun{dir: dir, args: []string{"rev-parse", "--verify", "--quiet", "--end-of-options", name + "^{commit}"}})
	if err != nil {
		if exitCode(err) == 1 {
			return "", nil
		}
		return "", err
	}
	return out, nil
}

// dropWorktree unregisters a removed workspace from its cached clone and
// deletes the session branch there, so the cache does not keep its objects.
func (r *Runtime) dropWorktree(ctx context.Context, s core.Session) error {
	if s.RepoURL == "" {
		return nil
	}
	cache := r.cacheDir(s.RepoURL)
	if _, err := os.Stat(filepath.Join(cache, "HEAD")); err != nil {
		return nil // no cache: a workspace of an earlier version, or never prepared
	}
	unlock, err := r.lockRepo(ctx, cache)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := r.git(ctx, gitRun{dir: cache, args: []string{"worktree", "prune"}}); err != nil {
		return err
	}
	branch := "refs/heads/" + BranchPrefix + s.ID
	if sha, err := r.revParse(ctx, cache, branch); err != nil || sha == "" {
		return err
	}
	_, err = r.git(ctx, gitRun{dir: cache, args: []string{"update-ref", "-d", "--", branch}})
	return err
}

// removeTempDirs deletes clones a crashed Prepare of an earlier version left.
func (r *Runtime) removeTempDirs(sessionID string) {
	matches, _ := filepath.Glob(filepath.Join(r.root, "."+sessionID+".clone-*"))
	for _, m := range matches {
		_ = removeAll(m)
	}
}
