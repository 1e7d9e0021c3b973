package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tailscale/hujson"
)

// setupOptions are the flags of "flapjack setup".
type setupOptions struct {
	project bool
	env     []string
	dryRun  bool
}

func newSetupCmd(g *globals) *cobra.Command {
	var o setupOptions
	var global bool
	cmd := &cobra.Command{
		Use:   "setup cursor|claude|codex|vscode",
		Short: "Add flapjack to an editor's MCP servers, with this binary's absolute path",
		Long: `Writes the "flapjack" MCP server entry into the client's own configuration,
with the absolute path of this binary, so the editor finds it whatever its PATH:

  cursor   ~/.cursor/mcp.json (--project: .cursor/mcp.json)
  claude   "claude mcp add" when Claude Code is installed, else ~/.claude.json
           (--project: .mcp.json)
  codex    ~/.codex/config.toml
  vscode   .vscode/mcp.json (--global: the user's mcp.json)

What is there stays: other servers, other settings and comments. The file is
backed up to <file>.bak before it changes; running it again changes nothing.
No key is written unless you ask with --env CURSOR_API_KEY (stored in clear
text in that file); by default flapjack reads CURSOR_API_KEY from the
environment the editor starts it in.`,
		Example: "  flapjack setup cursor\n  flapjack setup vscode\n  flapjack setup claude --env CURSOR_API_KEY",
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if global && o.project {
				return usageError{errors.New("--global and --project exclude each other")}
			}
			if args[0] == "vscode" && !global {
				o.project = true
			}
			return runSetup(g, args[0], o)
		},
	}
	cmd.Flags().BoolVar(&o.project, "project", false, "write the project's configuration (in the current directory) instead of the user's")
	cmd.Flags().BoolVar(&global, "global", false, "write the user's configuration (the default, except for vscode)")
	cmd.Flags().StringArrayVar(&o.env, "env", nil, "also store this variable's current value in the entry (repeatable), e.g. CURSOR_API_KEY")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "print what would change, change nothing")
	return cmd
}

// setupEntry is the server entry to write.
type setupEntry struct {
	command string
	env     map[string]string
}

func runSetup(g *globals, client string, o setupOptions) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if resolved, err := filepath.EvalSymlinks(self); err == nil {
		self = resolved
	}
	entry := setupEntry{command: self, env: map[string]string{}}
	for _, name := range o.env {
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return usageError{fmt.Errorf("--env %s: it is not set in this environment", name)}
		}
		entry.env[name] = v
		g.redactor.Add(v) // --dry-run prints the file; a value asked for is still a secret there
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return err
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	var path string
	var change func([]byte) ([]byte, error)
	switch client {
	case "cursor":
		path = filepath.Join(home, ".cursor", "mcp.json")
		if o.project {
			path = filepath.Join(wd, ".cursor", "mcp.json")
		}
		change = jsonEntry("mcpServers", entry, false)
	case "claude":
		if bin, err := exec.LookPath("claude"); err == nil && !o.dryRun {
			return setupWithClaudeCLI(g, bin, entry, o)
		}
		path = filepath.Join(home, ".claude.json")
		if o.project {
			path = filepath.Join(wd, ".mcp.json")
		}
		change = jsonEntry("mcpServers", entry, true)
	case "codex":
		if o.project {
			return usageError{errors.New("codex reads its MCP servers from ~/.codex/config.toml only; run without --project")}
		}
		path = filepath.Join(home, ".codex", "config.toml")
		change = func(old []byte) ([]byte, error) { return tomlEntry(old, entry), nil }
	case "vscode":
		if o.project {
			path = filepath.Join(wd, ".vscode", "mcp.json")
		} else {
			dir, err := os.UserConfigDir()
			if err != nil {
				return err
			}
			path = filepath.Join(dir, "Code", "User", "mcp.json")
		}
		change = jsonEntry("servers", entry, true)
	default:
		return usageError{fmt.Errorf("%q: want cursor, claude, codex or vscode", client)}
	}
	return writeConfig(g, client, path, change, entry, o)
}

