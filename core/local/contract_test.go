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
	"github.com/flapjack-dev/flapjack/core/coretest"
)

// argumentErrors are what a CLI prints when it refuses its command line.
func argumentErrors() []string {
	return []string{"unexpected argument", "unknown option", "unrecognized option", "error: unknown", "Usage:", "invalid value"}
}

// TestRealCLIContracts runs flapjack's exact command lines, for a first run
// and a follow-up that resumes the CLI's own conversation, against the real
// claude and codex CLIs (pinned in testdata/npm; `make agents-check` runs the
// newest) with no network and no credentials. Each run must get past
// argument parsing: claude answers that it is not logged in, codex starts
// and retries the network, so its first output is the sign of life and the
// run is cancelled (cancel on a real CLI). Never an unknown-option error.
func TestRealCLIContracts(t *testing.T) {
	for _, tc := range []struct {
		agent string
		// alive is true when the CLI keeps running without a network: the
		// run is cancelled at its first output.
		alive bool
		// want is what the first run's error must say.
		want string
	}{
		{AgentClaude, false, "Not logged in"},
		{AgentCodex, true, "cancelled"},
	} {
		t.Run(tc.agent, func(t *testing.T) {
			bin := coretest.NPMBin(t, tc.agent)
			home := t.TempDir()
			t.Setenv("HOME", home)
			t.Setenv("CODEX_HOME", filepath.Join(home, ".codex"))
			if err := os.MkdirAll(filepath.Join(home, ".codex"), 0o700); err != nil {
				t.Fatal(err)
			}
			o := makeOrigin(t)
			r, err := New(Config{WorkspaceRoot: filepath.Join(t.TempDir(), "workspaces"), Agent: tc.agent,
				SearchPath: filepath.Dir(bin) + string(os.PathListSeparator) + os.Getenv("PATH"), KillGrace: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			spec := newSpec(o.dir, "main", "Say hello")
			if err := r.prepare(context.Background(), spec); err != nil {
				t.Fatal(err)
			}
			run := func(spec core.RunSpec, want string) {
				t.Helper()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				sink := newSink(t)
				if tc.alive {
					// Its sign of life: an event past its start-up warnings on
					// stderr (the thread it started).
					go func() {
						deadline := time.Now().Add(60 * time.Second)
						for time.Now().Before(deadline) {
							for _, e := range sink.all() {
								if e.Type != core.EventStderr && e.Type != core.EventAgent {
									cancel()
									return
								}
							}
							time.Sleep(20 * time.Millisecond)
						}
						cancel()
					}()
				}
				out, err := r.Execute(ctx, spec, sink)
				if err != nil {
					t.Fatal(err)
				}
				var text strings.Builder
				for _, e := range sink.all() {
					text.Write(e.Payload)
					text.WriteByte('\n')
				}
				all := text.String() + out.Error
				for _, bad := range argumentErrors() {
					if strings.Contains(all, bad) {
						t.Errorf("the CLI refused its command line (%q):\n%s", bad, all)
					}
				}
				if out.Status != core.MessageError || !strings.Contains(out.Error, want) {
					t.Errorf("outcome %s %q, want an error saying %q; events:\n%s", out.Status, out.Error, want, text.String())
				}
			}
			run(spec, tc.want)
			ws, _ := r.workspace(spec.Session.ID)
			st, err := openState(ws)
			if err != nil {
				t.Fatal(err)
			}
			if st.get().CLISession == "" {
				t.Fatalf("%s reported no conversation id, so the follow-up would not resume", tc.agent)
			}
			follow := spec
			follow.FollowUp = true
			follow.Message.ID = core.NewID(core.PrefixMessage)
			follow.Prompt = "And again"
			// codex resumes a conversation whose first turn never reached
			// the network; it may refuse that after parsing its arguments,
			// which is all this checks.
			want := tc.want
			if tc.alive {
				want = ""
			}
			run(follow, want)
		})
	}
}
