package core_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// TestEventPagesAreBoundedInBytes: events of 3 MB each (written before any
// cap, straight into the store) come one to a page of limit 500, and paging
// by last_seq returns every event exactly once.
func TestEventPagesAreBoundedInBytes(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	st := h.start(t)
	big, _ := json.Marshal(map[string]string{"line": strings.Repeat("x", 3<<20)})
	small := json.RawMessage(`{"line":"s"}`)
	var in []core.EventInput
	for i := range 12 {
		p := small
		if i%3 != 2 {
			p = big
		}
		in = append(in, core.EventInput{Type: core.EventStdout, Payload: p, CreatedAt: time.Now()})
	}
	if _, err := h.st.AppendEvents(ctx, st.SessionID, in); err != nil {
		t.Fatal(err)
	}
	since, limit := int64(0), core.MaxEventLimit
	seen := map[int64]bool{}
	pages := 0
	for {
		page, err := h.svc.ListEvents(ctx, h.actor, st.SessionID, core.EventsInput{Since: &since, Limit: &limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) == 0 {
			break
		}
		pages++
		size := 0
		for _, e := range page.Events {
			if seen[e.Seq] {
				t.Fatalf("seq %d twice", e.Seq)
			}
			seen[e.Seq] = true
			size += len(e.Payload)
		}
		if len(page.Events) > 1 && size > core.MaxEventPageBytes {
			t.Errorf("page of %d events holds %d bytes, over %d", len(page.Events), size, core.MaxEventPageBytes)
		}
		since = page.LastSeq
	}
	if len(seen) != 14 || pages < 8 {
		t.Errorf("%d events in %d pages, want all 14 in at least 8", len(seen), pages)
	}
}
