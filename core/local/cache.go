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
	if err := r.syncCache(ctx, cache, s.RepoURL, s.StartingRef); err != nil {
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

// syncCache clones the repository bare into its cache, or brings the
// starting ref up to date. Remote branches land on local branches of the
// same name (so a worktree sees "main" as the user would), except
// flapjack/*: those are the sessions' branches, checked out in their
// worktrees and owned by them.
//
// With a clone that exists, only the starting ref is fetched, and only its
// history is offered in the negotiation: a fetch then costs the same with
// a thousand session branches in the clone as with none. A ref fetched
// less than fetchReuse ago is not fetched again, a tag the clone has not at
// all (tags do not move).
func (r *Runtime) syncCache(ctx context.Context, cache, repoURL, ref string) error {
	if _, err := os.Stat(filepath.Join(cache, "HEAD")); err == nil {
		return r.fetchRef(ctx, cache, ref)
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
	// The clone is as fresh as a fetch.
	if ref == "" {
		head, _ := r.git(ctx, gitRun{dir: cache, args: []string{"symbolic-ref", "--quiet", "HEAD"}})
		ref = strings.TrimPrefix(head, "refs/heads/")
	}
	r.markFetched(cache, ref)
	return nil
}

// fetchRef brings one ref of an existing clone up to date: the branch ref
// (the default branch for ""), or else the tag ref.
func (r *Runtime) fetchRef(ctx context.Context, cache, ref string) error {
	if ref == "" {
		head, err := r.git(ctx, gitRun{dir: cache, args: []string{"symbolic-ref", "--quiet", "HEAD"}})
		if err != nil || !strings.HasPrefix(head, "refs/heads/") {
			return nil // addWorktree says there is no default branch
		}
		ref = strings.TrimPrefix(head, "refs/heads/")
	}
	if strings.HasPrefix(ref, BranchPrefix) {
		return nil // a session's branch is the session's, never fetched over
	}
	r.cacheMu.Lock()
	last, seen := r.fetched[cache+"\x00"+ref]
	r.cacheMu.Unlock()
	if seen && r.fetchReuse > 0 && time.Since(last) < r.fetchReuse {
		return nil
	}
	branch, tag := "refs/heads/"+ref, "refs/tags/"+ref
	hasBranch, _ := r.revParse(ctx, cache, branch)
	hasTag, _ := r.revParse(ctx, cache, tag)
	if hasTag != "" && hasBranch == "" {
		return nil // tags do not move
	}
	if hasBranch != "" {
		// Asking where the branch is costs one round trip and no walk of
		// the clone's refs and worktrees, which git fetch makes even when
		// there is nothing to fetch (100 ms with 1,000 worktrees).
		out, err := r.git(ctx, gitRun{dir: cache, args: []string{"ls-remote", "origin", branch}})
		remote, _, _ := strings.Cut(out, "\t")
		if err == nil && remote == hasBranch {
			r.markFetched(cache, ref)
			return nil
		}
		if err == nil && isObjectID(remote) && r.fetchCommit(ctx, cache, branch, hasBranch, remote) == nil {
			r.markFetched(cache, ref)
			return nil
		}
	}
	fetch := func(dst string) error {
		args := []string{"fetch", "--quiet", "--force", "--no-tags", "--no-write-fetch-head"}
		if sha, _ := r.revParse(ctx, cache, dst); sha != "" {
			args = append(args, "--negotiation-tip="+dst)
		}
		_, err := r.git(ctx, gitRun{dir: cache, args: append(args, "origin", "+"+dst+":"+dst)})
		return err
	}
	if fetch(branch) != nil && fetch(tag) != nil {
		// Neither exists upstream (any more): the ref as the clone has it,
		// or "not found" from addWorktree.
		return nil
	}
	r.markFetched(cache, ref)
	return nil
}

// fetchCommit brings branch from old to the commit upstream has it at, with
// the plumbing git fetch runs (fetch-pack, then the connectivity check of
// what came, then update-ref), without fetch's walk of every worktree. An
// error leaves the branch as it was; the caller then runs git fetch.
func (r *Runtime) fetchCommit(ctx context.Context, cache, branch, old, sha string) error {
	url, err := r.git(ctx, gitRun{dir: cache, args: []string{"config", "--get", "remote.origin.url"}})
	if err != nil || url == "" || strings.HasPrefix(url, "-") {
		return errors.New("no usable origin")
	}
	// fetch-pack takes no "--"; a URL cannot start with "-" (see prepare).
	if _, err := r.git(ctx, gitRun{dir: cache, args: []string{"fetch-pack", "--stdin", "--quiet", url}, stdin: sha + "\n"}); err != nil {
		return err
	}
	if _, err := r.git(ctx, gitRun{dir: cache, args: []string{"rev-list", "--objects", "--quiet", sha, "--not", old}}); err != nil {
		return err // not all of it came
	}
	_, err = r.git(ctx, gitRun{dir: cache, args: []string{"update-ref", "--", branch, sha, old}})
	return err
}

// isObjectID reports whether s is a SHA-1 or SHA-256 object id in hex, as
// upstream's answer must be before it goes on a command line.
func isObjectID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// markFetched notes that the clone's ref is as fresh as upstream's now.
func (r *Runtime) markFetched(cache, ref string) {
	r.cacheMu.Lock()
	r.fetched[cache+"\x00"+ref] = time.Now()
	r.cacheMu.Unlock()
}

// packEvery is how many session branches a clone gets before its refs are
// packed into one file again: git reads loose refs one file each.
const packEvery = 64

// addWorktree resolves the starting ref in the cache and adds the session's
// worktree on its branch: the branch as it was when it already exists (the
// workspace was removed by hand), else a new one at the starting ref. The
// local branch is always flapjack/<session-id>, also with
// workOnCurrentBranch (then it is pushed to the starting branch), because one
// branch cannot be checked out in two worktrees.
func (r *Runtime) addWorktree(ctx context.Context, cache, ws string, s core.Session) error {
	// Pruning walks every worktree; it is needed only when this session's
	// worktree is still registered (its workspace was removed by hand).
	if _, err := os.Stat(filepath.Join(cache, "worktrees", filepath.Base(ws))); err == nil {
		if _, err := r.git(ctx, gitRun{dir: cache, args: []string{"worktree", "prune"}}); err != nil {
			return err
		}
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
	if existing == "" {
		// Create only: the empty old value fails if the branch exists.
		if _, err := r.git(ctx, gitRun{dir: cache, args: []string{"update-ref", "--", "refs/heads/" + branch, sha, ""}}); err != nil {
			return err
		}
	}
	if err := r.registerWorktree(ctx, cache, ws, branch); err != nil {
		return err
	}
	r.cacheMu.Lock()
	r.newBranches[cache]++
	pack := r.newBranches[cache] >= packEvery
	if pack {
		r.newBranches[cache] = 0
	}
	r.cacheMu.Unlock()
	if pack {
		_, _ = r.git(ctx, gitRun{dir: cache, args: []string{"pack-refs", "--all"}})
	}
	dir := gitDir(ws)
	if dir == "" || dir == filepath.Join(ws, ".git") {
		return fmt.Errorf("workspace of session %s is not a worktree", s.ID)
	}
	return writeState(filepath.Join(dir, stateFileName), st)
}

// registerWorktree makes ws a worktree of the clone on branch, as `git
// worktree add` does, by its documented layout (gitrepository-layout:
// worktrees/<id>/gitdir, commondir, HEAD, and the worktree's .git file),
// then checks the files out with `git reset --hard`, the command worktree
// add runs. What it leaves out is worktree add's check that the branch is
// not checked out elsewhere, which reads every worktree of the clone (80 ms
// with 1,000 of them) and cannot fail here: the branch is the session's
// own. The caller holds the clone's lock, so nothing prunes half a worktree.
func (r *Runtime) registerWorktree(ctx context.Context, cache, ws, branch string) error {
	admin := filepath.Join(cache, "worktrees", filepath.Base(ws))
	if err := os.MkdirAll(ws, 0o700); err != nil {
		return fmt.Errorf("create workspace: %w", err)
	}
	if err := os.MkdirAll(admin, 0o700); err != nil {
		return fmt.Errorf("register workspace: %w", err)
	}
	slash := filepath.ToSlash
	for _, f := range []struct{ path, content string }{
		{filepath.Join(ws, ".git"), "gitdir: " + slash(admin) + "\n"},
		{filepath.Join(admin, "gitdir"), slash(filepath.Join(ws, ".git")) + "\n"},
		{filepath.Join(admin, "commondir"), "../..\n"},
		{filepath.Join(admin, "HEAD"), "ref: refs/heads/" + branch + "\n"},
	} {
		if err := os.WriteFile(f.path, []byte(f.content), 0o600); err != nil {
			return fmt.Errorf("register workspace: %w", err)
		}
	}
	_, err := r.git(ctx, gitRun{dir: ws, args: []string{"reset", "--hard", "--no-recurse-submodules", "--quiet"}})
	return err
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
