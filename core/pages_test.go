package core_test

import (
	"bytes"
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

// TestAppendEventPageIsListEventsJSON: the page written straight from the
// store (AppendEventPage, what REST serves) is byte for byte the JSON of
// ListEvents' page (what MCP and the CLI get), for every since, limit and
// message filter, with payloads large enough to end pages by bytes, and
// the same error for a bad input or a session the actor cannot see, with
// the buffer given back as it came.
func TestAppendEventPageIsListEventsJSON(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	st := h.start(t)
	big, _ := json.Marshal(map[string]string{"line": strings.Repeat("y<&>\u2028", 300<<10)})
	var in []core.EventInput
	for i := range 700 {
		e := core.EventInput{Type: core.EventStdout, Payload: json.RawMessage(`{"line":"` + strings.Repeat("z", i%50) + `"}`), CreatedAt: time.UnixMilli(1_700_000_000_000 + int64(i)*377)}
		switch {
		case i%97 == 5:
			e.Payload = big
		case i%3 == 0:
			e.MessageID, e.Type = st.MessageID, core.EventAssistant
		case i%5 == 0:
			e.CursorRunID = "run-" + string(rune('a'+i%7))
		}
		in = append(in, e)
	}
	if _, err := h.st.AppendEvents(ctx, st.SessionID, in); err != nil {
		t.Fatal(err)
	}
	prefix := []byte("kept:")
	compared := 0
	for _, since := range []int64{0, 1, 127, 128, 129, 350, 690, 701, 702, 5000} {
		for _, limit := range []int{-1, 1, 7, 128, 200, core.MaxEventLimit, 1 << 20} {
			for _, msg := range []string{"", st.MessageID, "msg-none"} {
				ein := core.EventsInput{Since: &since, MessageID: msg}
				if limit > 0 {
					ein.Limit = &limit
				}
				page, err := h.svc.ListEvents(ctx, h.actor, st.SessionID, ein)
				if err != nil {
					t.Fatal(err)
				}
				got, err := h.svc.AppendEventPage(ctx, h.actor, st.SessionID, ein, prefix)
				if err != nil {
					t.Fatal(err)
				}
				want := page.AppendJSON(append([]byte(nil), prefix...))
				if !bytes.Equal(got, want) {
					t.Fatalf("since %d, limit %d, message %q: the written page differs from ListEvents'\n got %.300s\nwant %.300s", since, limit, msg, got, want)
				}
				compared += len(page.Events)
			}
		}
	}
	if compared < 5000 {
		t.Fatalf("only %d events compared", compared)
	}

	bad := int64(-1)
	zero, far := 0, core.MaxWaitSeconds+1
	stranger := core.Actor{UserID: "usr-stranger", OrgIDs: []string{"org-elsewhere"}, DefaultOrgID: "org-elsewhere"}
	for _, tc := range []struct {
		name  string
		actor core.Actor
		id    string
		in    core.EventsInput
	}{
		{"negative since", h.actor, st.SessionID, core.EventsInput{Since: &bad}},
		{"zero limit", h.actor, st.SessionID, core.EventsInput{Limit: &zero}},
		{"wait too long", h.actor, st.SessionID, core.EventsInput{WaitSeconds: &far}},
		{"unknown session", h.actor, "cs-unknown", core.EventsInput{}},
		{"another org's session", stranger, st.SessionID, core.EventsInput{}},
	} {
		_, lerr := h.svc.ListEvents(ctx, tc.actor, tc.id, tc.in)
		got, aerr := h.svc.AppendEventPage(ctx, tc.actor, tc.id, tc.in, prefix)
		le, ae := core.AsError(lerr), core.AsError(aerr)
		if le == nil || ae == nil || le.Code != ae.Code || le.Field != ae.Field {
			t.Errorf("%s: ListEvents %v, AppendEventPage %v; want the same error", tc.name, lerr, aerr)
		}
		if !bytes.Equal(got, prefix) {
			t.Errorf("%s: the buffer came back as %q, want %q", tc.name, got, prefix)
		}
	}
}

// TestAppendEventPageWaits: a long poll past the last event returns as soon
// as one is appended, with it.
func TestAppendEventPageWaits(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	st := h.start(t)
	d, err := h.svc.GetSession(ctx, h.actor, st.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	since, wait := d.LastEventSeq, 20
	go func() {
		time.Sleep(100 * time.Millisecond)
		h.st.AppendEvents(ctx, st.SessionID, []core.EventInput{{Type: core.EventStdout, Payload: json.RawMessage(`{"line":"late"}`), CreatedAt: time.Now()}})
	}()
	start := time.Now()
	b, err := h.svc.AppendEventPage(ctx, h.actor, st.SessionID, core.EventsInput{Since: &since, WaitSeconds: &wait}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var page core.EventPage
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if len(page.Events) != 1 || page.Events[0].Seq != since+1 || page.LastSeq != since+1 || string(page.Events[0].Payload) != `{"line":"late"}` {
		t.Fatalf("page %s, want the one late event", b)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the wait took %v, not ended by the append", took)
	}
}
