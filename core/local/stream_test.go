//go:build unix

package local

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/google/go-cmp/cmp"
)

func TestMapStdout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		line    string
		typ     core.EventType // "" = dropped
		payload string
	}{
		{
			name: "system init dropped",
			line: `{"type":"system","subtype":"init","session_id":"s","model":"m","cwd":"/x"}`,
		},
		{
			name: "user dropped",
			line: `{"type":"user","message":{"role":"user","content":[{"type":"text","text":"hi"}]},"session_id":"s"}`,
		},
		{
			name:    "assistant joins text parts",
			line:    `{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"Hello, "},{"type":"image","url":"x"},{"type":"text","text":"world"}]},"session_id":"s","extra":1}`,
			typ:     core.EventAssistant,
			payload: `{"text":"Hello, world"}`,
		},
		{
			name:    "assistant with string content",
			line:    `{"type":"assistant","message":{"content":"plain"}}`,
			typ:     core.EventAssistant,
			payload: `{"text":"plain"}`,
		},
		{
			name: "assistant without text dropped",
			line: `{"type":"assistant","message":{"content":[]}}`,
		},
		{
			name:    "thinking delta",
			line:    `{"type":"thinking","subtype":"delta","text":"hmm","session_id":"s"}`,
			typ:     core.EventThinking,
			payload: `{"text":"hmm"}`,
		},
		{
			name: "thinking completed marker dropped",
			line: `{"type":"thinking","subtype":"completed","session_id":"s"}`,
		},
		{
			name:    "tool call started",
			line:    `{"type":"tool_call","subtype":"started","call_id":"c1","tool_call":{"readToolCall":{"args":{"path":"a.go"}}},"session_id":"s"}`,
			typ:     core.EventToolCall,
			payload: `{"call_id":"c1","name":"read","status":"started","args":{"path":"a.go"},"result":null}`,
		},
		{
			name:    "tool call completed",
			line:    `{"type":"tool_call","subtype":"completed","call_id":"c2","tool_call":{"shellToolCall":{"args":{"command":"ls"},"result":{"success":{"stdout":"a\n","exitCode":0}}}},"session_id":"s"}`,
			typ:     core.EventToolCall,
			payload: `{"call_id":"c2","name":"shell","status":"completed","args":{"command":"ls"},"result":{"success":{"stdout":"a\n","exitCode":0}}}`,
		},
		{
			name:    "tool call of an unknown shape",
			line:    `{"type":"tool_call","subtype":"started","call_id":"c3","tool_call":{"function":{"name":"f"}}}`,
			typ:     core.EventToolCall,
			payload: `{"call_id":"c3","name":"function","status":"started","args":null,"result":null}`,
		},
		{
			name:    "result",
			line:    `{"type":"result","subtype":"success","is_error":false,"duration_ms":1234,"duration_api_ms":1000,"result":"All done","session_id":"s"}`,
			typ:     core.EventResult,
			payload: `{"text":"All done","duration_ms":1234,"is_error":false,"subtype":"success"}`,
		},
		{
			name:    "error result",
			line:    `{"type":"result","subtype":"error_during_execution","is_error":true,"result":"boom"}`,
			typ:     core.EventResult,
			payload: `{"text":"boom","duration_ms":0,"is_error":true,"subtype":"error_during_execution"}`,
		},
		{
			name:    "plain text",
			line:    "Compiling...",
			typ:     core.EventStdout,
			payload: `{"line":"Compiling..."}`,
		},
		{
			name:    "unknown type",
			line:    `{"type":"telemetry","x":1}`,
			typ:     core.EventStdout,
			payload: `{"line":"{\"type\":\"telemetry\",\"x\":1}"}`,
		},
		{
			name:    "broken JSON",
			line:    `{"type":"assistant",`,
			typ:     core.EventStdout,
			payload: `{"line":"{\"type\":\"assistant\","}`,
		},
		{
			name:    "JSON that is not an object",
			line:    `["type","assistant"]`,
			typ:     core.EventStdout,
			payload: `{"line":"[\"type\",\"assistant\"]"}`,
		},
		{
			name:    "wrong field types",
			line:    `{"type":"result","duration_ms":"soon"}`,
			typ:     core.EventStdout,
			payload: `{"line":"{\"type\":\"result\",\"duration_ms\":\"soon\"}"}`,
		},
		{
			name:    "empty line",
			line:    "",
			typ:     core.EventStdout,
			payload: `{"line":""}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := mapStdout(tt.line)
			if ev.payload == nil {
				if tt.typ != "" {
					t.Fatalf("line dropped, want %s %s", tt.typ, tt.payload)
				}
				return
			}
			if ev.typ != tt.typ {
				t.Fatalf("type = %q, want %q", ev.typ, tt.typ)
			}
			got, err := json.Marshal(ev.payload)
			if err != nil {
				t.Fatal(err)
			}
			var gotV, wantV any
			if err := json.Unmarshal(got, &gotV); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tt.payload), &wantV); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantV, gotV); diff != "" {
				t.Errorf("payload (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadLines(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 3<<20)
	huge := strings.Repeat("y", maxLineBytes+100)
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{name: "empty", in: "", want: nil},
		{name: "lines", in: "a\nb\n", want: []string{"a", "b"}},
		{name: "no final newline", in: "a\nb", want: []string{"a", "b"}},
		{name: "blank lines", in: "\n\na\n", want: []string{"", "", "a"}},
		{name: "CRLF", in: "a\r\nb\r\n", want: []string{"a", "b"}},
		{name: "invalid UTF-8", in: "ok \xff\xfe end\n\xc3\n", want: []string{"ok \uFFFD end", "\uFFFD"}},
		{name: "longer than the buffer", in: big + "\nnext\n", want: []string{big, "next"}},
		{name: "over the cap", in: huge + "\nnext\n", want: []string{huge[:maxLineBytes] + " [flapjack: line truncated, 100 bytes dropped]", "next"}},
		{name: "over the cap at EOF", in: huge, want: []string{huge[:maxLineBytes] + " [flapjack: line truncated, 100 bytes dropped]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			if err := readLines(strings.NewReader(tt.in), func(l string) { got = append(got, l) }); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d lines, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("line %d: got %d bytes %q..., want %d bytes %q...", i, len(got[i]), trunc(got[i]), len(tt.want[i]), trunc(tt.want[i]))
				}
				if !utf8.ValidString(got[i]) {
					t.Errorf("line %d is not valid UTF-8", i)
				}
			}
		})
	}
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:20] + "…" + s[len(s)-20:]
	}
	return s
}
