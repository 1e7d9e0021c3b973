// Package storetest fills a store for tests and benchmarks.
package storetest

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/flapjack-dev/flapjack/core"
)

// AppendMany appends n assistant events of payload to a session of st, of
// messageID and run "run-1", in batches of 10,000: the log of a long-running
// agent, built in seconds and stored as the store stores any other.
func AppendMany(tb testing.TB, st core.Store, sessionID, messageID string, n int, payload json.RawMessage) {
	tb.Helper()
	batch := make([]core.EventInput, 0, 10_000)
	for done := 0; done < n; done += len(batch) {
		batch = batch[:0]
		for len(batch) < cap(batch) && done+len(batch) < n {
			batch = append(batch, core.EventInput{MessageID: messageID, CursorRunID: "run-1", Type: core.EventAssistant, Payload: payload})
		}
		if _, err := st.AppendEvents(context.Background(), sessionID, batch); err != nil {
			tb.Fatal(err)
		}
	}
}
