package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/flapjack-dev/flapjack/core"
)

// Fallback identity for commits in a workspace whose git has no user.email.
const (
	fallbackName  = "flapjack"
	fallbackEmail = "flapjack@localhost"
)

// gitWaitDelay bounds how long a killed git may hold its pipes (an ssh child).
const gitWaitDelay = 5 * time.Second

// commitTimeout bounds the commit after a run; it runs even when the run's
// context is cancelled, so work is never stranded.
const commitTimeout = 2 * time.Minute

// gitError is a failed git command. Its text is client-safe: the subcommand
// and an excerpt of git's stderr (its last lines, secrets and URL
// credentials hidden), never the environment.
type gitError struct {
	sub      string
	exitCode int
	last     string
	err      error
}

func (e *gitError) Error() string {
	if e.last != "" {
		sep := " "
		if strings.Contains(e.last, "\n") {
			sep = "\n"
		}
		return "git " + e.sub + " failed:" + sep + e.last
	}
	if e.exitCode > 0 {
		return fmt.Sprintf("git %s failed with status %d", e.sub, e.exitCode)
	}
	return "git " + e.sub + " failed: " + e.err.Error()
}

func (e *gitError) Unwrap() error { return e.err }

// gitRun is one git invocation.
type gitRun struct {
	dir   string
	args  []string
	env   []string // added to the base environment
	stdin string
}

// git runs git with the protections every call needs: ext:: transports off,
// no terminal prompts, stdin from g.stdin. Hooks and fsmonitor are off too:
// the agent can write the workspace's .git/config and hooks, and must not get
// the runner to run a command for it. It returns trimmed stdout.
func (r *Runtime) git(ctx context.Context, g gitRun) (string, error) {
	args := append([]string{"-c", "protocol.ext.allow=never", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false"}, g.args...)
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = g.dir
	// By allowlist: nothing that redirects git (GIT_DIR...), no key, no
	// flapjack setting reaches git or what it runs.
	cmd.Env = append(append(gitPolicy().filter(os.Environ()), "GIT_TERMINAL_PROMPT=0"), g.env...)
	cmd.Stdin = strings.NewReader(g.stdin)
	cmd.WaitDelay = gitWaitDelay
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	sub := ""
	if len(g.args) > 0 {
		sub = g.args[0]
	}
	if err := cmd.Run(); err != nil {
		ge := &gitError{sub: sub, exitCode: -1, last: stderrExcerpt(stderr.String(), r.redactor), err: err}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			ge.exitCode = ee.ExitCode()
		}
		if ctx.Err() != nil {
			ge.last, ge.err = "", ctx.Err()
		}
		r.log.DebugContext(ctx, "git failed", "dir", g.dir, "sub", sub, "exit", ge.exitCode, "stderr", ge.last)
		return "", ge
	}
	return strings.TrimRight(stdout.String(), "\n"), nil
}

// exitCode returns the exit status of a failed git, -1 for other failures.
func exitCode(err error) int {
	var ge *gitError
	if errors.As(err, &ge) {
		return ge.exitCode
	}
	return -1
}

// Bounds of the git stderr excerpt in an error.
const (
	excerptLines = 8
	excerptBytes = 1500
)

// stderrExcerpt is what a user needs of git's stderr to see what went wrong:
// its last non-blank lines (git prints the cause before the summary), valid
// UTF-8, bounded, with secrets and the credentials of URLs hidden.
func stderrExcerpt(s string, red *core.Redactor) string {
	var lines []string
	for _, l := range strings.Split(strings.ToValidUTF8(s, "\uFFFD"), "\n") {
		// hint: lines are advice about git itself, not what went wrong.
		if l = strings.TrimSpace(strings.TrimRight(l, "\r")); l != "" && !strings.HasPrefix(l, "hint:") {
			lines = append(lines, hideURLCredentials(l))
		}
	}
	if len(lines) > excerptLines {
		lines = append([]string{"…"}, lines[len(lines)-excerptLines:]...)
	}
	out := red.String(strings.Join(lines, "\n"))
	if len(out) > excerptBytes {
		cut := len(out) - excerptBytes
		for cut < len(out) && !utf8.RuneStart(out[cut]) {
			cut++
		}
		out = "…" + out[cut:]
	}
	return out
}

// hideURLCredentials replaces the user:password of URLs in s.
func hideURLCredentials(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "://")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+3])
		s = s[i+3:]
		end := strings.IndexAny(s, "/ \t'\"")
		if end < 0 {
			end = len(s)
		}
		if at := strings.LastIndexByte(s[:end], '@'); at >= 0 {
			b.WriteString("***@")
			s = s[at+1:]
		}
	}
}

// truncateRunes cuts s to at most n bytes at a rune boundary.
func truncateRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// head returns the workspace's HEAD commit.
func (r *Runtime) head(ctx context.Context, ws string) (string, error) {
	return r.git(ctx, gitRun{dir: ws, args: []string{"rev-parse", "--verify", "--quiet", "HEAD^{commit}"}})
}

