package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/local"
	"github.com/flapjack-dev/flapjack/core/platform"
)

// runnerStatus is what "flapjack runner status" reports.
type runnerStatus struct {
	Runner struct {
		Running bool `json:"running"`
		PID     int  `json:"pid,omitempty"`
		// Since is when it took the runner lock.
		Since         *time.Time `json:"since,omitempty"`
		UptimeSeconds int64      `json:"uptime_seconds"`
	} `json:"runner"`
	ActiveSessions   int            `json:"active_sessions"`
	SessionsByStatus map[string]int `json:"sessions_by_status"`
	QueuedMessages   int            `json:"queued_messages"`
	Workspaces       diskUse        `json:"workspaces"`
	RepoCache        diskUse        `json:"repo_cache"`
	Limits           struct {
		MaxConcurrentRuns   int   `json:"max_concurrent_runs"`
		StallTimeoutSeconds int64 `json:"stall_timeout_seconds"`
		RunTimeoutSeconds   int64 `json:"run_timeout_seconds"`
		WorkspaceTTLSeconds int64 `json:"workspace_ttl_seconds"`
	} `json:"limits"`
	// Agents are the local agent CLIs this machine has, with their versions.
	Agents []local.AgentInfo `json:"agents"`
}

// diskUse is how many entries a directory holds and the disk they take.
type diskUse struct {
	Path  string `json:"path"`
	Count int    `json:"count"`
	Bytes int64  `json:"bytes"`
}

func newRunnerStatusCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the runner, its active sessions and queued messages, and the disk its workspaces use",
		Long: `Reports whether a runner holds this data directory (its pid and uptime), the
active sessions by status, the messages queued behind running ones, and the
disk used by the local runtime's workspaces and its cached clones, with the
limits the runner applies to local runs.`,
		Example: "  flapjack runner status\n  flapjack runner status -o json",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := newPrinter(output, g.stdout)
			if err != nil {
				return err
			}
			g.quietUnlessAsked()
			st, err := readRunnerStatus(cmd.Context(), g)
			if err != nil {
				return err
			}
			return p.value(st, func(w io.Writer) { st.text(w) })
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", os.Getenv("FLAPJACK_OUTPUT"), "output: text, json or jsonl (default text on a terminal, json otherwise; env FLAPJACK_OUTPUT)")
	return cmd
}

// readRunnerStatus gathers the status without starting a runner.
func readRunnerStatus(ctx context.Context, g *globals) (runnerStatus, error) {
	var st runnerStatus
	a, err := openApp(ctx, g, nil)
	if err != nil {
		return st, err
	}
	defer a.Close()
	if pid, since, ok := runnerProcess(g.dataDir); ok {
		st.Runner.Running, st.Runner.PID, st.Runner.Since = true, pid, &since
		st.Runner.UptimeSeconds = int64(time.Since(since).Seconds())
	}
	no := false
	active, err := a.store.ListSessions(ctx, core.SessionFilter{Statuses: []core.Status{core.StatusPending, core.StatusCreating, core.StatusRunning}, Archived: &no})
	if err != nil {
		return st, err
	}
	st.ActiveSessions = len(active)
	st.SessionsByStatus = map[string]int{}
	for _, s := range active {
		st.SessionsByStatus[string(s.Status)]++
		msgs, err := a.store.ListMessages(ctx, s.ID)
		if err != nil {
			return st, err
		}
		for _, m := range msgs {
			if m.Status == core.MessageQueued {
				st.QueuedMessages++
			}
		}
	}
	st.Workspaces = measure(filepath.Join(g.dataDir, "workspaces"), func(name string, dir bool) bool { return dir && !strings.HasPrefix(name, ".") })
	st.RepoCache = measure(filepath.Join(g.dataDir, "repos"), func(name string, dir bool) bool {
		return dir && strings.HasSuffix(name, ".git") && !strings.HasPrefix(name, ".")
	})
	st.Limits.MaxConcurrentRuns = a.cfg.Limits.MaxConcurrent
	st.Limits.StallTimeoutSeconds = int64(a.cfg.Limits.StallTimeout.Seconds())
	st.Limits.RunTimeoutSeconds = int64(a.cfg.Limits.RunTimeout.Seconds())
	st.Limits.WorkspaceTTLSeconds = int64(a.cfg.WorkspaceTTL.Seconds())
	if lr, ok := a.runtimes[core.RuntimeLocal].(*local.Runtime); ok {
		st.Agents = lr.Agents(ctx)
	}
	return st, nil
}

