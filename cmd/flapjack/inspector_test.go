//go:build unix

package main

import (
	"encoding/json"
	"os/exec"
	"slices"
	"testing"

	"github.com/flapjack-dev/flapjack/core/coretest"
)

// TestMCPInspectorListsTheTools: the MCP Inspector's CLI (a client nobody
// here wrote, pinned in testdata/npm) connects to the real binary over stdio
// and finds exactly the 13 tools.
func TestMCPInspectorListsTheTools(t *testing.T) {
	inspector := coretest.NPMBin(t, "mcp-inspector")
	out, err := exec.Command(inspector, "--cli", flapjackBin, "--data-dir", newDataDir(t), "--method", "tools/list").Output()
	if err != nil {
		t.Fatalf("inspector: %v\n%s", err, out)
	}
	var list struct {
		Tools []struct{ Name string } `json:"tools"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("inspector output: %v\n%s", err, out)
	}
	var names []string
	for _, tl := range list.Tools {
		names = append(names, tl.Name)
	}
	slices.Sort(names)
	want := []string{"flapjack_archive_code_session", "flapjack_cancel_code_session", "flapjack_create_code_agent",
		"flapjack_delete_code_agent", "flapjack_get_code_agent", "flapjack_get_code_session", "flapjack_list_code_agents",
		"flapjack_list_code_session_events", "flapjack_list_code_sessions", "flapjack_send_code_session_message",
		"flapjack_start_code_session", "flapjack_update_code_agent", "flapjack_update_code_session"}
	if !slices.Equal(want, names) {
		t.Errorf("tools = %v, want %v", names, want)
	}
}
