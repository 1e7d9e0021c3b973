package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flapjack-dev/flapjack/core"
)

// fakeChecker refuses the URLs it lists and counts its calls.
type fakeChecker struct {
	refuse map[string]string
	calls  atomic.Int32
}

func (f *fakeChecker) CheckWebhookURL(_ context.Context, raw string) error {
	f.calls.Add(1)
	if why, ok := f.refuse[raw]; ok {
		return errors.New(why)
	}
	return nil
}

// webhookService is the harness's service with a checker and a counted Kick.
func webhookService(h *harness, ch core.WebhookChecker, kicks *atomic.Int32) *core.Service {
	return core.NewService(core.ServiceConfig{
		Store: h.st, Box: h.box, Runtimes: map[string]core.Runtime{"local": h.rt}, DefaultRuntime: "local",
		Webhooks: ch, Kick: func() { kicks.Add(1) },
	})
}

func TestServiceChecksWebhookURLThroughItsChecker(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	ch := &fakeChecker{refuse: map[string]string{"https://inside.example/": "host resolves to 10.0.0.1, a private address"}}
	var kicks atomic.Int32
	svc := webhookService(h, ch, &kicks)

	// A refused start is a VALIDATION_ERROR naming webhookUrl and creates nothing.
	_, err := svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "p", WebhookURL: ptr("https://inside.example/")})
	var e *core.Error
	if !errors.As(err, &e) || e.Code != core.CodeValidation || e.Field != "webhookUrl" {
		t.Fatalf("start with a refused URL = %v, want VALIDATION_ERROR on webhookUrl", err)
	}
	if list, _ := svc.ListSessions(ctx, h.actor, core.ListSessionsInput{}); len(list.Sessions) != 0 {
		t.Fatalf("a refused start created %d sessions", len(list.Sessions))
	}

	st, err := svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "p", WebhookURL: ptr("https://ok.example/")})
	if err != nil {
		t.Fatal(err)
	}
	// A refused update leaves the URL as it was.
	_, err = svc.UpdateSession(ctx, h.actor, st.SessionID, ptr("https://inside.example/"))
	if !errors.As(err, &e) || e.Code != core.CodeValidation || e.Field != "webhookUrl" {
		t.Fatalf("update with a refused URL = %v, want VALIDATION_ERROR on webhookUrl", err)
	}
	d, _ := svc.GetSession(ctx, h.actor, st.SessionID)
	if d.WebhookURL == nil || *d.WebhookURL != "https://ok.example/" {
		t.Errorf("webhook after a refused update = %v", d.WebhookURL)
	}
	// Clearing needs no check.
	before := ch.calls.Load()
	if _, err := svc.UpdateSession(ctx, h.actor, st.SessionID, nil); err != nil {
		t.Fatal(err)
	}
	if ch.calls.Load() != before {
		t.Error("clearing the URL called the checker")
	}
	if got := ch.calls.Load(); got != 3 {
		t.Errorf("checker called %d times, want 3", got)
	}
}

func TestServiceWithoutCheckerChecksShapeOnly(t *testing.T) {
	h := newHarness(t)
	_, err := h.svc.StartSession(context.Background(), h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "p", WebhookURL: ptr("http://plain.example/")})
	if core.ErrorCode(err) != core.CodeValidation {
		t.Errorf("http:// without a checker = %v, want VALIDATION_ERROR", err)
	}
}

// TestEveryStatusChangeIsQueuedWithItsEvent runs sessions through the runner,
// a cancel and an archive, and checks the outbox holds exactly one delivery
// per status event, with the event's seq and status.
func TestEveryStatusChangeIsQueuedWithItsEvent(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	var kicks atomic.Int32
	svc := webhookService(h, &fakeChecker{}, &kicks)
	h.runRunner(t)
	st, err := svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "p", WebhookURL: ptr("https://hooks.example/a")})
	if err != nil {
		t.Fatal(err)
	}
	h.waitStatus(t, st.SessionID, core.StatusFinished)
	if _, err := svc.SendMessage(ctx, h.actor, st.SessionID, "again"); err != nil {
		t.Fatal(err)
	}
	h.waitStatus(t, st.SessionID, core.StatusFinished)
	kicksBefore := kicks.Load()
	if _, err := svc.Archive(ctx, h.actor, st.SessionID); err != nil {
		t.Fatal(err)
	}
	if kicks.Load() == kicksBefore {
		t.Error("archive of a session with a webhook did not kick a runner to send it")
	}

	evs, err := h.st.ListEvents(ctx, core.EventQuery{SessionID: st.SessionID})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Seq      int64
		Status   string
		Previous *string
		Archived bool
	}
	var want []row
	for _, e := range evs {
		if e.Type != core.EventStatus {
			continue
		}
		var p struct {
			Status   string  `json:"status"`
			Previous *string `json:"previous_status"`
			Archived bool    `json:"archived"`
		}
		json.Unmarshal(e.Payload, &p)
		want = append(want, row{e.Seq, p.Status, p.Previous, p.Archived})
	}
	dels, err := h.st.ListDeliveries(ctx, st.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	var got []row
	ids := map[string]bool{}
	for _, d := range dels {
		var p struct {
			Type string `json:"type"`
			Data struct {
				SessionID string  `json:"session_id"`
				Status    string  `json:"status"`
				Previous  *string `json:"previous_status"`
				Seq       int64   `json:"seq"`
				Archived  bool    `json:"archived"`
			} `json:"data"`
		}
		if err := json.Unmarshal(d.Payload, &p); err != nil {
			t.Fatal(err)
		}
		if d.Seq != p.Data.Seq || p.Type != core.StatusWebhookType || p.Data.SessionID != st.SessionID || d.URL != "https://hooks.example/a" {
			t.Errorf("delivery %+v has payload %s", d, d.Payload)
		}
		ids[d.ID] = true
		got = append(got, row{p.Data.Seq, p.Data.Status, p.Data.Previous, p.Data.Archived})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deliveries vs status events (-want +got):\n%s", diff)
	}
	if len(want) != 8 || !want[len(want)-1].Archived {
		t.Errorf("status events %+v: want 8 ending with the archive", want)
	}
	if len(ids) != len(dels) {
		t.Errorf("delivery ids not unique: %v", ids)
	}
}