// commitAll commits every change in the workspace on its current branch, with
// the message's first line as subject. It reports whether it made a commit.
func (r *Runtime) commitAll(ctx context.Context, ws string, spec core.RunSpec) (bool, error) {
	if _, err := r.git(ctx, gitRun{dir: ws, args: []string{"add", "-A"}}); err != nil {
		return false, err
	}
	_, err := r.git(ctx, gitRun{dir: ws, args: []string{"diff", "--cached", "--quiet", "--exit-code"}})
	if err == nil {
		return false, nil // nothing staged
	}
	if exitCode(err) != 1 {
		return false, err
	}
	var env []string
	if email, _ := r.git(ctx, gitRun{dir: ws, args: []string{"config", "user.email"}}); strings.TrimSpace(email) == "" {
		env = []string{
			"GIT_AUTHOR_NAME=" + fallbackName, "GIT_AUTHOR_EMAIL=" + fallbackEmail,
			"GIT_COMMITTER_NAME=" + fallbackName, "GIT_COMMITTER_EMAIL=" + fallbackEmail,
		}
	}
	msg := commitSubject(spec) + "\n\nflapjack session " + spec.Session.ID + ", message " + spec.Message.ID + "\n"
	// No hooks and no signing: a hook or a pinentry must not keep the work
	// uncommitted in a runner nobody watches.
	_, err = r.git(ctx, gitRun{dir: ws, env: env, stdin: msg,
		args: []string{"-c", "commit.gpgsign=false", "commit", "--quiet", "--no-verify", "--file=-"}})
	if err != nil {
		return false, err
	}
	return true, nil
}

// commitSubject is the first non-blank line of the message's prompt, at most 72
// characters.
func commitSubject(spec core.RunSpec) string {
	first := ""
	for _, line := range strings.Split(spec.Message.Prompt, "\n") {
		if first = strings.TrimSpace(line); first != "" {
			break
		}
	}
	first = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(first, "\uFFFD"))
	if first == "" {
		return "flapjack session " + spec.Session.ID
	}
	if utf8.RuneCountInString(first) > 72 {
		first = strings.TrimSpace(string([]rune(first)[:72]))
	}
	return first
}

// fileChange is one path of a file_edit event.
type fileChange struct {
	Path    string `json:"path"`
	Status  string `json:"status"`
	OldPath string `json:"old_path,omitempty"`
}

// fileEdit is the payload of a file_edit event.
type fileEdit struct {
	Commit string       `json:"commit"`
	Branch string       `json:"branch"`
	Files  []fileChange `json:"files"`
}

// changes lists the paths that differ between two commits.
func (r *Runtime) changes(ctx context.Context, ws, before, after string) ([]fileChange, error) {
	out, err := r.git(ctx, gitRun{dir: ws, args: []string{"diff", "--no-ext-diff", "--name-status", "-z", "-M", before, after, "--"}})
	if err != nil {
		return nil, err
	}
	return parseNameStatus(out), nil
}

// parseNameStatus reads `git diff --name-status -z`: a status, then one path,
// or two (old, new) for renames and copies.
func parseNameStatus(out string) []fileChange {
	fields := strings.Split(strings.TrimRight(out, "\x00"), "\x00")
	files := []fileChange{}
	for i := 0; i < len(fields); i++ {
		st := fields[i]
		if st == "" || i+1 >= len(fields) {
			continue
		}
		fc := fileChange{Status: statusWord(st[0])}
		if (st[0] == 'R' || st[0] == 'C') && i+2 < len(fields) {
			fc.OldPath, fc.Path = fields[i+1], fields[i+2]
			i += 2
		} else {
			fc.Path = fields[i+1]
			i++
		}
		fc.Path = strings.ToValidUTF8(fc.Path, "\uFFFD")
		fc.OldPath = strings.ToValidUTF8(fc.OldPath, "\uFFFD")
		files = append(files, fc)
	}
	return files
}

// statusWord spells out git's one-letter change status.
func statusWord(c byte) string {
	switch c {
	case 'A':
		return "added"
	case 'M':
		return "modified"
	case 'D':
		return "deleted"
	case 'R':
		return "renamed"
	case 'C':
		return "copied"
	case 'T':
		return "type_changed"
	case 'U':
		return "unmerged"
	}
	return "unknown"
}

// currentBranch returns the branch HEAD is on, "" when detached.
func (r *Runtime) currentBranch(ctx context.Context, ws string) string {
	b, err := r.git(ctx, gitRun{dir: ws, args: []string{"symbolic-ref", "--quiet", "--short", "HEAD"}})
	if err != nil {
		return ""
	}
	return b
}

// workspaceExists reports whether Prepare has made the session's workspace.
func workspaceExists(ws string) (bool, error) {
	fi, err := os.Stat(ws)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return fi.IsDir(), nil
}
