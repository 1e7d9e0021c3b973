package store

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flapjack-dev/flapjack/core"
)

func statusInput(from, to core.Status, n int) core.EventInput {
	p := map[string]any{"status": to}
	if from != "" {
		p["previous_status"] = from
	}
	b, _ := json.Marshal(p)
	return core.EventInput{Type: core.EventStatus, Payload: b, CreatedAt: at(n)}
}

func otherInput(typ core.EventType, n int) core.EventInput {
	return core.EventInput{Type: typ, Payload: json.RawMessage(`{"text":"x"}`), CreatedAt: at(n)}
}

// hookedSession creates a session with webhook url (nil: none) and its
// opening events: status pending and a user message.
func hookedSession(t *testing.T, st *Store, url *string) core.Session {
	t.Helper()
	o := mustOwner(t, st)
	s := testSession(o.OrgID, "ca-x", 0)
	s.WebhookURL = url
	m := testMessage(s.ID, 0)
	if _, err := st.CreateSession(context.Background(), s, m, []core.EventInput{statusInput("", core.StatusPending, 0), otherInput(core.EventUserMessage, 0)}); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetSession(context.Background(), s.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func deliveries(t *testing.T, st *Store, id string) []core.Delivery {
	t.Helper()
	d, err := st.ListDeliveries(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func apply(t *testing.T, st *Store, c core.Change) []core.Event {
	t.Helper()
	evs, err := st.Apply(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestStatusEventsQueueDeliveriesInTheirTransaction(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	s := hookedSession(t, st, ptr("https://hooks.example.com/a"))

	d := deliveries(t, st, s.ID)
	if len(d) != 1 {
		t.Fatalf("after create: %d deliveries, want 1 (the pending status)", len(d))
	}
	want := `{"type":"code_session.status_changed","timestamp":"2025-03-14T15:09:26.535Z","data":{"session_id":"` + s.ID +
		`","org_id":"` + s.OrgID + `","code_agent_id":"ca-x","status":"pending","previous_status":null,"seq":1,"pr_url":null,"pr_branch":null,"archived":false}}`
	if diff := cmp.Diff(want, string(d[0].Payload)); diff != "" {
		t.Errorf("payload (-want +got):\n%s", diff)
	}
	if d[0].State != core.DeliveryPending || d[0].Seq != 1 || !strings.HasPrefix(d[0].ID, core.PrefixWebhook) || d[0].NextAttemptAt != at(0) {
		t.Errorf("delivery = %+v", d[0])
	}

	// A change with several events: only the status event queues a delivery,
	// with that event's seq and the session's fields as the change left them.
	s.Status = core.StatusRunning
	s.PRBranch = ptr("flapjack/x")
	evs := apply(t, st, core.Change{Session: s, Events: []core.EventInput{otherInput(core.EventAssistant, 1), statusInput(core.StatusPending, core.StatusRunning, 1), otherInput(core.EventStdout, 1)}})
	d = deliveries(t, st, s.ID)
	if len(d) != 2 || d[1].Seq != evs[1].Seq || evs[1].Seq != 4 {
		t.Fatalf("deliveries %+v, events %+v", d, evs)
	}
	var p struct {
		Data struct {
			Status   string  `json:"status"`
			Previous string  `json:"previous_status"`
			Branch   *string `json:"pr_branch"`
		} `json:"data"`
	}
	json.Unmarshal(d[1].Payload, &p)
	if p.Data.Status != "running" || p.Data.Previous != "pending" || p.Data.Branch == nil || *p.Data.Branch != "flapjack/x" {
		t.Errorf("payload %s", d[1].Payload)
	}

	// Events appended outside Apply, and webhook events, queue nothing.
	if _, err := st.AppendEvents(ctx, s.ID, []core.EventInput{otherInput(core.EventStdout, 2)}); err != nil {
		t.Fatal(err)
	}
	if err := st.RecordDeliveryAttempt(ctx, core.DeliveryAttempt{ID: d[0].ID, SessionID: s.ID, URL: d[0].URL, State: core.DeliveryDelivered, At: at(3), HTTPStatus: 200,
		Events: []core.EventInput{{Type: core.EventWebhook, Payload: json.RawMessage(`{"outcome":"delivered"}`)}}}); err != nil {
		t.Fatal(err)
	}
	if n := len(deliveries(t, st, s.ID)); n != 2 {
		t.Errorf("%d deliveries after non-status events, want 2", n)
	}

	// A lost compare-and-set writes no delivery either.
	stale := s
	if _, err := st.Apply(ctx, core.Change{Session: stale, Events: []core.EventInput{statusInput(core.StatusRunning, core.StatusFinished, 4)}}); !errors.Is(err, core.ErrConflict) {
		t.Fatalf("stale apply = %v, want ErrConflict", err)
	}
	if n := len(deliveries(t, st, s.ID)); n != 2 {
		t.Errorf("%d deliveries after a lost race, want 2", n)
	}
}

func TestNoWebhookURLNoDelivery(t *testing.T) {
	st, _ := newStore(t)
	s := hookedSession(t, st, nil)
	s.Status = core.StatusCreating
	apply(t, st, core.Change{Session: s, Events: []core.EventInput{statusInput(core.StatusPending, core.StatusCreating, 1)}})
	if d := deliveries(t, st, s.ID); len(d) != 0 {
		t.Errorf("deliveries without a URL: %+v", d)
	}
	if ok, _ := st.HasPendingDeliveries(context.Background()); ok {
		t.Error("HasPendingDeliveries without any")
	}
}

func TestChangingTheURLCancelsPendingDeliveries(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	s := hookedSession(t, st, ptr("https://old.example.com/"))
	s.Status = core.StatusCreating
	apply(t, st, core.Change{Session: s, Events: []core.EventInput{statusInput(core.StatusPending, core.StatusCreating, 1)}})
	s, _ = st.GetSession(ctx, s.ID)

	// Setting the same URL again cancels nothing.
	apply(t, st, core.Change{Session: s})
	s, _ = st.GetSession(ctx, s.ID)
	for _, d := range deliveries(t, st, s.ID) {
		if d.State != core.DeliveryPending {
			t.Fatalf("an unchanged URL cancelled %+v", d)
		}
	}

	// A new URL: the old URL's pending deliveries are cancelled in the same
	// transaction; new status changes go to the new URL.
	s.WebhookURL = ptr("https://new.example.com/")
	s.Status = core.StatusRunning
	apply(t, st, core.Change{Session: s, Events: []core.EventInput{statusInput(core.StatusCreating, core.StatusRunning, 2)}})
	var got []string
	for _, d := range deliveries(t, st, s.ID) {
		got = append(got, string(d.State)+" "+d.URL)
	}
	want := []string{"cancelled https://old.example.com/", "cancelled https://old.example.com/", "pending https://new.example.com/"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deliveries after a URL change (-want +got):\n%s", diff)
	}

	// Clearing cancels the rest.
	s, _ = st.GetSession(ctx, s.ID)
	s.WebhookURL = nil
	apply(t, st, core.Change{Session: s})
	if ok, _ := st.HasPendingDeliveries(ctx); ok {
		t.Error("deliveries still pending after the URL was cleared")
	}
}

func TestGoneStopsTheURLUntilItChanges(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	url := "https://gone.example.com/"
	s := hookedSession(t, st, &url)
	s.Status = core.StatusCreating
	apply(t, st, core.Change{Session: s, Events: []core.EventInput{statusInput(core.StatusPending, core.StatusCreating, 1)}})
	s, _ = st.GetSession(ctx, s.ID)
	d := deliveries(t, st, s.ID)
	if err := st.RecordDeliveryAttempt(ctx, core.DeliveryAttempt{ID: d[0].ID, SessionID: s.ID, URL: url, State: core.DeliveryStopped, At: at(2), HTTPStatus: 410}); err != nil {
		t.Fatal(err)
	}
	for _, d := range deliveries(t, st, s.ID) {
		if d.State != core.DeliveryStopped {
			t.Errorf("after 410: %+v, want every pending delivery to the URL stopped", d)
		}
	}
	s.Status = core.StatusRunning
	apply(t, st, core.Change{Session: s, Events: []core.EventInput{statusInput(core.StatusCreating, core.StatusRunning, 3)}})
	if n := len(deliveries(t, st, s.ID)); n != 2 {
		t.Errorf("a status change after 410 queued a delivery (%d rows)", n)
	}
	// Clear and set it again: the user asked for it anew.
	s, _ = st.GetSession(ctx, s.ID)
	s.WebhookURL = nil
	apply(t, st, core.Change{Session: s})
	s, _ = st.GetSession(ctx, s.ID)
	s.WebhookURL, s.Status = &url, core.StatusFinished
	apply(t, st, core.Change{Session: s, Events: []core.EventInput{statusInput(core.StatusRunning, core.StatusFinished, 4)}})
	d = deliveries(t, st, s.ID)
	if len(d) != 3 || d[2].State != core.DeliveryPending {
		t.Errorf("after setting the URL again: %+v", d)
	}
}

func TestDueDeliveriesAndNextDeliveryAt(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	if _, ok, err := st.NextDeliveryAt(ctx); ok || err != nil {
		t.Fatalf("NextDeliveryAt on an empty outbox = %v, %v", ok, err)
	}
	s := hookedSession(t, st, ptr("https://hooks.example.com/"))
	d := deliveries(t, st, s.ID)
	if due, _ := st.DueDeliveries(ctx, at(0).Add(-time.Millisecond), 10); len(due) != 0 {
		t.Errorf("due before its time: %+v", due)
	}
	if due, _ := st.DueDeliveries(ctx, at(0), 10); len(due) != 1 || due[0].ID != d[0].ID {
		t.Errorf("due = %+v", due)
	}
	if err := st.RecordDeliveryAttempt(ctx, core.DeliveryAttempt{ID: d[0].ID, SessionID: s.ID, URL: d[0].URL, State: core.DeliveryPending, At: at(1), NextAttemptAt: at(60), Error: "HTTP 500", HTTPStatus: 500}); err != nil {
		t.Fatal(err)
	}
	next, ok, _ := st.NextDeliveryAt(ctx)
	if !ok || !next.Equal(at(60)) {
		t.Errorf("NextDeliveryAt = %v %v, want %v", next, ok, at(60))
	}
	due, _ := st.DueDeliveries(ctx, at(60), 10)
	if len(due) != 1 || due[0].Attempts != 1 || due[0].ID != d[0].ID {
		t.Errorf("due after a retry = %+v, want the same id with one attempt", due)
	}
	if err := st.RecordDeliveryAttempt(ctx, core.DeliveryAttempt{ID: d[0].ID, State: core.DeliveryCancelled}); err == nil {
		t.Error("recording a cancelled outcome was accepted")
	}
}

func TestWebhookSecretsTable(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	added := make(chan bool, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := st.AddFirstWebhookSecret(ctx, core.WebhookSecret{ID: "whs-" + string(rune('a'+i)), Sealed: []byte{1, byte(i)}, CreatedAt: at(i)})
			if err != nil {
				t.Error(err)
			}
			added <- ok
		}()
	}
	wg.Wait()
	close(added)
	n := 0
	for ok := range added {
		if ok {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d concurrent first secrets were stored, want 1", n)
	}
	if has, _ := st.HasCiphertext(ctx); !has {
		t.Error("HasCiphertext is false with a sealed webhook secret stored")
	}
	if err := st.RotateWebhookSecret(ctx, core.WebhookSecret{ID: "whs-new", Sealed: []byte{2}, CreatedAt: at(100)}, at(50)); err != nil {
		t.Fatal(err)
	}
	list, _ := st.WebhookSecrets(ctx)
	if len(list) != 2 || list[0].ID != "whs-new" || list[0].RetiredAt != nil || list[1].RetiredAt == nil || !list[1].RetiredAt.Equal(at(100)) {
		t.Errorf("after rotation: %+v", list)
	}
	// A second rotation forgets secrets retired before forgetBefore.
	if err := st.RotateWebhookSecret(ctx, core.WebhookSecret{ID: "whs-newer", Sealed: []byte{3}, CreatedAt: at(200)}, at(150)); err != nil {
		t.Fatal(err)
	}
	list, _ = st.WebhookSecrets(ctx)
	var ids []string
	for _, w := range list {
		ids = append(ids, w.ID)
	}
	if diff := cmp.Diff([]string{"whs-newer", "whs-new"}, ids); diff != "" {
		t.Errorf("secrets after two rotations (-want +got):\n%s", diff)
	}
}

func TestOutboxQueryPlans(t *testing.T) {
	s, _ := newStore(t)
	for _, tc := range []struct {
		query string
		args  []any
		want  string
	}{
		{dueDeliveriesSQL, []any{1, 100}, "SEARCH webhook_deliveries USING INDEX webhook_deliveries_due (next_attempt_at<?)"},
		{`SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE state = 'pending'`, nil, "SEARCH webhook_deliveries USING COVERING INDEX webhook_deliveries_due"},
		{`UPDATE webhook_deliveries SET state = 'cancelled' WHERE session_id = ? AND state = 'pending' AND url IS NOT ?`, []any{"cs-a", "u"},
			"SEARCH webhook_deliveries USING INDEX webhook_deliveries_pending (session_id=?)"},
	} {
		rows, err := s.db.Query("EXPLAIN QUERY PLAN "+tc.query, tc.args...)
		if err != nil {
			t.Fatal(err)
		}
		var details []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			rows.Scan(&id, &parent, &notused, &detail)
			details = append(details, detail)
		}
		rows.Close()
		found := false
		for _, d := range details {
			found = found || strings.HasPrefix(d, tc.want)
		}
		if !found {
			t.Errorf("plan of %q = %q, want %q", tc.query, details, tc.want)
		}
	}
}
