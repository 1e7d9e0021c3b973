package core_test

import (
	"context"
	"strings"
	"testing"

	"github.com/flapjack-dev/flapjack/core"
)

// TestShortCursorKeysAreRefused: a key under 16 characters is refused (its
// redaction would eat ordinary text), and no refusal quotes the key.
func TestShortCursorKeysAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name, key, env string
		wantErr        bool
	}{
		{"one character", "x", "", true},
		{"fifteen", "k23456789012345", "", true},
		{"sixteen", "k234567890123456", "", false},
		{"short key from the environment", "", "envkey", true},
		{"control character", "k2345678901234\x1b[2J", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			svc := core.NewService(core.ServiceConfig{Store: h.st, Box: h.box, Runtimes: map[string]core.Runtime{"local": h.rt},
				DefaultRuntime: "local", DefaultCursorKey: tc.env})
			_, err := svc.StartSession(context.Background(), h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "x", CursorAPIKey: tc.key})
			if (err != nil) != tc.wantErr {
				t.Fatalf("start = %v, want error %v", err, tc.wantErr)
			}
			if err == nil {
				return
			}
			var e *core.Error
			if !asError(err, &e) || e.Code != core.CodeValidation || e.Field != "cursorApiKey" {
				t.Fatalf("start = %v, want VALIDATION_ERROR on cursorApiKey", err)
			}
			for _, secret := range []string{tc.key, tc.env} {
				if secret != "" && strings.Contains(e.Message, secret) {
					t.Errorf("the refusal quotes the key: %q", e.Message)
				}
			}
			if tc.env != "" && !strings.Contains(e.Message, "CURSOR_API_KEY") {
				t.Errorf("a bad key from the environment should say so: %q", e.Message)
			}
		})
	}
}

func asError(err error, target **core.Error) bool {
	e := core.AsError(err)
	*target = e
	return e != nil
}
