package mcp_test

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/flapjack-dev/flapjack/core"
	flapjackmcp "github.com/flapjack-dev/flapjack/mcp"
	"github.com/flapjack-dev/flapjack/store"
	"github.com/flapjack-dev/flapjack/store/storetest"
)

// BenchmarkListEventsOfMillion measures flapjack_list_code_session_events
// returning 100 events from a session of 1,000,000, through the whole tool path
// (schema validation, Service, SQLite keyset read, output encoding and
// validation) over the in-memory transport. Target: median ≤ 3 ms.
func BenchmarkListEventsOfMillion(b *testing.B) {
	const total = 1_000_000
	ctx := context.Background()
	dbPath := filepath.Join(b.TempDir(), "flapjack.db")
	m := newBenchMCP(b, dbPath)
	svc, actor, started, cs := m.svc, m.actor, m.started, m.cs
	storetest.AppendMany(b, m.st, started.SessionID, started.MessageID, total-2, json.RawMessage(`{"text":"Looking at src/auth.ts to find where the JWT expiry is computed."}`))

	var svcTook []time.Duration
	for range 200 {
		since := int64(rand.IntN(total - 100))
		t0 := time.Now()
		if _, err := svc.ListEvents(ctx, actor, started.SessionID, core.EventsInput{Since: &since, Limit: ptrInt(100)}); err != nil {
			b.Fatal(err)
		}
		svcTook = append(svcTook, time.Since(t0))
	}
	slices.Sort(svcTook)

	var took []time.Duration
	for b.Loop() {
		since := rand.IntN(total - 100)
		t0 := time.Now()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "flapjack_list_code_session_events",
			Arguments: map[string]any{"codeSessionId": started.SessionID, "since": since, "limit": 100}})
		took = append(took, time.Since(t0))
		if err != nil || res.IsError {
			b.Fatalf("call: %v %v", err, res)
		}
		if n := len(res.StructuredContent.(map[string]any)["events"].([]any)); n != 100 {
			b.Fatalf("got %d events, want 100", n)
		}
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2])/float64(time.Millisecond), "median-ms")
	b.ReportMetric(float64(svcTook[len(svcTook)/2])/float64(time.Millisecond), "service-median-ms")
}

// benchMCP is an MCP server over the in-memory transport on a real database
// at dbPath, with one template and one started (pending) session: what the
// MCP benchmarks call. Everything is closed when b ends.
type benchMCP struct {
	st      *store.Store
	svc     *core.Service
	actor   core.Actor
	started core.StartResult
	cs      *mcp.ClientSession
}

func newBenchMCP(b *testing.B, dbPath string) *benchMCP {
	ctx := context.Background()
	st, err := store.Open(dbPath)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	key := make([]byte, 32)
	crand.Read(key)
	box, _ := core.NewBox(key)
	owner, _ := st.EnsureOwner(ctx)
	rt := &fakeRuntime{cancelErrs: map[string]error{}, archiveErr: map[string]error{}}
	svc := core.NewService(core.ServiceConfig{Store: st, Box: box, Runtimes: map[string]core.Runtime{core.RuntimeLocal: rt}, DefaultRuntime: core.RuntimeLocal})
	actor := core.Actor{UserID: owner.UserID, AllOrgs: true, DefaultOrgID: owner.OrgID}
	repo := "https://github.com/acme/app"
	ag, err := svc.CreateAgent(ctx, actor, core.CreateAgentInput{AgentFields: core.AgentFields{DefaultRepoURL: &repo}})
	if err != nil {
		b.Fatal(err)
	}
	started, err := svc.StartSession(ctx, actor, core.StartSessionInput{CodeAgentID: ag.ID, Prompt: "x"})
	if err != nil {
		b.Fatal(err)
	}
	server := flapjackmcp.NewServer(svc, actor, flapjackmcp.Options{})
	ct, srvT := mcp.NewInMemoryTransports()
	ss, err := server.Connect(ctx, srvT, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cs.Close() })
	return &benchMCP{st: st, svc: svc, actor: actor, started: started, cs: cs}
}

func ptrInt(v int) *int { return &v }

// BenchmarkListEventsFloor is the same call against a go-sdk server that returns
// the same 100 events from memory: what the SDK and JSON cost on their own.
func BenchmarkListEventsFloor(b *testing.B) {
	ctx := context.Background()
	now := time.Now().UTC()
	page := struct {
		Events  []core.Event `json:"events"`
		LastSeq int64        `json:"last_seq"`
	}{LastSeq: 100}
	msg, run := "msg-xxxxxxxxxxxxxxxxxxxx", "run-1"
	for i := range 100 {
		page.Events = append(page.Events, core.Event{ID: fmt.Sprintf("evt-bench%011d", i), SessionID: "cs-xxxxxxxxxxxxxxxxxxxx",
			MessageID: &msg, CursorRunID: &run, Type: core.EventAssistant, Seq: int64(i + 1), CreatedAt: now,
			Payload: []byte(`{"text":"Looking at src/auth.ts to find where the JWT expiry is computed."}`)})
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "floor", Version: "1"}, nil)
	s.AddTool(&mcp.Tool{Name: "flapjack_list_code_session_events", InputSchema: map[string]any{"type": "object"}},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			raw, _ := json.Marshal(page)
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(raw)}}, StructuredContent: json.RawMessage(raw)}, nil
		})
	ct, srvT := mcp.NewInMemoryTransports()
	ss, _ := s.Connect(ctx, srvT, nil)
	defer ss.Close()
	cs, _ := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil).Connect(ctx, ct, nil)
	defer cs.Close()
	var took []time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "flapjack_list_code_session_events", Arguments: map[string]any{"codeSessionId": "cs-x", "since": 5, "limit": 100}}); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(t0))
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2])/float64(time.Millisecond), "median-ms")
}
