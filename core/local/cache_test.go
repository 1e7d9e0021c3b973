//go:build unix

package local

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// TestSessionsShareOneClone: sessions on one repository are worktrees of one
// cached clone (one object store), and the clone's starting ref is fetched
// before each new session (here with no reuse window), so a new session
// starts from the repository as it is now.
func TestSessionsShareOneClone(t *testing.T) {
	t.Parallel()
	o := makeOrigin(t)
	r := newRuntimeWith(t, func(c *Config) { c.FetchReuse = -1 })
	var specs []core.RunSpec
	for i := 0; i < 3; i++ {
		spec := newSpec(o.dir, "main", "p")
		if err := r.prepare(context.Background(), spec); err != nil {
			t.Fatal(err)
		}
		specs = append(specs, spec)
	}
	caches, _ := filepath.Glob(filepath.Join(r.repos, "*.git"))
	if len(caches) != 1 || !strings.HasPrefix(filepath.Base(caches[0]), "origin_repo-") {
		t.Fatalf("caches: %v", caches)
	}
	for _, spec := range specs {
		ws := filepath.Join(r.root, spec.Session.ID)
		fi, err := os.Lstat(filepath.Join(ws, ".git"))
		if err != nil || fi.IsDir() {
			t.Fatalf("%s/.git is not a worktree's file: %v", spec.Session.ID, err)
		}
		if got := gitDir(ws); got != filepath.Join(caches[0], "worktrees", spec.Session.ID) {
			t.Errorf("git dir of %s = %s", spec.Session.ID, got)
		}
		if common := git(t, ws, "rev-parse", "--path-format=absolute", "--git-common-dir"); common != caches[0] {
			t.Errorf("object store of %s = %s, want the shared clone", spec.Session.ID, common)
		}
		if got := git(t, ws, "rev-parse", "HEAD"); got != o.main {
			t.Errorf("HEAD = %s, want main %s", got, o.main)
		}
	}
	// The user's branch names are there as in a clone of their own.
	if got := git(t, filepath.Join(r.root, specs[0].Session.ID), "log", "--format=%s", "-1", "feature"); got != "feature work" {
		t.Errorf("feature in a worktree: %q", got)
	}

	writeFile(t, filepath.Join(o.dir, "new.txt"), "new\n")
	git(t, o.dir, "add", "-A")
	git(t, o.dir, "commit", "-q", "-m", "newer")
	newer := git(t, o.dir, "rev-parse", "HEAD")
	spec := newSpec(o.dir, "main", "p")
	if err := r.prepare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	if got := git(t, filepath.Join(r.root, spec.Session.ID), "rev-parse", "HEAD"); got != newer {
		t.Errorf("a new session starts at %s, want the fetched main %s", got, newer)
	}
	// A fetch never touches a session's branch, even one the remote has.
	git(t, o.dir, "branch", "flapjack/"+specs[0].Session.ID, o.first)
	if err := r.prepare(context.Background(), newSpec(o.dir, "main", "p")); err != nil {
		t.Fatal(err)
	}
	if got := git(t, filepath.Join(r.root, specs[0].Session.ID), "rev-parse", "HEAD"); got != o.main {
		t.Errorf("session branch moved to %s by a fetch", got)
	}
}

// TestReleaseWorkspace: the workspace and the session branch in the cached
// clone go; other sessions keep theirs; releasing again is harmless.
func TestReleaseWorkspace(t *testing.T) {
	t.Parallel()
	o := makeOrigin(t)
	r := newRuntime(t)
	a, b := newSpec(o.dir, "main", "p"), newSpec(o.dir, "main", "p")
	for _, spec := range []core.RunSpec{a, b} {
		if err := r.prepare(context.Background(), spec); err != nil {
			t.Fatal(err)
		}
	}
	cache := r.cacheDir(o.dir)
	if err := r.ReleaseWorkspace(context.Background(), a.Session); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(r.root, a.Session.ID)); !os.IsNotExist(err) {
		t.Errorf("workspace still there: %v", err)
	}
	if out, _ := gitOut(cache, "branch", "--list", "flapjack/*"); strings.Contains(out, a.Session.ID) || !strings.Contains(out, b.Session.ID) {
		t.Errorf("session branches in the cache:\n%s", out)
	}
	if out, _ := gitOut(cache, "worktree", "list", "--porcelain"); strings.Contains(out, a.Session.ID) {
		t.Errorf("worktree still registered:\n%s", out)
	}
	if err := r.ReleaseWorkspace(context.Background(), a.Session); err != nil {
		t.Errorf("second release: %v", err)
	}
	if err := r.Archive(context.Background(), a.Session); err != nil {
		t.Errorf("archive after release: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r.root, b.Session.ID, "README.md")); err != nil {
		t.Errorf("the other session's workspace: %v", err)
	}
}

