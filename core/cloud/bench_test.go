package cloud

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/store"
)

// benchStream renders a run stream of n events in the wire format: in each ten,
// five assistant deltas, a thinking delta, a tool call started and completed,
// an interaction_update and a heartbeat; it ends with result and done.
func benchStream(n int) []byte {
	var b bytes.Buffer
	b.WriteString("event: status\ndata: {\"runId\":\"run-bench\",\"status\":\"RUNNING\"}\n\n")
	for i := range n - 2 {
		fmt.Fprintf(&b, "id: 1767323045000-%d\n", i+1)
		switch k := i % 10; {
		case k < 5:
			fmt.Fprintf(&b, "event: assistant\ndata: {\"text\":\"word%d \"}\n\n", i)
		case k == 5:
			b.WriteString("event: thinking\ndata: {\"text\":\"considering the options\"}\n\n")
		case k == 6:
			fmt.Fprintf(&b, "event: tool_call\ndata: {\"callId\":\"call-%d\",\"name\":\"read_file\",\"status\":\"running\",\"args\":{\"path\":\"src/file%d.go\"}}\n\n", i, i)
		case k == 7:
			b.WriteString("event: interaction_update\ndata: {\"delta\":{\"text\":\"noise\"}}\n\n")
		case k == 8:
			fmt.Fprintf(&b, "event: tool_call\ndata: {\"callId\":\"call-%d\",\"name\":\"read_file\",\"status\":\"completed\",\"result\":{\"lines\":120}}\n\n", i-2)
		default:
			b.WriteString("event: heartbeat\ndata: {}\n\n")
		}
	}
	fmt.Fprintf(&b, "id: 1767323045000-%d\nevent: result\ndata: {\"runId\":\"run-bench\",\"status\":\"FINISHED\",\"text\":\"done\",\"durationMs\":1000}\n\n", n-1)
	fmt.Fprintf(&b, "id: 1767323045000-%d\nevent: done\ndata: {}\n\n", n)
	return b.Bytes()
}

// writerSink is the runner's sink: the batching EventWriter on a real store.
type writerSink struct{ w *core.EventWriter }

func (s writerSink) Emit(e core.EventInput)                  { s.w.Emit(e) }
func (s writerSink) SetHandle(context.Context, string) error { return nil }

// BenchmarkIngestRun follows a run of 10,000 SSE events (half of them
// assistant deltas) from a loopback server into a real store, until every
// event is committed. It reports how many events were logged per run.
func BenchmarkIngestRun(b *testing.B) {
	const sseEvents = 10_000
	body := benchStream(sseEvents)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write(body)
	}))
	defer srv.Close()

	dir := b.TempDir()
	st, err := store.Open(filepath.Join(dir, "flapjack.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	owner, err := st.EnsureOwner(ctx)
	if err != nil {
		b.Fatal(err)
	}
	master := make([]byte, 32)
	rand.Read(master)
	box, _ := core.NewBox(master)
	now := core.SystemClock{}.Now()
	agentID := "bc-bench"
	ss := core.Session{ID: core.NewID(core.PrefixSession), OrgID: owner.OrgID, CursorAgentID: &agentID, RepoURL: testRepo, StartingRef: "main",
		Status: core.StatusRunning, ModelID: "auto", Runtime: core.RuntimeCloud, CreatedBy: owner.UserID, CreatedAt: now}
	msg := core.Message{ID: core.NewID(core.PrefixMessage), SessionID: ss.ID, Role: "user", Prompt: "bench", Status: core.MessageRunning, CreatedAt: now}
	if _, err := st.CreateSession(ctx, ss, msg, nil); err != nil {
		b.Fatal(err)
	}
	rt, err := New(Config{BaseURL: srv.URL, Box: box, Journal: st})
	if err != nil {
		b.Fatal(err)
	}
	spec := core.RunSpec{Session: ss, Message: msg, RunID: "run-bench", CursorAPIKey: fakeKey}

	var logged int64
	b.ResetTimer()
	for range b.N {
		before, err := st.GetSession(ctx, ss.ID)
		if err != nil {
			b.Fatal(err)
		}
		w := core.NewEventWriter(st, ss.ID, core.NewRedactor(fakeKey))
		out, err := rt.Execute(ctx, spec, writerSink{w})
		if err != nil || out.Status != core.MessageFinished {
			b.Fatalf("outcome %+v, %v", out, err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		after, err := st.GetSession(ctx, ss.ID)
		if err != nil {
			b.Fatal(err)
		}
		logged += after.LastEventSeq - before.LastEventSeq
	}
	b.StopTimer()
	perRun := float64(logged) / float64(b.N)
	if perRun >= sseEvents {
		b.Fatalf("logged %.0f events per run of %d SSE events, want fewer", perRun, sseEvents)
	}
	b.ReportMetric(sseEvents, "sse_events/op")
	b.ReportMetric(perRun, "events_logged/op")
}