// runnerProcess reads the data directory's runner from its liveness record:
// its pid and when it started.
func runnerProcess(dataDir string) (pid int, since time.Time, ok bool) {
	b, alive := runnerAlive(dataDir)
	if !alive {
		return 0, time.Time{}, false
	}
	return b.PID, b.Started, true
}

// measure counts the entries of dir that count(name, isDir) accepts and sums
// the disk all its files take (allocated blocks, each file once however many
// hard links it has), as du would.
func measure(dir string, count func(name string, dir bool) bool) diskUse {
	du := diskUse{Path: dir}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return du
	}
	for _, e := range entries {
		if count(e.Name(), e.IsDir()) {
			du.Count++
		}
	}
	seen := map[[2]uint64]bool{}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrPermission) && d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		key, bytes, ok := platform.DiskUse(fi)
		if !ok {
			du.Bytes += bytes
			return nil
		}
		if !seen[key] {
			seen[key] = true
			du.Bytes += bytes
		}
		return nil
	})
	return du
}

func (st runnerStatus) text(w io.Writer) {
	runner := "not running"
	if st.Runner.Running {
		runner = fmt.Sprintf("running, pid %d, up %s", st.Runner.PID, (time.Duration(st.Runner.UptimeSeconds) * time.Second).String())
	}
	var by []string
	for _, s := range []core.Status{core.StatusRunning, core.StatusCreating, core.StatusPending} {
		if n := st.SessionsByStatus[string(s)]; n > 0 {
			by = append(by, fmt.Sprintf("%d %s", n, s))
		}
	}
	sessions := strconv.Itoa(st.ActiveSessions) + " active"
	if len(by) > 0 {
		sessions += " (" + strings.Join(by, ", ") + ")"
	}
	limit := func(d int64) string {
		if d == 0 {
			return "none"
		}
		return (time.Duration(d) * time.Second).String()
	}
	runs := "no limit"
	if st.Limits.MaxConcurrentRuns > 0 {
		runs = strconv.Itoa(st.Limits.MaxConcurrentRuns)
	}
	keyValues(w, [][2]string{
		{"runner", runner},
		{"sessions", sessions},
		{"queued messages", strconv.Itoa(st.QueuedMessages)},
		{"workspaces", fmt.Sprintf("%d, %s in %s", st.Workspaces.Count, humanBytes(st.Workspaces.Bytes), st.Workspaces.Path)},
		{"repository cache", fmt.Sprintf("%d, %s in %s", st.RepoCache.Count, humanBytes(st.RepoCache.Bytes), st.RepoCache.Path)},
		{"local runs at once", runs},
		{"stall, run timeout", limit(st.Limits.StallTimeoutSeconds) + ", " + limit(st.Limits.RunTimeoutSeconds)},
		{"workspace TTL", limit(st.Limits.WorkspaceTTLSeconds)},
	})
	if len(st.Agents) == 0 {
		return
	}
	fmt.Fprintln(w)
	rows := make([][]string, 0, len(st.Agents))
	for _, a := range st.Agents {
		found, version := "-", a.Version
		if a.Missing != "" {
			found = "not installed"
		} else {
			found = a.Path
		}
		if version == "" {
			version = "-"
		}
		rows = append(rows, []string{a.Name, version, found})
	}
	table(w, "AGENT\tVERSION\tPATH", rows)
}

// humanBytes writes a byte count in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
