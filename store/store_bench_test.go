package store

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/store/storetest"
)

// benchPayload is a typical assistant event.
const benchPayload = `{"text":"I updated the handler to check the error before writing the response, and added a test."}`

// BenchmarkAppendEvents appends batches of 100, as the runner does when a stream
// delivers events faster than one commit per event.
func BenchmarkAppendEvents(b *testing.B) {
	ctx := context.Background()
	s, _ := newStore(b)
	owner := mustOwner(b, s)
	sess := testSession(owner.OrgID, "ca-a", 1)
	m := createSession(b, s, sess)
	batch := make([]core.EventInput, 100)
	for i := range batch {
		batch[i] = core.EventInput{MessageID: m.ID, CursorRunID: "run-1", Type: core.EventAssistant, Payload: json.RawMessage(benchPayload)}
	}
	n := 0
	for b.Loop() {
		if _, err := s.AppendEvents(ctx, sess.ID, batch); err != nil {
			b.Fatal(err)
		}
		n += len(batch)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkListEventsLargeSession reads pages of 100 at random depths of a
// 1,000,000-event session: a keyset read must not slow down with depth.
func BenchmarkListEventsLargeSession(b *testing.B) {
	const total = 1_000_000
	ctx := context.Background()
	s, _ := newStore(b)
	owner := mustOwner(b, s)
	sess := testSession(owner.OrgID, "ca-a", 1)
	m := createSession(b, s, sess)

	// b.Loop runs this function once, so the fixture is built once per run.
	start := time.Now()
	storetest.AppendMany(b, s, sess.ID, m.ID, total, json.RawMessage(benchPayload))
	b.Logf("built %d events in %v", total, time.Since(start).Round(time.Millisecond))

	rng := rand.New(rand.NewPCG(1, 2))
	for b.Loop() {
		since := rng.Int64N(total - 200)
		events, err := s.ListEvents(ctx, core.EventQuery{SessionID: sess.ID, Since: since, Limit: 200})
		if err != nil {
			b.Fatal(err)
		}
		if len(events) != 200 || events[0].Seq != since+1 {
			b.Fatalf("got %d events from seq %d, want 200 from %d", len(events), events[0].Seq, since+1)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/op")
}
