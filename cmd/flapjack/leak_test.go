//go:build unix

package main

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core/coretest"
)

// TestServeHostileCursorLeaksNoKey: a Cursor API that answers every call with
// 401 and the request's Authorization header (and the key it carries) in its
// error code and message. Through a real `flapjack serve` on the cloud
// runtime, the key is then in no REST answer, no line of serve's log and no
// byte of the data directory, before and after archive.
func TestServeHostileCursorLeaksNoKey(t *testing.T) {
	const canary = "crsr_CANARY_d41d8cd98f00b204e9800998ecf8427e"
	cursor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(auth, "Basic "))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{
			"code":    auth,
			"message": "invalid key " + string(raw) + " in " + auth,
		}})
	}))
	t.Cleanup(cursor.Close)
	dataDir := newDataDir(t)
	s := startServe(t, dataDir, []string{"FLAPJACK_RUNTIME=cloud", "FLAPJACK_CURSOR_API_URL=" + cursor.URL})
	token := tokenRE.FindString(s.stderr.String())
	var bodies []string
	call := func(method, path string, body any, want int) []byte {
		t.Helper()
		status, b := s.call(t, method, path, token, body)
		if status != want {
			t.Fatalf("%s %s = %d %s, want %d", method, path, status, b, want)
		}
		bodies = append(bodies, string(b))
		return b
	}
	var ag struct{ ID string }
	json.Unmarshal(call("POST", "/api/code-agents", map[string]any{"defaultRepoUrl": "https://github.com/acme/app"}, 201), &ag)
	var st struct {
		SessionID string `json:"session_id"`
	}
	json.Unmarshal(call("POST", "/api/code-sessions", map[string]any{"codeAgentId": ag.ID, "prompt": "go", "cursorApiKey": canary}, 201), &st)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var d struct{ Status string }
		json.Unmarshal(call("GET", "/api/code-sessions/"+st.SessionID, nil, 200), &d)
		if d.Status == "error" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session still %s", d.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	events := call("GET", "/api/code-sessions/"+st.SessionID+"/events?limit=500", nil, 200)
	if !strings.Contains(string(events), "[REDACTED]") {
		t.Errorf("no event shows [REDACTED]: did the echo reach the log?\n%s", events)
	}
	call("POST", "/api/code-sessions/"+st.SessionID+"/archive", nil, 200)
	call("GET", "/api/code-sessions/"+st.SessionID, nil, 200)
	call("GET", "/api/code-sessions/"+st.SessionID+"/events?limit=500", nil, 200)
	if err := s.stop(t); err != nil {
		t.Fatalf("serve exited with %v", err)
	}
	var leaks []string
	for i, b := range bodies {
		leaks = append(leaks, coretest.FindLeaks("response "+string(rune('0'+i)), []byte(b), canary)...)
	}
	leaks = append(leaks, coretest.FindLeaks("serve log", []byte(s.stderr.String()), canary)...)
	fileLeaks, n, err := coretest.FindLeaksInDir(dataDir, canary)
	if err != nil || n < 3 {
		t.Fatalf("scanned %d files: %v", n, err)
	}
	leaks = append(leaks, fileLeaks...)
	if len(leaks) > 0 {
		t.Errorf("the key leaked:\n%s", strings.Join(leaks, "\n"))
	}
}
