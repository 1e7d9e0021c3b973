package mcp_test

import (
	"strings"
	"testing"
)

// TestSchemaErrorsNeverQuoteValues: an argument of the wrong type or out of
// range is refused naming the field and what it must be, never its value
// (a Cursor key sent as a number, an object or an array reached the model).
func TestSchemaErrorsNeverQuoteValues(t *testing.T) {
	e := newEnv(t)
	ag := e.createAgent(nil)
	const secret = "crsr_secret_0123456789"
	for _, tc := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"flapjack_start_code_session", map[string]any{"codeAgentId": ag.ID, "prompt": "x", "cursorApiKey": 12345678901234567890.0}, "cursorApiKey: must be a string"},
		{"flapjack_start_code_session", map[string]any{"codeAgentId": ag.ID, "prompt": "x", "cursorApiKey": map[string]any{"k": secret}}, "cursorApiKey: must be a string"},
		{"flapjack_start_code_session", map[string]any{"codeAgentId": ag.ID, "prompt": "x", "cursorApiKey": []any{secret}}, "cursorApiKey: must be a string"},
		{"flapjack_list_code_session_events", map[string]any{"codeSessionId": "cs-x", "limit": -31337}, "limit: must be at least 1"},
		{"flapjack_list_code_sessions", map[string]any{"status": secret}, "status: must be one of pending,"},
	} {
		res := e.call(tc.tool, tc.args)
		got := text(res)
		if errCode(t, res) != "VALIDATION_ERROR" || !strings.Contains(got, tc.want) {
			t.Errorf("%s %v = %q, want VALIDATION_ERROR saying %q", tc.tool, tc.args, got, tc.want)
		}
		for _, leak := range []string{secret, "12345678901234567", "31337"} {
			if strings.Contains(got, leak) {
				t.Errorf("%s: the error quotes the value: %q", tc.tool, got)
			}
		}
	}
}