// TestPrepareRedoesHalfMadeWorkspace: a worktree without its state file was
// cut short by a crash; Prepare makes it again, on the branch as it was.
func TestPrepareRedoesHalfMadeWorkspace(t *testing.T) {
	t.Parallel()
	r, spec, ws := prepared(t, "p")
	writeFile(t, filepath.Join(ws, "x.txt"), "x")
	git(t, ws, "add", "-A")
	git(t, ws, "commit", "-q", "-m", "kept")
	kept := git(t, ws, "rev-parse", "HEAD")
	if err := os.Remove(filepath.Join(gitDir(ws), stateFileName)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(ws, "README.md")); err != nil { // half checked out
		t.Fatal(err)
	}
	if err := r.prepare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ws, "README.md")); err != nil {
		t.Errorf("workspace not made again: %v", err)
	}
	if got := git(t, ws, "rev-parse", "HEAD"); got != kept {
		t.Errorf("HEAD = %s, want the branch's %s", got, kept)
	}
	if st := mustState(t, ws); st.Branch != "flapjack/"+spec.Session.ID {
		t.Errorf("state = %+v", st)
	}
}

// TestPrepareKeepsAnEarlierClone: a workspace made by an earlier version
// (a full clone) is used as it is.
func TestPrepareKeepsAnEarlierClone(t *testing.T) {
	t.Parallel()
	o := makeOrigin(t)
	r := newRuntime(t)
	spec := newSpec(o.dir, "main", "p")
	ws := filepath.Join(r.root, spec.Session.ID)
	if err := os.MkdirAll(r.root, 0o700); err != nil {
		t.Fatal(err)
	}
	git(t, r.root, "clone", "-q", o.dir, ws)
	git(t, ws, "checkout", "-q", "-b", "flapjack/"+spec.Session.ID)
	if err := r.prepare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	if caches, _ := filepath.Glob(filepath.Join(r.repos, "*.git")); len(caches) != 0 {
		t.Errorf("made a cache for a ready workspace: %v", caches)
	}
	out, err := r.Execute(context.Background(), spec, newSink(t))
	if err != nil || out.Status != core.MessageFinished || out.PRBranch != "flapjack/"+spec.Session.ID {
		t.Errorf("run in an earlier clone: %+v, %v", out, err)
	}
}

func mustState(t *testing.T, ws string) sessionState {
	t.Helper()
	rs, err := openState(ws)
	if err != nil {
		t.Fatal(err)
	}
	return rs.get()
}

// TestFetchOnlyWhatTheSessionNeeds: a new session fetches its starting ref
// alone (another branch that moved upstream stays as it was), a burst of
// starts within the reuse window fetches once, and the next start after the
// window sees the newest commit; a tag the clone has is not fetched.
func TestFetchOnlyWhatTheSessionNeeds(t *testing.T) {
	t.Parallel()
	o := makeOrigin(t)
	r := newRuntimeWith(t, func(c *Config) { c.FetchReuse = 2 * time.Second })
	ctx := context.Background()
	start := func(ref string) string {
		t.Helper()
		spec := newSpec(o.dir, ref, "p")
		if err := r.prepare(ctx, spec); err != nil {
			t.Fatal(err)
		}
		return git(t, filepath.Join(r.root, spec.Session.ID), "rev-parse", "HEAD")
	}
	commit := func(branch, file string) string {
		t.Helper()
		git(t, o.dir, "checkout", "-q", branch)
		writeFile(t, filepath.Join(o.dir, file), file+"\n")
		git(t, o.dir, "add", "-A")
		git(t, o.dir, "commit", "-q", "-m", file)
		sha := git(t, o.dir, "rev-parse", "HEAD")
		git(t, o.dir, "checkout", "-q", "main")
		return sha
	}
	cache := r.cacheDir(o.dir)
	if got := start("main"); got != o.main {
		t.Fatalf("first session at %s, want main %s", got, o.main)
	}
	newMain := commit("main", "a.txt")
	newFeature := commit("feature", "b.txt")
	if got := start("main"); got != o.main {
		t.Errorf("a start within the reuse window fetched: at %s, want %s", got, o.main)
	}
	time.Sleep(2100 * time.Millisecond)
	if got := start("main"); got != newMain {
		t.Errorf("a start after the window is at %s, want the new main %s", got, newMain)
	}
	if got := git(t, cache, "rev-parse", "refs/heads/feature"); got != o.feature {
		t.Errorf("feature moved to %s in the clone; only main was needed", got)
	}
	if got := start("feature"); got != newFeature {
		t.Errorf("a session on feature starts at %s, want %s", got, newFeature)
	}
	// A tag the clone has is used as it is, and a ref upstream does not
	// have is reported by name.
	if got := start("v1"); got != o.first {
		t.Errorf("a session on v1 starts at %s, want %s", got, o.first)
	}
	if err := r.prepare(ctx, newSpec(o.dir, "no-such-ref", "p")); err == nil || !strings.Contains(err.Error(), "no-such-ref") {
		t.Errorf("a missing ref: %v", err)
	}
}
