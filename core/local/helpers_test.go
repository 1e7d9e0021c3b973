//go:build unix

package local

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/platform"
)

// TestMain keeps the machine's git configuration out of the tests: no global
// identity, so the fallback identity is what commits get.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flapjack-local-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("GIT_CONFIG_GLOBAL", filepath.Join(dir, "gitconfig"))
	os.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	// Repositories "on GitHub" (and one other host) are bare repositories on
	// disk: git's insteadOf maps the URLs a user would give onto them, so
	// owner and repository come from the URL as given while git fetches and
	// pushes locally, which is also how a user's insteadOf keeps working.
	fakeGitHubRoot = filepath.Join(dir, "github")
	fakeOtherRoot = filepath.Join(dir, "gitlab")
	cfg := fmt.Sprintf("[url \"file://%[1]s/\"]\n\tinsteadOf = https://github.com/\n\tinsteadOf = git@github.com:\n\tinsteadOf = ssh://git@github.com/\n"+
		"[url \"file://%[2]s/\"]\n\tinsteadOf = https://gitlab.example.com/\n", fakeGitHubRoot, fakeOtherRoot)
	if err := os.WriteFile(filepath.Join(dir, "gitconfig"), []byte(cfg), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var testT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeGitHubRoot holds the bare repositories https://github.com/OWNER/REPO
// stands for in tests (see TestMain); fakeOtherRoot those of
// https://gitlab.example.com/. Set once, before any test runs.
var fakeGitHubRoot, fakeOtherRoot string

type fixedClock struct{}

func (fixedClock) Now() time.Time { return testT0 }

// testAgent is the path of testdata/agents/test-agent.sh.
func testAgent(t testing.TB) string {
	t.Helper()
	p, err := filepath.Abs("../../testdata/agents/test-agent.sh")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// newRuntime makes a Runtime with the test agent and a short kill grace.
func newRuntime(t testing.TB, command ...string) *Runtime {
	t.Helper()
	return newRuntimeWith(t, func(*Config) {}, command...)
}

// newRuntimeWith is newRuntime with its Config changed by set.
func newRuntimeWith(t testing.TB, set func(*Config), command ...string) *Runtime {
	t.Helper()
	if len(command) == 0 {
		command = []string{testAgent(t)}
	}
	cfg := Config{
		WorkspaceRoot: filepath.Join(t.TempDir(), "workspaces"),
		Agent:         AgentExec,
		Command:       command,
		KillGrace:     300 * time.Millisecond,
		Clock:         fixedClock{},
	}
	set(&cfg)
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// git runs git in dir with a fixed identity and returns trimmed stdout.
func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=tester", "GIT_AUTHOR_EMAIL=tester@example.com",
		"GIT_COMMITTER_NAME=tester", "GIT_COMMITTER_EMAIL=tester@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// origin is a test repository: main (two commits), feature (branched from the
// first), and tag v1 on the first commit.
type origin struct {
	dir                  string
	first, main, feature string
}

func makeOrigin(t testing.TB) origin {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "origin repo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "init", "-q", "-b", "main")
	writeFile(t, filepath.Join(dir, "README.md"), "hello\n")
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-q", "-m", "initial")
	o := origin{dir: dir, first: git(t, dir, "rev-parse", "HEAD")}
	git(t, dir, "tag", "v1")
	git(t, dir, "checkout", "-q", "-b", "feature")
	writeFile(t, filepath.Join(dir, "feature.txt"), "feature\n")
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-q", "-m", "feature work")
	o.feature = git(t, dir, "rev-parse", "HEAD")
	git(t, dir, "checkout", "-q", "main")
	writeFile(t, filepath.Join(dir, "main.txt"), "main\n")
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-q", "-m", "main two")
	o.main = git(t, dir, "rev-parse", "HEAD")
	return o
}

// newSpec is a first run of a new session on repo at ref.
func newSpec(repo, ref, prompt string) core.RunSpec {
	return core.RunSpec{
		Session: core.Session{ID: core.NewID(core.PrefixSession), RepoURL: repo, StartingRef: ref, ModelID: "test-model", Runtime: core.RuntimeLocal},
		Message: core.Message{ID: core.NewID(core.PrefixMessage), Prompt: prompt, Role: "user"},
		RunID:   core.NewID(core.PrefixRun),
		Prompt:  prompt,
	}
}

// prepared makes an origin, a runtime and a prepared session on main.
func prepared(t *testing.T, prompt string) (*Runtime, core.RunSpec, string) {
	t.Helper()
	o := makeOrigin(t)
	r := newRuntime(t)
	spec := newSpec(o.dir, "main", prompt)
	if err := r.prepare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	return r, spec, filepath.Join(r.root, spec.Session.ID)
}

// fakeSink records a run's events and handle; safe for concurrent use. Every
// process group it was told about is killed when the test ends.
type fakeSink struct {
	mu        sync.Mutex
	events    []core.EventInput
	handles   []string
	handleErr error
}

func newSink(t *testing.T) *fakeSink {
	s := &fakeSink{}
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, h := range s.handles {
			killGroup(h)
		}
	})
	return s
}

func (s *fakeSink) Emit(e core.EventInput) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
}

func (s *fakeSink) SetHandle(_ context.Context, h string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handles = append(s.handles, h)
	return s.handleErr
}

func (s *fakeSink) handle() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.handles) == 0 {
		return ""
	}
	return s.handles[len(s.handles)-1]
}

func (s *fakeSink) all() []core.EventInput {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]core.EventInput(nil), s.events...)
}

// payloads returns the decoded payloads of the events of one type.
func (s *fakeSink) payloads(t *testing.T, typ core.EventType) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, e := range s.all() {
		if e.Type != typ {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(e.Payload, &m); err != nil {
			t.Fatalf("payload of %s: %v", typ, err)
		}
		out = append(out, m)
	}
	return out
}

// lines returns the "line" of every stdout (or stderr) event.
func (s *fakeSink) lines(t *testing.T, typ core.EventType) []string {
	t.Helper()
	var out []string
	for _, p := range s.payloads(t, typ) {
		out = append(out, p["line"].(string))
	}
	return out
}

// killGroup kills a test's process group, whatever happened to the test.
func killGroup(handle string) {
	if h, ok := parseHandle(handle); ok && platform.SafeGroup(h.PID) {
		_ = platform.StopGroup(h.PID, true)
	}
}

// running reports whether pid is a process that has not exited.
func running(pid int) bool {
	_, ok := platform.Identify(pid)
	return ok
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// childPid waits for the agent's "child <pid>" line and returns the pid.
func childPid(t *testing.T, s *fakeSink) int {
	t.Helper()
	var pid int
	eventually(t, "the agent's child pid", func() bool {
		for _, l := range s.lines(t, core.EventStdout) {
			if _, err := fmt.Sscanf(l, "child %d", &pid); err == nil {
				return true
			}
		}
		return false
	})
	return pid
}