// writeConfig applies change to the file at path: nothing when it changes
// nothing, else a backup of the old file, then the new one written whole.
func writeConfig(g *globals, client, path string, change func([]byte) ([]byte, error), entry setupEntry, o setupOptions) error {
	old, err := os.ReadFile(path)
	exists := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	updated, err := change(old)
	if err != nil {
		return fmt.Errorf("%s: %w; fix the file or add the entry by hand", path, err)
	}
	if exists && bytes.Equal(old, updated) {
		fmt.Fprintf(g.stdout, "%s: %s already starts %s; nothing to do\n", client, path, entry.command)
		return nil
	}
	if o.dryRun {
		fmt.Fprintf(g.stdout, "%s: would write %s:\n%s", client, path, g.redactor.String(string(updated)))
		return nil
	}
	mode := os.FileMode(0o600)
	if exists {
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
		if err := os.WriteFile(path+".bak", old, mode); err != nil {
			return fmt.Errorf("backing up %s: %w", path, err)
		}
	} else if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := writeAtomic(path, updated, mode); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "%s: wrote the flapjack server (%s) to %s", client, entry.command, path)
	if exists {
		fmt.Fprintf(g.stdout, " (the old file is %s.bak)", path)
	}
	fmt.Fprintln(g.stdout)
	keyNote(g, entry, path)
	return nil
}

