//go:build unix

package local

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/coretest"
)

// claudeACPWant is what Zed's Claude adapter ends in when it is told to skip
// permissions: as root (CI), its refusal explained; otherwise the missing
// login.
func claudeACPWant() []string {
	if os.Geteuid() == 0 {
		return []string{"refuses to run as root", "IS_SANDBOX=1"}
	}
	return []string{"session/prompt failed: Authentication required"}
}

// TestRealACPAdaptersHandshake drives Zed's ACP adapters for Claude Code and
// Codex (pinned npm packages) with no network and no credentials: initialize
// must succeed, and the session must get as far as authentication, never fail
// on the protocol; the session's error says what is missing.
func TestRealACPAdaptersHandshake(t *testing.T) {
	for _, tc := range []struct {
		name, agent, bin string
		env              []string
		// want are words the session's error must hold.
		want []string
	}{
		{"codex", AgentCodexACP, "codex-acp", nil, []string{"session/new failed: Authentication required"}},
		// By default the agent sees no IS_SANDBOX (not on the allowlist), and
		// the adapter asks for permissions rather than skipping them.
		{"claude", AgentClaudeACP, "claude-code-acp", nil, []string{"session/prompt failed: Authentication required"}},
		// Any IS_SANDBOX makes the adapter skip permissions, which Claude Code
		// refuses as root unless it is 1; the error says what to do.
		{"claude, IS_SANDBOX=yes", AgentClaudeACP, "claude-code-acp", []string{"IS_SANDBOX=yes"}, claudeACPWant()},
		{"claude, IS_SANDBOX=1", AgentClaudeACP, "claude-code-acp", []string{"IS_SANDBOX=1"}, []string{"session/prompt failed: Authentication required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pass []string
			for _, kv := range tc.env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
				pass = append(pass, k) // as FLAPJACK_AGENT_ENV would
			}
			bin := coretest.NPMBin(t, tc.bin)
			home := t.TempDir()
			t.Setenv("HOME", home)
			t.Setenv("CODEX_HOME", filepath.Join(home, ".codex"))
			os.MkdirAll(filepath.Join(home, ".codex"), 0o700)
			h := newHarness(t, plainOrigin(t), nil, "/bin/true")
			rt, err := New(Config{WorkspaceRoot: filepath.Join(t.TempDir(), "workspaces"), Agent: tc.agent,
				SearchPath: filepath.Dir(bin) + string(os.PathListSeparator) + os.Getenv("PATH"), KillGrace: time.Second, Sessions: h.st, AgentEnv: pass})
			if err != nil {
				t.Fatal(err)
			}
			h.rt = rt
			h.svc = core.NewService(core.ServiceConfig{Store: h.st, Box: h.box, Runtimes: map[string]core.Runtime{core.RuntimeLocal: rt}, DefaultRuntime: core.RuntimeLocal})
			h.run(t, core.RunnerConfig{})
			id := h.start(t, "Say hello")
			d := h.wait(t, id, core.StatusError)
			msg := ""
			if d.Messages[0].Error != nil {
				msg = *d.Messages[0].Error
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			if strings.Contains(msg, "initialize failed") {
				t.Errorf("the handshake failed at initialize: %s", msg)
			}
		})
	}
}
