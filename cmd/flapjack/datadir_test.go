//go:build unix

package main

import (
	"encoding/base64"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// TestWrongMasterKeyRefusesToStart: a database made with one master key is
// refused, with a message saying so, by a process started with another.
func TestWrongMasterKeyRefusesToStart(t *testing.T) {
	dataDir := newDataDir(t)
	keyA := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("a", 32)))
	keyB := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("b", 32)))
	run := func(key string) (string, error) {
		cmd := exec.Command(flapjackBin, "agents", "list", "-o", "json")
		cmd.Env = append(os.Environ(), "FLAPJACK_DATA_DIR="+dataDir, "FLAPJACK_MASTER_KEY="+key)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(keyA); err != nil {
		t.Fatalf("first use: %v\n%s", err, out)
	}
	out, err := run(keyB)
	if err == nil || !strings.Contains(out, "not the one this database was made with") || !strings.Contains(out, "FLAPJACK_MASTER_KEY") {
		t.Errorf("another key: %v\n%s", err, out)
	}
	if strings.Contains(out, keyB) || strings.Contains(out, keyA) {
		t.Errorf("the message shows a key:\n%s", out)
	}
	if out, err := run(keyA); err != nil {
		t.Errorf("the right key after a refusal: %v\n%s", err, out)
	}
}

// TestDataDirectoryIsPrivate: after a real session, the data directory is
// 0700 and every file flapjack made in it is 0600 (database, WAL, SHM, key,
// lock, runner log); a directory others could read is tightened.
func TestDataDirectoryIsPrivate(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes are Unix's")
	}
	dataDir := newDataDir(t)
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dataDir, 0o755)
	s := startServer(t, dataDir, "FLAPJACK_LOCAL_AGENT_COMMAND="+writeAgent(t, "echo done\n"))
	var ag struct{ ID string }
	s.call(t, "flapjack_create_code_agent", map[string]any{"defaultRepoUrl": makeRepo(t), "runtime": "local"}, &ag)
	var st struct {
		SessionID string `json:"session_id"`
	}
	if e := s.call(t, "flapjack_start_code_session", map[string]any{"codeAgentId": ag.ID, "prompt": "go", "cursorApiKey": "crsr_modes_0123456789abc"}, &st); e != "" {
		t.Fatal(e)
	}
	s.waitTerminal(t, st.SessionID, 0)
	info, err := os.Stat(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode %v, want 0700", info.Mode().Perm())
	}
	seen := map[string]bool{}
	entries, _ := os.ReadDir(dataDir)
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		seen[e.Name()] = true
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
	for _, want := range []string{"flapjack.db", "flapjack.db-wal", "flapjack.db-shm", "master.key"} {
		if !seen[want] {
			t.Errorf("no %s in the data directory (saw %v)", want, seen)
		}
	}
	if !strings.Contains(s.stderr.String(), "readable by others") {
		t.Errorf("no warning about tightening the data directory:\n%s", s.stderr.String())
	}
}
