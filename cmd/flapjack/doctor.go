package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tailscale/hujson"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/platform"
)

// minFreeBytes is the free space below which doctor warns: a clone and a
// few workspaces of a large repository need that much.
const minFreeBytes = 1 << 30

// check is one line of the doctor's report. Only checks that fail set Fix.
type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// doctorReport is what "flapjack doctor" prints.
type doctorReport struct {
	OK     bool    `json:"ok"`
	Checks []check `json:"checks"`
}

func newDoctorCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this machine for what flapjack needs, with a fix for each problem",
		Long: `Checks git, the agent CLIs and their versions, a Cursor API key for the cloud
runtime, the data directory's permissions, the runner and its log, free disk
space, and whether the editor configurations point at this binary. Exit status
0 when every check passes, 1 otherwise.`,
		Example: "  flapjack doctor\n  flapjack doctor -o json",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := newPrinter(output, g.stdout)
			if err != nil {
				return err
			}
			g.quietUnlessAsked()
			cfg, err := g.settings()
			if err != nil {
				return err
			}
			rep := runDoctor(cmd.Context(), g, cfg)
			if err := p.value(rep, func(w io.Writer) { rep.text(w) }); err != nil {
				return err
			}
			if !rep.OK {
				return exitError{code: exitFailed, msg: "some checks failed; see the fixes above"}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", os.Getenv("FLAPJACK_OUTPUT"), "output: text, json or jsonl (default text on a terminal, json otherwise; env FLAPJACK_OUTPUT)")
	return cmd
}

func (r doctorReport) text(w io.Writer) {
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "%s %-18s %s\n", mark, c.Name, safeText(c.Detail))
		if c.Fix != "" {
			fmt.Fprintf(w, "     %-18s fix: %s\n", "", safeText(c.Fix))
		}
	}
}

// runDoctor runs every check; none of them changes anything.
func runDoctor(ctx context.Context, g *globals, cfg settings) doctorReport {
	var checks []check
	add := func(c check) { checks = append(checks, c) }
	add(checkGit(ctx))
	checks = append(checks, checkAgents(ctx, g, cfg)...)
	add(checkCursorKey(cfg))
	checks = append(checks, checkDataDir(g.dataDir)...)
	add(checkRunner(g))
	add(checkDisk(g.dataDir))
	checks = append(checks, checkEditors()...)
	rep := doctorReport{OK: true, Checks: checks}
	for _, c := range checks {
		rep.OK = rep.OK && c.OK
	}
	return rep
}

func checkGit(ctx context.Context) check {
	out, err := exec.CommandContext(ctx, "git", "--version").Output()
	if err != nil {
		fix := "install git (https://git-scm.com/downloads)"
		switch runtime.GOOS {
		case "darwin":
			fix = "install git: xcode-select --install, or brew install git"
		case "linux":
			fix = "install git with your package manager, e.g. sudo apt-get install git"
		case "windows":
			fix = "install git: winget install Git.Git"
		}
		return check{Name: "git", Detail: "git not found on PATH", Fix: fix}
	}
	return check{Name: "git", OK: true, Detail: strings.TrimSpace(string(out))}
}

// checkAgents lists the agent CLIs. The one the local runtime is set to run
// must be there when local is the default runtime; the others are reported
// with how to install them.
func checkAgents(ctx context.Context, g *globals, cfg settings) []check {
	lr, err := newLocalRuntime(cfg, g.dataDir, nil, g.logger)
	if err != nil {
		return []check{{Name: "agents", Detail: err.Error(), Fix: "correct FLAPJACK_LOCAL_AGENT / FLAPJACK_LOCAL_AGENT_COMMAND"}}
	}
	var out []check
	for _, a := range lr.Agents(ctx) {
		c := check{Name: "agent " + a.Name, OK: true}
		switch {
		case a.Missing != "":
			c.Detail = "not installed"
			if install := installCommand(a.Missing); install != "" {
				c.Detail += "; " + install
			} else {
				c.Detail = a.Missing
			}
			if a.Name == cfg.LocalAgent && cfg.Runtime == core.RuntimeLocal {
				c.OK, c.Detail = false, "not installed, and FLAPJACK_LOCAL_AGENT="+a.Name+" runs it"
				c.Fix = a.Missing
			}
		default:
			c.Detail = strings.TrimSpace(a.Version + " " + a.Path)
			if a.Name == cfg.LocalAgent {
				c.Detail += " (the local runtime's agent)"
			}
		}
		out = append(out, c)
	}
	return out
}

