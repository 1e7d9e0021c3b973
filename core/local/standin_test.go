//go:build unix

package local

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// padBytes is how long @@PAD@@ makes a transcript line: over 1 MiB.
const padBytes = 1<<20 + 100_000

// hostedRepo is a bare repository standing for a hosted one (see TestMain):
// main holds README.md and old.txt.
type hostedRepo struct {
	url  string // as a user gives it
	bare string // where git really goes
	main string // main's commit
}

// newHostedRepo makes a repository under root (fakeGitHubRoot or
// fakeOtherRoot) reached as https://HOST/OWNER/NAME.git.
func newHostedRepo(t *testing.T, root, host, owner string) hostedRepo {
	t.Helper()
	name := "w" + strings.TrimPrefix(core.NewID("x"), "x-")
	bare := filepath.Join(root, owner, name+".git")
	if err := os.MkdirAll(filepath.Dir(bare), 0o755); err != nil {
		t.Fatal(err)
	}
	git(t, filepath.Dir(bare), "init", "-q", "--bare", "-b", "main", bare)
	work := t.TempDir()
	git(t, work, "init", "-q", "-b", "main")
	writeFile(t, filepath.Join(work, "README.md"), "hello\n")
	writeFile(t, filepath.Join(work, "old.txt"), "old\n")
	git(t, work, "add", "-A")
	git(t, work, "commit", "-q", "-m", "initial")
	git(t, work, "push", "-q", bare, "main")
	return hostedRepo{url: "https://" + host + "/" + owner + "/" + name + ".git", bare: bare, main: git(t, work, "rev-parse", "HEAD")}
}

// branch returns the commit of a branch in the hosted repository, "" if none.
func (h hostedRepo) branch(t *testing.T, name string) string {
	t.Helper()
	out, _ := gitOut(h.bare, "rev-parse", "--verify", "--quiet", "refs/heads/"+name)
	return out
}

// gitOut runs git in dir and returns trimmed stdout and the error.
func gitOut(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}

// transcript copies testdata/transcripts/AGENT/NAME.* into a temporary
// directory, with @@WS@@ replaced by ws and @@PAD@@ by padBytes of text, and
// returns the copy of NAME.jsonl.
func transcript(t *testing.T, agent, name, ws string, pad int) string {
	t.Helper()
	src := filepath.Join("..", "..", "testdata", "transcripts", agent)
	matches, err := filepath.Glob(filepath.Join(src, name+".*"))
	if err != nil || len(matches) == 0 {
		t.Fatalf("no transcript %s/%s", agent, name)
	}
	dir := t.TempDir()
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(m, ".jsonl") {
			b = bytes.ReplaceAll(b, []byte("@@WS@@"), []byte(ws))
			b = bytes.ReplaceAll(b, []byte("@@PAD@@"), bytes.Repeat([]byte("x"), pad))
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(m)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, name+".jsonl")
}

// standIn installs exe in bin: a script that runs testdata/agents/replay.sh
// with the transcript, logging its calls to logDir.
func standIn(t *testing.T, bin, exe, logDir, transcriptPath string) string {
	t.Helper()
	replay, err := filepath.Abs("../../testdata/agents/replay.sh")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(bin, exe)
	script := "#!/bin/sh\nexec '" + replay + "' '" + logDir + "' '" + transcriptPath + "' \"$@\"\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// call is how the stand-in was called the n-th time.
type call struct {
	argv      []string
	stdin     string
	cursorKey string
}

func readCall(t *testing.T, logDir string, n int) call {
	t.Helper()
	suffix := "." + strconv.Itoa(n)
	raw, err := os.ReadFile(filepath.Join(logDir, "argv"+suffix))
	if err != nil {
		t.Fatalf("the stand-in was not called %d times: %v", n, err)
	}
	argv := strings.Split(string(raw), "\x00")
	argv = argv[:len(argv)-1]
	stdin, _ := os.ReadFile(filepath.Join(logDir, "stdin"+suffix))
	key, _ := os.ReadFile(filepath.Join(logDir, "cursor-key"+suffix))
	return call{argv: argv, stdin: string(stdin), cursorKey: string(key)}
}

// agentRuntime is a Runtime for a CLI agent found in bin, talking to a
// GitHub API at api (none when "").
func agentRuntime(t *testing.T, agent, bin, api, token string) *Runtime {
	t.Helper()
	r, err := New(Config{
		WorkspaceRoot: filepath.Join(t.TempDir(), "workspaces"),
		Agent:         agent,
		SearchPath:    bin,
		KillGrace:     300 * time.Millisecond,
		Clock:         fixedClock{},
		GitHubAPIURL:  api,
		GitHubToken:   token,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// followUp is the next message of spec's session.
func followUp(spec core.RunSpec, prompt string) core.RunSpec {
	f := spec
	f.FollowUp = true
	f.Message = core.Message{ID: core.NewID(core.PrefixMessage), Prompt: prompt, Role: "user"}
	f.Prompt = prompt
	f.RunID = core.NewID(core.PrefixRun)
	return f
}
