//go:build unix

package main

import (
	"encoding/json"
	"os/exec"
	"reflect"
	"slices"
	"strings"
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

// TestMCPInspectorPassesTypedArguments: the Inspector's CLI turns
// --tool-arg key=value pairs into numbers, booleans and objects by the input
// schema's types, so a user can call every tool from the command line.
func TestMCPInspectorPassesTypedArguments(t *testing.T) {
	inspector := coretest.NPMBin(t, "mcp-inspector")
	c := newCLI(t, "FLAPJACK_LOCAL_AGENT_COMMAND="+writeAgent(t, streamAgent))
	dataDir := strings.TrimPrefix(c.env[0], "FLAPJACK_DATA_DIR=")
	call := func(tool string, args ...string) map[string]any {
		t.Helper()
		// The Inspector gives the server only the variables named with -e.
		argv := []string{"--cli"}
		for _, kv := range c.env {
			argv = append(argv, "-e", kv)
		}
		argv = append(argv, flapjackBin, "--data-dir", dataDir, "--method", "tools/call", "--tool-name", tool, "--tool-arg")
		argv = append(argv, args...)
		cmd := exec.Command(inspector, argv...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", tool, args, err, out)
		}
		var res struct {
			IsError           bool `json:"isError"`
			Content           []struct{ Text string }
			StructuredContent map[string]any `json:"structuredContent"`
		}
		if err := json.Unmarshal(out, &res); err != nil || res.IsError {
			t.Fatalf("%s %v: %v %s", tool, args, err, out)
		}
		return res.StructuredContent
	}
	agent := call("flapjack_create_code_agent", "defaultRepoUrl="+makeRepo(t), "runtime=local",
		"autoCreatePR=false", `modelParams={"effort":2}`)
	if agent["auto_create_pr"] != false || !reflect.DeepEqual(agent["model_params"], map[string]any{"effort": float64(2)}) {
		t.Errorf("agent %v: want auto_create_pr false and model_params {effort: 2}", agent)
	}
	started := call("flapjack_start_code_session", "codeAgentId="+agent["id"].(string), "prompt=quick")
	sid := started["session_id"].(string)
	events := call("flapjack_list_code_session_events", "codeSessionId="+sid, "since=1", "limit=2", "waitSeconds=5")
	list, _ := events["events"].([]any)
	if len(list) == 0 || len(list) > 2 {
		t.Fatalf("events since 1, limit 2: %v", events)
	}
	if seq := list[0].(map[string]any)["seq"]; seq != float64(2) {
		t.Errorf("first event after since=1 has seq %v, want 2", seq)
	}
	sessions := call("flapjack_list_code_sessions", "archived=false")
	if got, _ := sessions["code_sessions"].([]any); len(got) != 1 {
		t.Errorf("sessions (archived=false): %v", sessions)
	}
}