// installCommand picks the install command out of a "not found" message.
func installCommand(missing string) string {
	if i := strings.Index(missing, "install "); i >= 0 {
		return strings.TrimSuffix(missing[i:], " (on the flapjack server)")
	}
	return ""
}

func checkCursorKey(cfg settings) check {
	switch n := len(cfg.CursorKey); {
	case n == 0 && cfg.Runtime != core.RuntimeCloud:
		return check{Name: "cursor key", OK: true, Detail: "CURSOR_API_KEY is not set; only the cloud runtime needs one (the default here is " + cfg.Runtime + ")"}
	case n == 0:
		return check{Name: "cursor key", Detail: "CURSOR_API_KEY is not set: cloud sessions need a key with each start",
			Fix: "create a key in Cursor (Settings > Cloud Agents > API keys) and set CURSOR_API_KEY in the editor's MCP entry (env) or your shell"}
	case n < 16:
		return check{Name: "cursor key", Detail: fmt.Sprintf("CURSOR_API_KEY is %d characters, too short to be a key", n),
			Fix: "set CURSOR_API_KEY to the whole key Cursor shows"}
	}
	return check{Name: "cursor key", OK: true, Detail: "CURSOR_API_KEY is set (not shown)"}
}

// checkDataDir checks that the data directory and database are private.
func checkDataDir(dir string) []check {
	fi, err := os.Stat(dir)
	if os.IsNotExist(err) {
		return []check{{Name: "data dir", OK: true, Detail: dir + " does not exist yet; it is made (mode 0700) on first use"}}
	}
	if err != nil {
		return []check{{Name: "data dir", Detail: err.Error(), Fix: "make " + dir + " readable by you"}}
	}
	out := []check{{Name: "data dir", OK: true, Detail: dir}}
	if runtime.GOOS == "windows" {
		return out // permissions are ACLs there, inherited from the profile directory
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		out[0] = check{Name: "data dir", Detail: fmt.Sprintf("%s is mode %04o: others can read it", dir, m), Fix: "chmod 700 " + dir}
	}
	db := filepath.Join(dir, "flapjack.db")
	if fi, err := os.Stat(db); err == nil {
		if m := fi.Mode().Perm(); m&0o077 != 0 {
			out = append(out, check{Name: "database", Detail: fmt.Sprintf("%s is mode %04o: others can read it", db, m), Fix: "chmod 600 " + db})
		} else {
			out = append(out, check{Name: "database", OK: true, Detail: fmt.Sprintf("%s (mode %04o)", db, m)})
		}
	}
	return out
}

// checkRunner reports the runner and the tail of its log. No runner is fine:
// one starts when there is work.
func checkRunner(g *globals) check {
	c := check{Name: "runner", OK: true}
	if b, alive := runnerAlive(g.dataDir); alive {
		c.Detail = fmt.Sprintf("running, pid %d, since %s", b.PID, b.Started.UTC().Format("2006-01-02 15:04:05Z"))
	} else {
		c.Detail = "not running (one starts when there is work)"
	}
	if tail := logTail(filepath.Join(g.dataDir, runnerLogFile), 5); tail != "" {
		c.Detail += "; last lines of " + runnerLogFile + ":\n" + g.redactor.String(tail)
	}
	return c
}

