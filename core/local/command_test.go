//go:build unix

package local

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "cursor-agent", want: []string{"cursor-agent"}},
		{in: "  a  b\tc\n", want: []string{"a", "b", "c"}},
		{in: `/opt/my agent/run.sh`, want: []string{"/opt/my", "agent/run.sh"}},
		{in: `'/opt/my agent/run.sh' --flag`, want: []string{"/opt/my agent/run.sh", "--flag"}},
		{in: `"/opt/my agent/run.sh" -p`, want: []string{"/opt/my agent/run.sh", "-p"}},
		{in: `/opt/my\ agent/run.sh`, want: []string{"/opt/my agent/run.sh"}},
		{in: `a'b c'd`, want: []string{"ab cd"}},
		{in: `'it''s'`, want: []string{"its"}},
		{in: `"say \"hi\" \\ \$HOME \a"`, want: []string{`say "hi" \ $HOME \a`}},
		{in: `'no $expansion or \escapes'`, want: []string{`no $expansion or \escapes`}},
		{in: `$HOME ~ *`, want: []string{"$HOME", "~", "*"}},
		{in: `a '' b ""`, want: []string{"a", "", "b", ""}},
		{in: "a \\\nb", want: []string{"a", "b"}},
		{in: `"x\` + "\n" + `y"`, want: []string{"xy"}},
		{in: `héllo wörld`, want: []string{"héllo", "wörld"}},
		{in: "", wantErr: true},
		{in: "   ", wantErr: true},
		{in: `'open`, wantErr: true},
		{in: `"open`, wantErr: true},
		{in: `"open\"`, wantErr: true},
		{in: `trailing\`, wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseCommand(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseCommand(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseCommand(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if _, err := New(Config{WorkspaceRoot: root, Agent: "aider", Command: []string{"x"}}); err == nil || !strings.Contains(err.Error(), "available: cursor-agent, claude, codex, exec") {
		t.Errorf("unknown agent: error = %v, want one listing the available agents", err)
	}
	if _, err := New(Config{WorkspaceRoot: root, Agent: AgentExec, Command: []string{""}}); err == nil {
		t.Error("exec with an empty command: no error")
	}
	// Without a command the server starts, and runs say what is missing.
	r, err := New(Config{WorkspaceRoot: root, Agent: AgentExec})
	if err != nil {
		t.Fatal(err)
	}
	spec := newSpec("/nowhere", "main", "p")
	if err := r.prepare(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "FLAPJACK_LOCAL_AGENT_COMMAND") {
		t.Errorf("Prepare without a command: %v", err)
	}
	if _, err := New(Config{Agent: AgentExec, Command: []string{"x"}}); err == nil {
		t.Error("no workspace root: no error")
	}
	r, err = New(Config{WorkspaceRoot: root, Agent: AgentExec, Command: []string{"bin/agent", "-p"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Name() != "local" || r.NeedsCursorKey() || !r.AllowsLocalRepos() {
		t.Errorf("Name, NeedsCursorKey, AllowsLocalRepos = %q, %v, %v; want local, false, true", r.Name(), r.NeedsCursorKey(), r.AllowsLocalRepos())
	}
	if !strings.HasPrefix(r.command[0], "/") || !strings.HasSuffix(r.command[0], "/bin/agent") {
		t.Errorf("relative command path not made absolute: %q", r.command[0])
	}
	if r.killGrace != DefaultKillGrace {
		t.Errorf("kill grace = %v, want %v", r.killGrace, DefaultKillGrace)
	}
	r, err = New(Config{WorkspaceRoot: root, Agent: AgentExec, Command: []string{"cursor-agent"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.command[0] != "cursor-agent" {
		t.Errorf("command looked up in PATH was changed to %q", r.command[0])
	}
}

func TestReady(t *testing.T) {
	rt, err := New(Config{WorkspaceRoot: t.TempDir(), Agent: AgentExec})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Ready(); err == nil || !strings.Contains(err.Error(), "FLAPJACK_LOCAL_AGENT_COMMAND") {
		t.Errorf("Ready without a command = %v, want an error naming FLAPJACK_LOCAL_AGENT_COMMAND", err)
	}
	rt, err = New(Config{WorkspaceRoot: t.TempDir(), Agent: AgentExec, Command: []string{"/bin/true"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Ready(); err != nil {
		t.Errorf("Ready with a command = %v", err)
	}
}