func TestRunnerStaysWhileDeliveriesArePending(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	var kicks atomic.Int32
	svc := webhookService(h, &fakeChecker{}, &kicks)
	st, err := svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "p", WebhookURL: ptr("https://hooks.example/a")})
	if err != nil {
		t.Fatal(err)
	}
	// Cancel ends the session: nothing active, but its deliveries are pending.
	if _, err := svc.Cancel(ctx, h.actor, st.SessionID); err != nil {
		t.Fatal(err)
	}
	if work, err := core.HasWork(ctx, h.st, 0); err != nil || !work {
		t.Fatalf("HasWork = %v, %v with deliveries pending; want true", work, err)
	}
	r := core.NewRunner(core.RunnerConfig{Store: h.st, Box: h.box, Runtimes: map[string]core.Runtime{"local": h.rt},
		PollInterval: 10 * time.Millisecond, IdleTimeout: 50 * time.Millisecond})
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	select {
	case <-done:
		t.Fatal("the runner idled out with deliveries pending")
	case <-time.After(400 * time.Millisecond):
	}
	dels, _ := h.st.ListDeliveries(ctx, st.SessionID)
	for _, d := range dels {
		if err := h.st.RecordDeliveryAttempt(ctx, core.DeliveryAttempt{ID: d.ID, SessionID: d.SessionID, URL: d.URL,
			State: core.DeliveryDelivered, At: time.Now(), HTTPStatus: 204}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the runner did not idle out once every delivery was made")
	}
	if work, _ := core.HasWork(ctx, h.st, 0); work {
		t.Error("HasWork after every delivery was made")
	}
}

func TestStatusWebhookPayloadShape(t *testing.T) {
	s := core.Session{ID: "cs-1", OrgID: "org-1", CodeAgentID: "ca-1", PRURL: ptr("https://github.com/a/b/pull/1"), Archived: true,
		CursorKeyCiphertext: []byte("sealed"), Preamble: "secret preamble"}
	ev := core.Event{Type: core.EventStatus, Seq: 7, CreatedAt: time.Date(2026, 5, 20, 10, 3, 22, 123e6, time.UTC),
		Payload: json.RawMessage(`{"status":"finished","previous_status":"finished","archived":true,"reason":"archived"}`)}
	got, err := core.StatusWebhookPayload(s, ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"code_session.status_changed","timestamp":"2026-05-20T10:03:22.123Z","data":{"session_id":"cs-1","org_id":"org-1","code_agent_id":"ca-1","status":"finished","previous_status":"finished","seq":7,"pr_url":"https://github.com/a/b/pull/1","pr_branch":null,"archived":true}}`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("payload (-want +got):\n%s", diff)
	}
	ev.Payload = json.RawMessage(`{"status":"pending"}`)
	s.Archived, s.PRURL = false, nil
	got, _ = core.StatusWebhookPayload(s, ev)
	want = `{"type":"code_session.status_changed","timestamp":"2026-05-20T10:03:22.123Z","data":{"session_id":"cs-1","org_id":"org-1","code_agent_id":"ca-1","status":"pending","previous_status":null,"seq":7,"pr_url":null,"pr_branch":null,"archived":false}}`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("first status payload (-want +got):\n%s", diff)
	}
	if _, err := core.StatusWebhookPayload(s, core.Event{Type: core.EventWebhook, Payload: json.RawMessage(`{}`)}); err == nil {
		t.Error("a webhook event made a status webhook")
	}
}