// logTail is the last n lines of a file, reading at most its last 64 KiB.
func logTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > 64<<10 {
		f.Seek(-64<<10, io.SeekEnd)
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

func checkDisk(dataDir string) check {
	dir := dataDir
	for {
		if _, err := os.Stat(dir); err == nil || filepath.Dir(dir) == dir {
			break
		}
		dir = filepath.Dir(dir)
	}
	free, err := platform.FreeSpace(dir)
	if err != nil {
		return check{Name: "disk", OK: true, Detail: "free space unknown: " + err.Error()}
	}
	ws := measure(filepath.Join(dataDir, "workspaces"), func(name string, dir bool) bool { return dir && !strings.HasPrefix(name, ".") })
	repos := measure(filepath.Join(dataDir, "repos"), func(name string, dir bool) bool {
		return dir && strings.HasSuffix(name, ".git") && !strings.HasPrefix(name, ".")
	})
	detail := fmt.Sprintf("%.1f GiB free for %s; workspaces %d (%.1f MiB), cached clones %d (%.1f MiB)",
		float64(free)/(1<<30), dataDir, ws.Count, float64(ws.Bytes)/(1<<20), repos.Count, float64(repos.Bytes)/(1<<20))
	if free < minFreeBytes {
		return check{Name: "disk", Detail: detail, Fix: "free some space, or archive finished local sessions (their workspaces are removed)"}
	}
	return check{Name: "disk", OK: true, Detail: detail}
}

// maxEditorConfig bounds an editor configuration doctor reads (Claude
// Code's ~/.claude.json grows with its history, but not to this).
const maxEditorConfig = 32 << 20

// editorConfig is where a client keeps its MCP servers.
type editorConfig struct {
	client string
	path   string
}

func editorConfigs() []editorConfig {
	home, _ := os.UserHomeDir()
	wd, _ := os.Getwd()
	return []editorConfig{
		{"Cursor", filepath.Join(home, ".cursor", "mcp.json")},
		{"Cursor (project)", filepath.Join(wd, ".cursor", "mcp.json")},
		{"Claude Code", filepath.Join(home, ".claude.json")},
		{"Claude Code (project)", filepath.Join(wd, ".mcp.json")},
		{"Codex", filepath.Join(home, ".codex", "config.toml")},
		{"VS Code (project)", filepath.Join(wd, ".vscode", "mcp.json")},
	}
}

// checkEditors finds each editor's flapjack entry and checks that the
// command it starts is this binary.
func checkEditors() []check {
	self, err := os.Executable()
	if err == nil {
		self, _ = filepath.EvalSymlinks(self)
	}
	var out []check
	for _, ec := range editorConfigs() {
		if fi, err := os.Stat(ec.path); err != nil || fi.Size() > maxEditorConfig {
			continue
		}
		raw, err := os.ReadFile(ec.path)
		if err != nil {
			continue
		}
		command, found := flapjackCommand(ec.path, raw)
		if !found {
			continue
		}
		c := check{Name: "editor", Detail: ec.client + " (" + ec.path + ") starts " + command}
		resolved, err := exec.LookPath(command)
		if err == nil {
			resolved, _ = filepath.EvalSymlinks(resolved)
		}
		switch {
		case err != nil:
			c.Detail += ", which is not found"
			c.Fix = "put flapjack on PATH (make install), or use its absolute path: " + self
		case resolved != self:
			c.Detail += " = " + resolved + ", not this binary (" + self + ")"
			c.Fix = "point the entry at " + self + ", or reinstall so both are the same"
		default:
			c.OK = true
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		out = append(out, check{Name: "editor", OK: true, Detail: "no editor configuration names a flapjack server yet; see the README's \"Use it from your editor\""})
	}
	return out
}

// tomlCommand finds command = "..." in a [mcp_servers.flapjack] table.
var tomlCommand = regexp.MustCompile(`(?ms)^\[mcp_servers\.flapjack\]\s*$.*?^command\s*=\s*"((?:[^"\\]|\\.)*)"`)

// flapjackCommand reads the command of the "flapjack" MCP server entry from
// a client's JSON (comments allowed) or TOML configuration.
func flapjackCommand(path string, raw []byte) (string, bool) {
	if strings.HasSuffix(path, ".toml") {
		m := tomlCommand.FindSubmatch(raw)
		if m == nil {
			return "", false
		}
		var s string
		if json.Unmarshal([]byte(`"`+string(m[1])+`"`), &s) != nil {
			return string(m[1]), true
		}
		return s, true
	}
	var doc struct {
		MCPServers map[string]struct {
			Command string `json:"command"`
		} `json:"mcpServers"`
		Servers map[string]struct {
			Command string `json:"command"`
		} `json:"servers"`
	}
	std, err := hujson.Standardize(raw) // comments and trailing commas allowed
	if err != nil || json.Unmarshal(std, &doc) != nil {
		return "", false
	}
	for _, m := range []map[string]struct {
		Command string `json:"command"`
	}{doc.MCPServers, doc.Servers} {
		if e, ok := m["flapjack"]; ok && e.Command != "" {
			return e.Command, true
		}
	}
	return "", false
}
