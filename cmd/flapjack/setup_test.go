//go:build unix

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tailscale/hujson"
)

// setupCLI runs flapjack with HOME at a temporary directory, in dir, with a
// PATH of git and what extra holds.
func setupCLI(t *testing.T, home, dir, extraPath string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(flapjackBin, args...)
	cmd.Dir = dir
	path := "/usr/bin:/bin"
	if extraPath != "" {
		path = extraPath + ":" + path
	}
	cmd.Env = append([]string{"HOME=" + home, "PATH=" + path, "FLAPJACK_DATA_DIR=" + filepath.Join(home, "data"), "XDG_CONFIG_HOME=" + filepath.Join(home, ".config")}, env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// serverCommand reads key.flapjack.command (and the other server names) from
// a JSON-with-comments file.
func serverCommand(t *testing.T, path, key string) (string, map[string]any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	std, err := hujson.Standardize(raw)
	if err != nil {
		t.Fatalf("%s is no longer valid: %v\n%s", path, err, raw)
	}
	var doc map[string]any
	if err := json.Unmarshal(std, &doc); err != nil {
		t.Fatal(err)
	}
	servers, _ := doc[key].(map[string]any)
	fj, _ := servers["flapjack"].(map[string]any)
	cmd, _ := fj["command"].(string)
	return cmd, doc
}

func selfPath(t *testing.T) string {
	t.Helper()
	p, err := filepath.EvalSymlinks(flapjackBin)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSetupKeepsWhatIsThere: for Cursor, Claude Code (without its CLI) and
// VS Code, setup adds the entry with this binary's absolute path to files
// that already hold other servers, settings and comments, keeps all of it,
// writes a backup, stores no key, and a second run changes nothing.
func TestSetupKeepsWhatIsThere(t *testing.T) {
	const key = "cursor-key-never-written-0123456789"
	for _, tc := range []struct {
		client, rel, key, before string
		project                  bool
	}{
		{"cursor", ".cursor/mcp.json", "mcpServers", "{\n  // my servers\n  \"mcpServers\": {\n    \"other\": {\"command\": \"other-server\"}, // keep me\n  },\n  \"theme\": \"dark\",\n}\n", false},
		{"claude", ".claude.json", "mcpServers", `{"numStartups": 3, "mcpServers": {"other": {"type": "stdio", "command": "other-server"}}}`, false},
		{"vscode", ".vscode/mcp.json", "servers", "{\n\t// VS Code\n\t\"servers\": {\n\t\t\"other\": {\"type\": \"http\", \"url\": \"https://example.com/mcp\"},\n\t},\n}\n", true},
	} {
		t.Run(tc.client, func(t *testing.T) {
			home := t.TempDir()
			dir := home
			if tc.project {
				dir = t.TempDir()
			}
			path := filepath.Join(dir, tc.rel)
			os.MkdirAll(filepath.Dir(path), 0o700)
			if err := os.WriteFile(path, []byte(tc.before), 0o600); err != nil {
				t.Fatal(err)
			}
			r := setupCLI(t, home, dir, "", []string{"CURSOR_API_KEY=" + key}, "setup", tc.client)
			if r.code != 0 || !strings.Contains(r.stdout, path) {
				t.Fatalf("setup %s: %+v", tc.client, r)
			}
			cmd, doc := serverCommand(t, path, tc.key)
			if cmd != selfPath(t) {
				t.Errorf("flapjack command %q, want %q", cmd, selfPath(t))
			}
			if servers, _ := doc[tc.key].(map[string]any); servers["other"] == nil {
				t.Errorf("the other server is gone: %v", doc)
			}
			after, _ := os.ReadFile(path)
			for _, kept := range []string{"// my servers", "// keep me", `"theme"`, `"numStartups"`, "// VS Code"} {
				if strings.Contains(tc.before, kept) && !strings.Contains(string(after), kept) {
					t.Errorf("%q was lost:\n%s", kept, after)
				}
			}
			if strings.Contains(string(after), key) {
				t.Error("the Cursor key was written without --env")
			}
			if bak, _ := os.ReadFile(path + ".bak"); string(bak) != tc.before {
				t.Errorf("backup %q, want the old file", bak)
			}
			r = setupCLI(t, home, dir, "", nil, "setup", tc.client)
			again, _ := os.ReadFile(path)
			if r.code != 0 || !strings.Contains(r.stdout, "nothing to do") || string(again) != string(after) {
				t.Errorf("second run: %+v; file changed %v", r, string(again) != string(after))
			}
		})
	}
}

// TestSetupCodexTOML: the Codex table is added once, replaced in place when
// it points elsewhere, and every other line stays; --env stores the key.
func TestSetupCodexTOML(t *testing.T) {
	home := t.TempDir()
	path := filepath.Join(home, ".codex", "config.toml")
	os.MkdirAll(filepath.Dir(path), 0o700)
	before := "# my codex\nmodel = \"o3\"\n\n[mcp_servers.flapjack]\ncommand = \"/old/flapjack\"\n\n[profiles.fast]\nmodel = \"mini\" # fast\n"
	os.WriteFile(path, []byte(before), 0o600)
	const key = "cursor-key-for-codex-0123456789ab"
	r := setupCLI(t, home, home, "", []string{"CURSOR_API_KEY=" + key}, "setup", "codex", "--env", "CURSOR_API_KEY")
	if r.code != 0 {
		t.Fatalf("setup codex: %+v", r)
	}
	got, _ := os.ReadFile(path)
	want := "# my codex\nmodel = \"o3\"\n\n[mcp_servers.flapjack]\ncommand = \"" + selfPath(t) + "\"\nargs = []\nenv = { CURSOR_API_KEY = \"" + key + "\" }\n\n[profiles.fast]\nmodel = \"mini\" # fast\n"
	if string(got) != want {
		t.Errorf("config.toml:\n%s\nwant:\n%s", got, want)
	}
	if strings.Contains(r.stdout+r.stderr, key) {
		t.Error("the key was printed")
	}
	r = setupCLI(t, home, home, "", []string{"CURSOR_API_KEY=" + key}, "setup", "codex", "--env", "CURSOR_API_KEY")
	if again, _ := os.ReadFile(path); !strings.Contains(r.stdout, "nothing to do") || string(again) != want {
		t.Errorf("second run: %+v", r)
	}
}

// TestSetupClaudeThroughItsCLI: with Claude Code installed, setup asks its
// own CLI to add the server, with the absolute path and the user scope.
func TestSetupClaudeThroughItsCLI(t *testing.T) {
	home, bin := t.TempDir(), t.TempDir()
	log := filepath.Join(home, "claude-argv")
	script := "#!/bin/sh\necho \"$@\" >> " + log + "\n[ \"$2\" = get ] && exit 1\nexit 0\n"
	if err := os.WriteFile(filepath.Join(bin, "claude"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := setupCLI(t, home, home, bin, nil, "setup", "claude")
	if r.code != 0 {
		t.Fatalf("setup claude: %+v", r)
	}
	argv, _ := os.ReadFile(log)
	if !strings.Contains(string(argv), "mcp add --scope user flapjack -- "+selfPath(t)+"\n") {
		t.Errorf("claude was called with:\n%s", argv)
	}
	if _, err := os.Stat(filepath.Join(home, ".claude.json")); err == nil {
		t.Error("setup wrote ~/.claude.json although claude mcp add did it")
	}
}

// TestSetupThenDoctor: what setup writes is what doctor checks for.
func TestSetupThenDoctor(t *testing.T) {
	home := t.TempDir()
	if r := setupCLI(t, home, home, "", nil, "setup", "cursor"); r.code != 0 {
		t.Fatalf("setup: %+v", r)
	}
	r := setupCLI(t, home, home, "", nil, "doctor", "-o", "json")
	var rep doctorReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("doctor: %v %+v", err, r)
	}
	ed, _ := findCheck(rep, "editor")
	if !ed.OK || !strings.Contains(ed.Detail, filepath.Join(home, ".cursor", "mcp.json")) {
		t.Errorf("doctor's editor check after setup: %+v", ed)
	}
}

// TestSetupDryRunHidesValues: --dry-run shows the file it would write, with
// the values --env asked for hidden, and writes nothing.
func TestSetupDryRunHidesValues(t *testing.T) {
	home := t.TempDir()
	const secret = "my-private-token-0123456789abcdef"
	r := setupCLI(t, home, home, "", []string{"MY_TOKEN=" + secret}, "setup", "cursor", "--env", "MY_TOKEN", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "would write") || !strings.Contains(r.stdout, "MY_TOKEN") {
		t.Fatalf("dry run: %+v", r)
	}
	if strings.Contains(r.stdout+r.stderr, secret) {
		t.Error("the dry run printed the value")
	}
	if _, err := os.Stat(filepath.Join(home, ".cursor", "mcp.json")); err == nil {
		t.Error("the dry run wrote the file")
	}
}
