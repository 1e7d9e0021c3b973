//go:build unix

package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core/coretest"
)

// TestMCPOverHTTPWithTheTypeScriptSDK: the official TypeScript SDK's
// Streamable HTTP client runs a session over `flapjack serve`'s /mcp while a
// detached runner executes it: the 13 tools, a subscription that gets one
// resources/updated per status change, progress during a waiting events
// call, 401 without a token and NOT_FOUND for another org's session.
func TestMCPOverHTTPWithTheTypeScriptSDK(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is needed for the TypeScript SDK: ", err)
	}
	sdkDir := filepath.Join(coretest.NPMModules(t), "@modelcontextprotocol", "sdk")
	dataDir := newDataDir(t)
	repo := makeRepo(t)
	gate := filepath.Join(t.TempDir(), "gate")
	agent := writeAgent(t, `
prompt=$(cat)
case "$prompt" in
*gate*) while [ ! -e '`+gate+`' ]; do sleep 0.05; done ;;
esac
echo "did: $prompt"
`)
	env := []string{"FLAPJACK_DATA_DIR=" + dataDir, "FLAPJACK_RUNTIME=local", "FLAPJACK_LOCAL_AGENT=exec", "FLAPJACK_LOCAL_AGENT_COMMAND=" + agent}
	// A detached runner holds the data directory; serve only reads and writes
	// the database, so the notifications must come from its changes.
	runner := exec.Command(flapjackBin, "runner", "--idle-timeout", "2m")
	runner.Env = append(os.Environ(), env...)
	if err := runner.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { runner.Process.Kill(); runner.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for held, _ := runnerUp(dataDir); !held; held, _ = runnerUp(dataDir) {
		if time.Now().After(deadline) {
			t.Fatal("the detached runner never took the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := startServe(t, dataDir, env[1:])
	token := tokenRE.FindString(s.stderr.String())
	fjcli(t, dataDir, "org", "create", "other")
	other := tokenRE.FindString(fjcli(t, dataDir, "user", "create", "mallory", "--org", "other", "--token"))
	if token == "" || other == "" {
		t.Fatalf("tokens: %q %q", token, other)
	}

	cmd := exec.Command(node, filepath.Join("..", "..", "testdata", "mcp", "http-client.mjs"), sdkDir, s.url, token, other, repo, gate)
	cmd.Stderr = os.Stderr
	outb, err := cmd.Output()
	if err != nil {
		t.Fatalf("client: %v\n%s", err, outb)
	}
	var out struct {
		Error              string
		AnonymousStatus    int
		AnonymousChallenge string
		Tools              []string
		FirstStatus        string
		FinalStatus        string
		Progress           []string
		SessionUpdates     int
		StatusChanges      int
		ResourceID         string
		Listed             []string
		OtherError         string
		OtherRead          string
	}
	if err := json.Unmarshal(outb, &out); err != nil {
		t.Fatalf("client output: %v\n%s", err, outb)
	}
	if out.Error != "" {
		t.Fatalf("client failed: %s", out.Error)
	}
	if out.AnonymousStatus != http.StatusUnauthorized || out.AnonymousChallenge != "Bearer" {
		t.Errorf("without a token: %d %q, want 401 with WWW-Authenticate: Bearer", out.AnonymousStatus, out.AnonymousChallenge)
	}
	if len(out.Tools) != 13 || !slices.Contains(out.Tools, "flapjack_start_code_session") {
		t.Errorf("tools = %v", out.Tools)
	}
	if out.FirstStatus != "finished" || out.FinalStatus != "finished" {
		t.Errorf("runs ended %s and %s, want finished", out.FirstStatus, out.FinalStatus)
	}
	if out.StatusChanges != 3 || out.SessionUpdates != out.StatusChanges {
		t.Errorf("%d resources/updated for %d status changes, want one each (creating, running, finished)", out.SessionUpdates, out.StatusChanges)
	}
	if len(out.Progress) < 2 || !strings.Contains(out.Progress[0], "running") && !strings.Contains(out.Progress[0], "creating") {
		t.Errorf("progress during a 6 s wait = %q, want at least 2 naming the status", out.Progress)
	}
	if out.ResourceID == "" || len(out.Listed) == 0 || out.Listed[0] != "flapjack://sessions/"+out.ResourceID {
		t.Errorf("resource %q, listed %v", out.ResourceID, out.Listed)
	}
	if !strings.HasPrefix(out.OtherError, "NOT_FOUND") || out.OtherRead == "allowed" {
		t.Errorf("another org's token: tool %q, read %q; want NOT_FOUND and a refused read", out.OtherError, out.OtherRead)
	}
}

// TestMCPInspectorOverHTTP: the MCP Inspector's CLI, with --transport http
// and the token header, lists the 13 tools from `flapjack serve`.
func TestMCPInspectorOverHTTP(t *testing.T) {
	inspector := coretest.NPMBin(t, "mcp-inspector")
	dataDir := newDataDir(t)
	s := startServe(t, dataDir, nil)
	token := tokenRE.FindString(s.stderr.String())
	cmd := exec.Command(inspector, "--cli", s.url+"/mcp", "--transport", "http", "--header", "Authorization: Bearer "+token, "--method", "tools/list")
	outb, err := cmd.Output()
	if err != nil {
		t.Fatalf("inspector: %v\n%s", err, outb)
	}
	var list struct {
		Tools []struct{ Name string } `json:"tools"`
	}
	if err := json.Unmarshal(outb, &list); err != nil || len(list.Tools) != 13 {
		t.Fatalf("inspector listed %d tools (%v):\n%s", len(list.Tools), err, outb)
	}
	// Without the header it is refused.
	if out, err := exec.Command(inspector, "--cli", s.url+"/mcp", "--transport", "http", "--method", "tools/list").CombinedOutput(); err == nil {
		t.Errorf("inspector without a token succeeded:\n%s", out)
	}
}
