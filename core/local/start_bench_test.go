//go:build unix

package local

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkSessionStartAtScale measures Prepare (the cached clone brought
// up to date, the session's worktree and branch made: everything before the
// agent starts) on one repository:
//
//   - with-1000-workspaces: a start with 1,000 live workspaces on the
//     repository, with no fetch reuse window (upstream is asked every
//     time), beside the first start (which clones). Goal: ≤ 1.3× the
//     first. Starts right after a push upstream, which must fetch, are
//     reported too.
//   - first-of-20000-files: the first start on a repository of 20,000
//     files, beside `git clone --bare` + `git worktree add` of it by hand,
//     interleaved. Goal: ≤ 1.1× that floor.
func BenchmarkSessionStartAtScale(b *testing.B) {
	ctx := context.Background()
	b.Run("with-1000-workspaces", func(b *testing.B) {
		for b.Loop() {
			o := makeOrigin(b)
			root := filepath.Join(b.TempDir(), "workspaces")
			runtime := func(reuse time.Duration) *Runtime {
				return newRuntimeWith(b, func(c *Config) { c.WorkspaceRoot, c.FetchReuse = root, reuse })
			}
			// Set-up reuses fetches (it makes 1,000 workspaces); the
			// measured starts fetch every time, the worst case.
			setup, measured := runtime(time.Hour), runtime(-1)
			t0 := time.Now()
			if err := measured.prepare(ctx, newSpec(o.dir, "main", "p")); err != nil {
				b.Fatal(err)
			}
			first := time.Since(t0)
			for range 999 {
				if err := setup.prepare(ctx, newSpec(o.dir, "main", "p")); err != nil {
					b.Fatal(err)
				}
			}
			var took []time.Duration
			for range 15 {
				t0 := time.Now()
				if err := measured.prepare(ctx, newSpec(o.dir, "main", "p")); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(t0))
			}
			// And when upstream moved since the last start, so the ref is
			// fetched (reported, without a goal).
			var pushed []time.Duration
			for i := range 5 {
				writeFile(b, filepath.Join(o.dir, fmt.Sprintf("push%d.txt", i)), "x\n")
				git(b, o.dir, "add", "-A")
				git(b, o.dir, "commit", "-q", "-m", "push")
				t0 := time.Now()
				if err := measured.prepare(ctx, newSpec(o.dir, "main", "p")); err != nil {
					b.Fatal(err)
				}
				pushed = append(pushed, time.Since(t0))
			}
			slices.Sort(pushed)
			b.ReportMetric(float64(pushed[len(pushed)/2])/1e6, "start-after-a-push-ms")
			slices.Sort(took)
			ratio := float64(took[len(took)/2]) / float64(first)
			b.ReportMetric(float64(first)/1e6, "first-start-ms")
			b.ReportMetric(float64(took[len(took)/2])/1e6, "start-at-1000-ms")
			b.ReportMetric(ratio, "vs-first")
			if ratio > 1.3 {
				b.Errorf("a start with 1,000 workspaces takes %v, %.2f× the first's %v; goal ≤ 1.3×", took[len(took)/2], ratio, first)
			}
		}
	})
	b.Run("first-of-20000-files", func(b *testing.B) {
		for b.Loop() {
			origin := bigOrigin(b, 20_000)
			var floors, starts []time.Duration
			for range 3 {
				dir := b.TempDir()
				t0 := time.Now()
				run(b, dir, "git", "clone", "--quiet", "--bare", "--", origin, "c.git")
				run(b, filepath.Join(dir, "c.git"), "git", "worktree", "add", "--quiet", "-b", "s", "--", filepath.Join(dir, "ws"), "main")
				floors = append(floors, time.Since(t0))
				r := newRuntime(b)
				t0 = time.Now()
				if err := r.prepare(ctx, newSpec(origin, "main", "p")); err != nil {
					b.Fatal(err)
				}
				starts = append(starts, time.Since(t0))
			}
			slices.Sort(floors)
			slices.Sort(starts)
			ratio := float64(starts[1]) / float64(floors[1])
			b.ReportMetric(float64(starts[1])/1e6, "first-start-ms")
			b.ReportMetric(float64(floors[1])/1e6, "floor-clone+worktree-ms")
			b.ReportMetric(ratio, "vs-floor")
			if ratio > 1.1 {
				b.Errorf("the first start takes %v, %.2f× git's own %v; goal ≤ 1.1×", starts[1], ratio, floors[1])
			}
		}
	})
}

// bigOrigin is a repository of n small files in 100 directories, on main.
func bigOrigin(b *testing.B, n int) string {
	dir := filepath.Join(b.TempDir(), "big")
	for i := range n {
		d := filepath.Join(dir, fmt.Sprintf("pkg%02d", i%100))
		if i < 100 {
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d.go", i)), []byte(fmt.Sprintf("package p\n\nconst C%d = %d\n", i, i)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	run(b, dir, "git", "init", "-q", "-b", "main")
	run(b, dir, "git", "add", "-A")
	run(b, dir, "git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "big")
	return dir
}

func run(b *testing.B, dir string, name string, args ...string) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}