// keyNote says where the Cursor key comes from.
func keyNote(g *globals, entry setupEntry, path string) {
	if _, ok := entry.env["CURSOR_API_KEY"]; ok {
		fmt.Fprintf(g.stdout, "CURSOR_API_KEY is stored in %s in clear text; keep that file private.\n", path)
		return
	}
	fmt.Fprintln(g.stdout, "No key was written: cloud sessions use CURSOR_API_KEY from the environment the editor starts flapjack in, or the key given with each start. Re-run with --env CURSOR_API_KEY to store it in the entry.")
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// jsonEntry sets key.flapjack in a JSON-with-comments document, keeping all
// else, comments and layout included (hujson edits the document's syntax
// tree in place). stdio adds "type": "stdio" (VS Code, Claude Code).
func jsonEntry(key string, e setupEntry, stdio bool) func([]byte) ([]byte, error) {
	return func(old []byte) ([]byte, error) {
		fresh := len(bytes.TrimSpace(old)) == 0
		if fresh {
			old = []byte("{}")
		}
		v, err := hujson.Parse(old)
		if err != nil {
			return nil, err
		}
		want := map[string]any{"command": e.command, "args": []string{}}
		if stdio {
			want["type"] = "stdio"
		}
		if len(e.env) > 0 {
			want["env"] = e.env
		}
		ptr := "/" + key + "/flapjack"
		if cur := v.Find(ptr); cur != nil {
			var have map[string]any
			raw, _ := hujson.Standardize(cur.Pack())
			if json.Unmarshal(raw, &have) == nil && sameEntry(have, want) {
				return old, nil
			}
		}
		var ops []map[string]any
		addedKey := v.Find("/"+key) == nil
		if addedKey {
			ops = append(ops, map[string]any{"op": "add", "path": "/" + key, "value": map[string]any{}})
		}
		ops = append(ops, map[string]any{"op": "add", "path": ptr, "value": want})
		patch, err := json.Marshal(ops)
		if err != nil {
			return nil, err
		}
		if err := v.Patch(patch); err != nil {
			return nil, err
		}
		if fresh {
			v.Format()
		} else {
			outer := ""
			if addedKey {
				outer = indentLast(&v, "", "")
			} else if p := v.Find("/" + key); p != nil {
				// The key's own line tells its indent.
				outer = keyIndent(v, key)
			}
			indentLast(&v, "/"+key, outer)
		}
		return v.Pack(), nil
	}
}

// indentLast puts the member a patch appended to the object at ptr on a
// line of its own, indented like the member before it (or, when it is the
// only one, two spaces more than outer): hujson appends it right after the
// preceding comma. Comments before it stay. It returns the indent used.
func indentLast(v *hujson.Value, ptr, outer string) string {
	parent := v.Find(ptr)
	if parent == nil {
		return outer
	}
	obj, ok := parent.Value.(*hujson.Object)
	if !ok || len(obj.Members) == 0 {
		return outer
	}
	indent := outer + "  "
	if n := len(obj.Members); n > 1 {
		prev := string(obj.Members[n-2].Name.BeforeExtra)
		if i := strings.LastIndexByte(prev, '\n'); i >= 0 {
			indent = prev[i+1:]
		}
	}
	v.UpdateOffsets()
	packed := v.Pack()
	last := &obj.Members[len(obj.Members)-1]
	kept := strings.TrimRight(string(last.Name.BeforeExtra), " \t")
	at := last.Name.StartOffset - len(last.Name.BeforeExtra)
	if !strings.HasSuffix(kept, "\n") && !(kept == "" && at > 0 && packed[at-1] == '\n') {
		kept += "\n"
	}
	last.Name.BeforeExtra = hujson.Extra(kept + indent)
	last.Value.BeforeExtra = hujson.Extra(" ")
	if !bytes.Contains(obj.AfterExtra, []byte("\n")) {
		obj.AfterExtra = hujson.Extra("\n" + outer)
	}
	return indent
}

// keyIndent is the indent of the root member key.
func keyIndent(v hujson.Value, key string) string {
	obj, ok := v.Value.(*hujson.Object)
	if !ok {
		return ""
	}
	for _, m := range obj.Members {
		var name string
		if json.Unmarshal(m.Name.Value.(hujson.Literal), &name) == nil && name == key {
			b := string(m.Name.BeforeExtra)
			if i := strings.LastIndexByte(b, '\n'); i >= 0 {
				return b[i+1:]
			}
		}
	}
	return ""
}

// sameEntry compares an entry as JSON values.
func sameEntry(have, want map[string]any) bool {
	a, _ := json.Marshal(have)
	b, _ := json.Marshal(want)
	var x, y any
	json.Unmarshal(a, &x)
	json.Unmarshal(b, &y)
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// tomlTable finds the [mcp_servers.flapjack] table: its header up to the
// next table header or the end.
var tomlTable = regexp.MustCompile(`(?m)^\[mcp_servers\.flapjack\][^\n]*\n(?:[^\[\n][^\n]*\n|\n)*`)

// tomlEntry replaces (or appends) the [mcp_servers.flapjack] table in a
// Codex config, leaving every other line as it was.
func tomlEntry(old []byte, e setupEntry) []byte {
	var b strings.Builder
	b.WriteString("[mcp_servers.flapjack]\n")
	b.WriteString("command = " + strconv.Quote(e.command) + "\n")
	b.WriteString("args = []\n")
	if len(e.env) > 0 {
		names := make([]string, 0, len(e.env))
		for k := range e.env {
			names = append(names, k)
		}
		slices.Sort(names)
		parts := make([]string, len(names))
		for i, k := range names {
			parts[i] = k + " = " + strconv.Quote(e.env[k])
		}
		b.WriteString("env = { " + strings.Join(parts, ", ") + " }\n")
	}
	table := b.String()
	text := string(old)
	if !strings.HasSuffix(text, "\n") && text != "" {
		text += "\n"
	}
	if loc := tomlTable.FindStringIndex(text); loc != nil {
		existing := text[loc[0]:loc[1]]
		if strings.TrimRight(existing, "\n") == strings.TrimRight(table, "\n") {
			return old
		}
		// Keep the blank lines that separated it from what follows.
		trail := existing[len(strings.TrimRight(existing, "\n"))+1:]
		return []byte(text[:loc[0]] + table + trail + text[loc[1]:])
	}
	if text != "" {
		text += "\n"
	}
	return []byte(text + table)
}

// setupWithClaudeCLI adds the server through Claude Code's own command, which
// knows where its configuration lives.
func setupWithClaudeCLI(g *globals, bin string, e setupEntry, o setupOptions) error {
	scope := "user"
	if o.project {
		scope = "project"
	}
	if out, err := exec.Command(bin, "mcp", "get", "flapjack").CombinedOutput(); err == nil && bytes.Contains(out, []byte(e.command)) && len(e.env) == 0 {
		fmt.Fprintf(g.stdout, "claude: Claude Code already starts %s; nothing to do\n", e.command)
		return nil
	}
	// A changed entry is replaced: claude mcp add refuses a name in use.
	_ = exec.Command(bin, "mcp", "remove", "--scope", scope, "flapjack").Run()
	args := []string{"mcp", "add", "--scope", scope}
	names := make([]string, 0, len(e.env))
	for k := range e.env {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		args = append(args, "-e", k+"="+e.env[k])
	}
	args = append(args, "flapjack", "--", e.command)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("claude mcp add: %v: %s", err, g.redactor.String(strings.TrimSpace(string(out))))
	}
	fmt.Fprintf(g.stdout, "claude: added the flapjack server (%s) with claude mcp add --scope %s\n", e.command, scope)
	keyNote(g, e, "Claude Code's configuration")
	return nil
}
