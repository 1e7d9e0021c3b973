//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// BenchmarkBurstIngestion runs flapjack serve with a local agent that
// prints 1,000,000 lines at once (seq), and measures the whole path (the
// agent's pipe, the mapper, the Redactor, the EventWriter, SQLite) from the
// session's start to its last event committed, and serve's peak resident
// memory. Goals: ≥ 80,000 events/s with a peak RSS ≤ 100 MiB (the writer's
// queue is bounded, so the agent waits on its pipe instead of memory
// filling up).
func BenchmarkBurstIngestion(b *testing.B) {
	const lines = 1_000_000
	for b.Loop() {
		dataDir := newDataDir(b)
		agent := writeAgent(b, fmt.Sprintf("seq 1 %d\n", lines))
		s := startServe(b, dataDir, []string{"FLAPJACK_LOCAL_AGENT_COMMAND=" + agent})
		token := tokenRE.FindString(s.stderr.String())
		call := func(method, path string, body, out any) {
			status, raw := s.call(b, method, path, token, body)
			if status >= 300 {
				b.Fatalf("%s %s = %d %.300s", method, path, status, raw)
			}
			if out != nil {
				json.Unmarshal(raw, out)
			}
		}
		var ag struct{ ID string }
		call("POST", "/api/code-agents", map[string]any{"defaultRepoUrl": makeRepo(b), "runtime": "local"}, &ag)
		var st struct {
			SessionID string `json:"session_id"`
		}
		start := time.Now()
		call("POST", "/api/code-sessions", map[string]any{"codeAgentId": ag.ID, "prompt": "print"}, &st)
		var d struct {
			Status       string
			LastEventSeq int64 `json:"last_event_seq"`
		}
		deadline := time.Now().Add(5 * time.Minute)
		for d.Status != "finished" && d.Status != "error" {
			if time.Now().After(deadline) {
				b.Fatalf("session still %s at seq %d", d.Status, d.LastEventSeq)
			}
			time.Sleep(20 * time.Millisecond)
			call("GET", "/api/code-sessions/"+st.SessionID, nil, &d)
		}
		took := time.Since(start)
		peak := vmHWM(b, s.cmd.Process.Pid)
		if d.Status != "finished" || d.LastEventSeq < lines {
			b.Fatalf("session %s with %d events, want finished with over %d", d.Status, d.LastEventSeq, lines)
		}
		rate := float64(d.LastEventSeq) / took.Seconds()
		b.ReportMetric(rate, "events/s")
		b.ReportMetric(float64(peak)/(1<<20), "serve-peak-RSS-MiB")
		if rate < 80_000 || peak > 100<<20 {
			b.Errorf("%.0f events/s with a peak RSS of %.1f MiB; goals ≥ 80,000 and ≤ 100 MiB", rate, float64(peak)/(1<<20))
		}
		s.stop(b)
	}
}
