//go:build unix

package local

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flapjack-dev/flapjack/core"
)

func TestPrepare(t *testing.T) {
	t.Parallel()
	o := makeOrigin(t)
	tests := []struct {
		name        string
		repo        string // default: o.dir
		ref         string
		current     bool
		wantPush    string // "" = flapjack/<id>
		wantHead    string
		wantErr     string
		wantNoFiles bool
	}{
		{name: "branch", ref: "main", wantHead: o.main},
		{name: "other branch", ref: "feature", wantHead: o.feature},
		{name: "default branch when no ref", ref: "", wantHead: o.main},
		{name: "file URL", repo: "file://" + o.dir, ref: "feature", wantHead: o.feature},
		{name: "tag", ref: "v1", wantHead: o.first},
		{name: "work on current branch", ref: "feature", current: true, wantPush: "feature", wantHead: o.feature},
		{name: "work on the default branch", ref: "main", current: true, wantPush: "main", wantHead: o.main},
		{name: "tag with work on current branch", ref: "v1", current: true, wantErr: "v1 is a tag"},
		{name: "missing ref", ref: "nope", wantErr: "starting ref nope not found in " + o.dir},
		{name: "ref read as an option", ref: "--upload-pack=touch", wantErr: "not a valid branch or tag name"},
		{name: "missing repository", repo: filepath.Join(o.dir, "missing"), ref: "main", wantErr: "git clone failed: fatal: repository"},
		{name: "repository read as an option", repo: "--upload-pack=touch /tmp/pwned", ref: "main", wantErr: "invalid repository URL"},
		{name: "ext transport", repo: "ext::sh -c touch% /tmp/pwned", ref: "main", wantErr: "git clone failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRuntime(t)
			repo := tt.repo
			if repo == "" {
				repo = o.dir
			}
			spec := newSpec(repo, tt.ref, "p")
			spec.Session.WorkOnCurrentBranch = tt.current
			ws := filepath.Join(r.root, spec.Session.ID)
			err := r.prepare(context.Background(), spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Prepare error = %v, want one containing %q", err, tt.wantErr)
				}
				if entries, _ := os.ReadDir(r.root); len(entries) != 0 {
					t.Errorf("failed Prepare left %d entries in the workspace root", len(entries))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// The local branch is the session's; with workOnCurrentBranch
			// it is pushed to the starting branch.
			if got, want := git(t, ws, "symbolic-ref", "--short", "HEAD"), "flapjack/"+spec.Session.ID; got != want {
				t.Errorf("branch = %q, want %q", got, want)
			}
			rs, err := openState(ws)
			if err != nil {
				t.Fatal(err)
			}
			wantPush := tt.wantPush
			if wantPush == "" {
				wantPush = "flapjack/" + spec.Session.ID
			}
			if st := rs.get(); st.PushBranch != wantPush || st.BaseCommit != tt.wantHead {
				t.Errorf("state = %+v, want push branch %s from %s", st, wantPush, tt.wantHead)
			}
			if got := git(t, ws, "rev-parse", "HEAD"); got != tt.wantHead {
				t.Errorf("HEAD = %s, want %s", got, tt.wantHead)
			}
			if st := git(t, ws, "status", "--porcelain", "--untracked-files=all"); st != "" {
				t.Errorf("fresh workspace is not clean:\n%s", st)
			}
			if _, err := os.Stat(filepath.Join(ws, "README.md")); err != nil {
				t.Errorf("work tree not checked out: %v", err)
			}
			entries, _ := os.ReadDir(r.root)
			if len(entries) != 1 {
				t.Errorf("workspace root holds %d entries, want just the workspace", len(entries))
			}
		})
	}
	if _, err := os.Stat("/tmp/pwned"); err == nil {
		t.Error("a repository URL ran a command")
	}
}

func TestPrepareIsIdempotent(t *testing.T) {
	t.Parallel()
	r, spec, ws := prepared(t, "p")
	writeFile(t, filepath.Join(ws, "README.md"), "changed\n")
	// A crashed earlier attempt left a half clone behind.
	stale := filepath.Join(r.root, "."+spec.Session.ID+".clone-123")
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := r.prepare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(ws, "README.md")); string(b) != "changed\n" {
		t.Errorf("second Prepare touched the workspace: README.md = %q", b)
	}

	// A new session's Prepare cleans up its own leftovers.
	spec2 := spec
	spec2.Session.ID = core.NewID(core.PrefixSession)
	stale2 := filepath.Join(r.root, "."+spec2.Session.ID+".clone-456")
	if err := os.MkdirAll(stale2, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := r.prepare(context.Background(), spec2); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale2); !os.IsNotExist(err) {
		t.Errorf("leftover clone not removed: %v", err)
	}
}

func TestPrepareRejectsBadSessionID(t *testing.T) {
	t.Parallel()
	o := makeOrigin(t)
	r := newRuntime(t)
	for _, id := range []string{"", "../x", "a/b", ".hidden", "-x"} {
		spec := newSpec(o.dir, "main", "p")
		spec.Session.ID = id
		if err := r.prepare(context.Background(), spec); err == nil {
			t.Errorf("Prepare with session id %q: no error", id)
		}
	}
}

func TestArchive(t *testing.T) {
	t.Parallel()
	r, spec, ws := prepared(t, "p")
	// An agent may leave read-only directories (Go's module cache does).
	ro := filepath.Join(ws, "cache", "mod")
	if err := os.MkdirAll(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(ro, "f"), "x")
	if err := os.Chmod(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	if err := r.Archive(context.Background(), spec.Session); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ws); !os.IsNotExist(err) {
		t.Errorf("workspace still there: %v", err)
	}
	if err := r.Archive(context.Background(), spec.Session); err != nil {
		t.Errorf("archiving again: %v", err)
	}
}
