package core_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// BenchmarkEventWriterAppend measures the path an agent's output takes into the
// log: Emit one event at a time, group-committed by the EventWriter into a real
// SQLite file with synchronous=FULL. Target: ≥ 20,000 events/s.
func BenchmarkEventWriterAppend(b *testing.B) {
	const perRun = 20_000
	h := newHarness(b)
	st := h.start(b)
	payload := json.RawMessage(`{"text":"Reading src/auth.ts to find the JWT expiry check"}`)
	var total int
	start := time.Now()
	for b.Loop() {
		w := core.NewEventWriter(h.st, st.SessionID, nil)
		for range perRun {
			w.Emit(core.EventInput{MessageID: st.MessageID, Type: core.EventAssistant, Payload: payload, CreatedAt: time.Now()})
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		total += perRun
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "events/s")
	ss, _ := h.st.GetSession(context.Background(), st.SessionID)
	if want := int64(total + 2); ss.LastEventSeq != want {
		b.Fatalf("last seq %d, want %d", ss.LastEventSeq, want)
	}
}
