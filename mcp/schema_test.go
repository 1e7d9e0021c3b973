package mcp_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// specTools are the tool names of the spec.
var specTools = []string{
	"flapjack_list_code_agents",
	"flapjack_get_code_agent",
	"flapjack_create_code_agent",
	"flapjack_update_code_agent",
	"flapjack_delete_code_agent",
	"flapjack_list_code_sessions",
	"flapjack_get_code_session",
	"flapjack_start_code_session",
	"flapjack_update_code_session",
	"flapjack_send_code_session_message",
	"flapjack_list_code_session_events",
	"flapjack_cancel_code_session",
	"flapjack_archive_code_session",
}

// listToolsRaw returns each tool of tools/list as the bytes on the wire.
func listToolsRaw(t *testing.T) map[string]json.RawMessage {
	t.Helper()
	e := newEnv(t)
	if _, err := e.client.ListTools(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	var page struct {
		Tools      []json.RawMessage `json:"tools"`
		NextCursor string            `json:"nextCursor"`
	}
	if err := json.Unmarshal(e.capture.last(), &page); err != nil {
		t.Fatal(err)
	}
	if page.NextCursor != "" {
		t.Fatal("tools/list is paginated; this test reads one page")
	}
	tools := map[string]json.RawMessage{}
	for _, raw := range page.Tools {
		var head struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			t.Fatal(err)
		}
		tools[head.Name] = raw
	}
	return tools
}

func TestToolNames(t *testing.T) {
	tools := listToolsRaw(t)
	var got []string
	for name := range tools {
		got = append(got, name)
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(specTools))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tool names (-want +got):\n%s", diff)
	}
}

// TestToolDefinitions checks on the raw tools/list JSON that every tool has a
// title, a description, all four annotation hints, an output schema, and a
// closed input schema whose every property is described.
func TestToolDefinitions(t *testing.T) {
	for name, raw := range listToolsRaw(t) {
		t.Run(name, func(t *testing.T) {
			var def struct {
				Title        string                     `json:"title"`
				Description  string                     `json:"description"`
				Annotations  map[string]json.RawMessage `json:"annotations"`
				InputSchema  map[string]json.RawMessage `json:"inputSchema"`
				OutputSchema map[string]json.RawMessage `json:"outputSchema"`
			}
			if err := json.Unmarshal(raw, &def); err != nil {
				t.Fatal(err)
			}
			if def.Title == "" {
				t.Error("no title")
			}
			if def.Description == "" {
				t.Error("no description")
			}
			for _, h := range []string{"readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"} {
				v, ok := def.Annotations[h]
				if !ok {
					t.Errorf("annotation %s missing", h)
				} else if s := string(v); s != "true" && s != "false" {
					t.Errorf("annotation %s = %s, want a boolean", h, s)
				}
			}
			if len(def.OutputSchema) == 0 {
				t.Error("no output schema")
			} else if string(def.OutputSchema["type"]) != `"object"` {
				t.Errorf("output schema type = %s, want \"object\"", def.OutputSchema["type"])
			}
			if string(def.InputSchema["type"]) != `"object"` {
				t.Errorf("input schema type = %s, want \"object\"", def.InputSchema["type"])
			}
			if string(def.InputSchema["additionalProperties"]) != "false" {
				t.Errorf("input additionalProperties = %s, want false", def.InputSchema["additionalProperties"])
			}
			var props map[string]struct {
				Description string `json:"description"`
			}
			if err := json.Unmarshal(def.InputSchema["properties"], &props); err != nil {
				t.Fatal(err)
			}
			for p, s := range props {
				if s.Description == "" {
					t.Errorf("input property %s has no description", p)
				}
			}
		})
	}
}

// TestToolGoldens compares every tool's definition, as a client sees it, with
// testdata/tools/<tool>.json. UPDATE_GOLDEN=1 rewrites the files.
func TestToolGoldens(t *testing.T) {
	update := os.Getenv("UPDATE_GOLDEN") == "1"
	tools := listToolsRaw(t)
	dir := filepath.Join("..", "testdata", "tools")
	for name, raw := range tools {
		t.Run(name, func(t *testing.T) {
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, raw, "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			path := filepath.Join(dir, name+".json")
			if update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			golden, err := os.ReadFile(path)
			if os.IsNotExist(err) {
				t.Fatalf("%s is missing; run UPDATE_GOLDEN=1 go test ./mcp/ to create it, and review it", path)
			}
			if err != nil {
				t.Fatal(err)
			}
			var want, got any
			if err := json.Unmarshal(golden, &want); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s\nrun UPDATE_GOLDEN=1 go test ./mcp/ if the change is intended", name, diff)
			}
		})
	}
	// A golden for a tool that no longer exists is stale.
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, f := range files {
		name := filepath.Base(f)
		name = name[:len(name)-len(".json")]
		if _, ok := tools[name]; !ok {
			if update {
				os.Remove(f)
			} else {
				t.Errorf("%s has no tool; remove it or run UPDATE_GOLDEN=1", f)
			}
		}
	}
}

// TestOptionalInputsHaveOnePlainType: every optional input property of the
// 13 tools declares one JSON type as a plain string, so clients that fill
// arguments from the schema (the MCP Inspector's --tool-arg) send numbers,
// booleans and objects, not strings. A required property may still admit
// null (webhookUrl: null clears it).
func TestOptionalInputsHaveOnePlainType(t *testing.T) {
	for name, raw := range listToolsRaw(t) {
		var tool struct {
			InputSchema struct {
				Properties map[string]struct {
					Type json.RawMessage `json:"type"`
				} `json:"properties"`
				Required []string `json:"required"`
			} `json:"inputSchema"`
		}
		if err := json.Unmarshal(raw, &tool); err != nil {
			t.Fatal(err)
		}
		for p, ps := range tool.InputSchema.Properties {
			if slices.Contains(tool.InputSchema.Required, p) {
				continue
			}
			var typ string
			if err := json.Unmarshal(ps.Type, &typ); err != nil || typ == "" || typ == "null" {
				t.Errorf("%s.%s: type %s, want one plain type", name, p, ps.Type)
			}
		}
	}
}
