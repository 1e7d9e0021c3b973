//go:build unix

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// doctorEnv is a PATH holding git only (no agent CLI) and an empty HOME.
func doctorEnv(t *testing.T) (path, home string) {
	t.Helper()
	git, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	path, home = t.TempDir(), t.TempDir()
	if err := os.Symlink(git, filepath.Join(path, "git")); err != nil {
		t.Fatal(err)
	}
	return path, home
}

func runDoctorCLI(t *testing.T, c *cli) (doctorReport, result) {
	t.Helper()
	r := c.run("", "doctor", "-o", "json")
	var rep doctorReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("doctor -o json: %v\n%+v", err, r)
	}
	return rep, r
}

func findCheck(rep doctorReport, name string) (check, bool) {
	for _, c := range rep.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return check{}, false
}

// TestDoctorReportsAMissingAgentWithItsInstallCommand: the local runtime's
// agent CLI missing fails with the command that installs it, a cloud
// default without a key fails with where to get one, and the exit status
// is 1; secrets never show.
func TestDoctorReportsAMissingAgentWithItsInstallCommand(t *testing.T) {
	path, home := doctorEnv(t)
	c := newCLI(t, "PATH="+path, "HOME="+home, "FLAPJACK_LOCAL_AGENT=claude")
	rep, r := runDoctorCLI(t, c)
	if r.code != 1 || rep.OK {
		t.Errorf("exit %d, ok %v; want 1, false", r.code, rep.OK)
	}
	claude, ok := findCheck(rep, "agent claude")
	if !ok || claude.OK || !strings.Contains(claude.Fix, "npm install -g @anthropic-ai/claude-code") {
		t.Errorf("claude check %+v: want a failure with its npm install command", claude)
	}
	if g, _ := findCheck(rep, "git"); !g.OK || !strings.HasPrefix(g.Detail, "git version") {
		t.Errorf("git check %+v", g)
	}
	if codex, _ := findCheck(rep, "agent codex"); !codex.OK || !strings.Contains(codex.Detail, "npm install -g @openai/codex") {
		t.Errorf("codex check %+v: not needed here, but its install command is named", codex)
	}
}

// TestDoctorPassesAndChecksTheEditorEntry: with what it needs in place,
// doctor exits 0; an editor entry pointing at another binary fails with the
// path to use instead.
func TestDoctorPassesAndChecksTheEditorEntry(t *testing.T) {
	path, home := doctorEnv(t)
	const key = "cursor-key-for-doctor-0123456789"
	c := newCLI(t, "PATH="+path, "HOME="+home, "FLAPJACK_LOCAL_AGENT_COMMAND="+writeAgent(t, streamAgent), "CURSOR_API_KEY="+key)
	c.ok("agents", "list") // makes the data directory
	self, _ := filepath.EvalSymlinks(flapjackBin)
	cursor := filepath.Join(home, ".cursor", "mcp.json")
	os.MkdirAll(filepath.Dir(cursor), 0o700)
	write := func(command string) {
		t.Helper()
		body := `{
  // flapjack, set up by hand
  "mcpServers": {
    "other": {"command": "other-server"},
    "flapjack": {"command": ` + strconvQuote(command) + `,},
  },
}`
		if err := os.WriteFile(cursor, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(self)
	rep, r := runDoctorCLI(t, c)
	if r.code != 0 || !rep.OK {
		t.Fatalf("exit %d: %s", r.code, r.stdout)
	}
	if ed, _ := findCheck(rep, "editor"); !ed.OK || !strings.Contains(ed.Detail, cursor) {
		t.Errorf("editor check %+v: want the Cursor entry found and passing", ed)
	}
	if strings.Contains(r.stdout+r.stderr, key) {
		t.Error("doctor printed the Cursor key")
	}

	write("/opt/elsewhere/flapjack")
	rep, r = runDoctorCLI(t, c)
	ed, _ := findCheck(rep, "editor")
	if r.code != 1 || ed.OK || !strings.Contains(ed.Fix, self) {
		t.Errorf("exit %d, editor check %+v: want a failure naming this binary", r.code, ed)
	}
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestFlapjackCommandFromConfigs(t *testing.T) {
	for _, tc := range []struct {
		path, body, want string
		found            bool
	}{
		{"mcp.json", `{"mcpServers":{"flapjack":{"command":"/usr/bin/flapjack"}}}`, "/usr/bin/flapjack", true},
		{"mcp.json", "{\"servers\":{\"flapjack\":{\"type\":\"stdio\",\"command\":\"flapjack\",},},} // vs code\n", "flapjack", true},
		{"mcp.json", `{"mcpServers":{"other":{"command":"x"}}}`, "", false},
		{"mcp.json", `{"mcpServers":{"flapjack":{"command":"a//b /*c*/"}}}`, "a//b /*c*/", true},
		{"config.toml", "# codex\n[mcp_servers.other]\ncommand = \"x\"\n\n[mcp_servers.flapjack]\nargs = []\ncommand = \"C:\\\\bin\\\\flapjack.exe\"\n", `C:\bin\flapjack.exe`, true},
		{"config.toml", "[mcp_servers.other]\ncommand = \"x\"\n", "", false},
	} {
		got, found := flapjackCommand(tc.path, []byte(tc.body))
		if got != tc.want || found != tc.found {
			t.Errorf("%s %q = %q, %v; want %q, %v", tc.path, tc.body, got, found, tc.want, tc.found)
		}
	}
}
