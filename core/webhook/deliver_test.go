package webhook

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/store"
)

// received is one request a test receiver got.
type received struct {
	method, ctype, id, ts, sig string
	body                       []byte
}

// receiver is a loopback webhook receiver answering with answer.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []received
	answer func(w http.ResponseWriter, r *http.Request)
}

func newReceiver(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{r.Method, r.Header.Get("Content-Type"), r.Header.Get(HeaderID), r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), b})
		rc.mu.Unlock()
		if rc.answer != nil {
			rc.answer(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func status(code int) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

// env is a store, a box and a clock to deliver from.
type env struct {
	st    *store.Store
	path  string
	box   *core.Box
	clock *fakeClock
}

func newEnv(t *testing.T) *env {
	st, path := openStore(t)
	return &env{st: st, path: path, box: newBox(t), clock: &fakeClock{t: time.Now().UTC().Truncate(time.Millisecond)}}
}

// session creates a session with a webhook URL: its pending status queues
// one delivery. Its prompt is a canary that no webhook may carry.
func (e *env) session(t *testing.T, url string) core.Session {
	t.Helper()
	ctx := context.Background()
	o, err := e.st.EnsureOwner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	s := core.Session{ID: core.NewID(core.PrefixSession), OrgID: o.OrgID, CodeAgentID: "ca-x", RepoURL: "/srv/repo", StartingRef: "main",
		Status: core.StatusPending, WebhookURL: &url, ModelID: "auto", Runtime: core.RuntimeLocal, CreatedBy: o.UserID, CreatedAt: now,
		CursorKeyCiphertext: e.box.Seal([]byte("cursor_CANARY_KEY"), core.PurposeCursorKey, o.OrgID, "x")}
	m := core.Message{ID: core.NewID(core.PrefixMessage), SessionID: s.ID, Role: "user", Prompt: "PROMPT_CANARY", Status: core.MessageQueued, CreatedAt: now}
	ev := core.EventInput{Type: core.EventStatus, Payload: json.RawMessage(`{"status":"pending","reason":"session created"}`), CreatedAt: now}
	if _, err := e.st.CreateSession(ctx, s, m, []core.EventInput{ev}); err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *env) deliverer(cfg Config) *Deliverer {
	cfg.Outbox, cfg.Box, cfg.Clock = e.st, e.box, e.clock
	if cfg.Policy == nil {
		cfg.Policy = NewPolicy(true, nil)
	}
	return New(cfg)
}

func (e *env) deliveries(t *testing.T, id string) []core.Delivery {
	t.Helper()
	d, err := e.st.ListDeliveries(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// webhookEvents returns the payloads of the session's webhook events.
func (e *env) webhookEvents(t *testing.T, id string) []map[string]any {
	t.Helper()
	evs, err := e.st.ListEvents(context.Background(), core.EventQuery{SessionID: id})
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, ev := range evs {
		if ev.Type == core.EventWebhook {
			var p map[string]any
			json.Unmarshal(ev.Payload, &p)
			out = append(out, p)
		}
	}
	return out
}

func deliverDue(t *testing.T, d *Deliverer) {
	t.Helper()
	if err := d.DeliverDue(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestDeliversSignedStatusChangeExactlyOnce(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, nil)
	s := e.session(t, rc.srv.URL+"/hook?token=abc")
	d := e.deliverer(Config{})
	deliverDue(t, d)
	deliverDue(t, d)

	got := rc.requests()
	if len(got) != 1 {
		t.Fatalf("receiver got %d requests, want exactly 1", len(got))
	}
	r := got[0]
	dels := e.deliveries(t, s.ID)
	if len(dels) != 1 || dels[0].State != core.DeliveryDelivered {
		t.Fatalf("deliveries = %+v", dels)
	}
	if r.method != http.MethodPost || r.ctype != "application/json" || r.id != dels[0].ID || r.ts != strconv.FormatInt(e.clock.Now().Unix(), 10) {
		t.Errorf("request = %s %s id=%s ts=%s, want POST application/json id=%s", r.method, r.ctype, r.id, r.ts, dels[0].ID)
	}
	if string(r.body) != string(dels[0].Payload) {
		t.Errorf("body %s is not the stored payload %s", r.body, dels[0].Payload)
	}
	secret, err := NewSecrets(e.st, e.box, nil).Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ts, _ := strconv.ParseInt(r.ts, 10, 64)
	if !Verify(secret, r.id, ts, r.body, r.sig) || !strings.HasPrefix(r.sig, "v1,") || strings.Contains(r.sig, " ") {
		t.Errorf("signature %q does not verify with the installation secret", r.sig)
	}
	for _, canary := range []string{"PROMPT_CANARY", "cursor_CANARY_KEY", secret} {
		if strings.Contains(string(r.body), canary) || strings.Contains(r.sig, canary) {
			t.Errorf("the webhook carries %q", canary)
		}
	}
	var body struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	json.Unmarshal(r.body, &body)
	if body.Type != "code_session.status_changed" || body.Data["status"] != "pending" || body.Data["seq"] != float64(1) || body.Data["session_id"] != s.ID {
		t.Errorf("body = %s", r.body)
	}
	want := []map[string]any{{"webhook_id": dels[0].ID, "seq": float64(1), "attempt": float64(1), "http_status": float64(204), "outcome": "delivered"}}
	if diff := cmp.Diff(want, e.webhookEvents(t, s.ID)); diff != "" {
		t.Errorf("webhook events (-want +got):\n%s", diff)
	}
}

func TestDeliveryCarriesBothSignaturesAfterRotation(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, nil)
	secrets := NewSecrets(e.st, e.box, e.clock)
	old, _ := secrets.Current(context.Background())
	fresh, err := secrets.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e.session(t, rc.srv.URL)
	deliverDue(t, e.deliverer(Config{}))
	r := rc.requests()[0]
	ts, _ := strconv.ParseInt(r.ts, 10, 64)
	if len(strings.Fields(r.sig)) != 2 || !Verify(old, r.id, ts, r.body, r.sig) || !Verify(fresh, r.id, ts, r.body, r.sig) {
		t.Errorf("signature header %q: want two signatures, by the new and the old secret", r.sig)
	}
}

func TestRetriesWithTheSameIDThenGivesUp(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "RECEIVER_BODY_CANARY stack trace")
	})
	s := e.session(t, rc.srv.URL)
	d := e.deliverer(Config{Backoff: func(n int) (time.Duration, bool) { return time.Minute, n < 3 }})

	deliverDue(t, d)
	deliverDue(t, d) // not due yet: nothing sent
	if n := len(rc.requests()); n != 1 {
		t.Fatalf("%d requests before the retry is due, want 1", n)
	}
	dels := e.deliveries(t, s.ID)
	if dels[0].State != core.DeliveryPending || dels[0].Attempts != 1 || !dels[0].NextAttemptAt.Equal(e.clock.Now().Add(time.Minute)) {
		t.Fatalf("after a 500: %+v", dels[0])
	}
	for range 2 {
		e.clock.Add(time.Minute)
		deliverDue(t, d)
	}
	got := rc.requests()
	if len(got) != 3 {
		t.Fatalf("%d requests, want 3", len(got))
	}
	for _, r := range got {
		if r.id != got[0].id || string(r.body) != string(got[0].body) {
			t.Errorf("a retry changed the id or body: %s vs %s", r.id, got[0].id)
		}
	}
	if got[0].ts == got[2].ts {
		t.Error("retries reuse the attempt timestamp; each attempt is signed afresh")
	}
	dels = e.deliveries(t, s.ID)
	if dels[0].State != core.DeliveryFailed || dels[0].Attempts != 3 {
		t.Errorf("after giving up: %+v", dels[0])
	}
	evs := e.webhookEvents(t, s.ID)
	var outcomes []string
	for _, ev := range evs {
		outcomes = append(outcomes, ev["outcome"].(string))
		if ev["outcome"] != "gave_up" && ev["http_status"] != float64(500) {
			t.Errorf("attempt event without its status: %v", ev)
		}
	}
	if diff := cmp.Diff([]string{"retrying", "retrying", "failed", "gave_up"}, outcomes); diff != "" {
		t.Errorf("webhook event outcomes (-want +got):\n%s", diff)
	}
	raw, _ := json.Marshal(evs)
	if strings.Contains(string(raw), "RECEIVER_BODY_CANARY") {
		t.Error("the receiver's body reached the session's log")
	}
	if ok, _ := e.st.HasPendingDeliveries(context.Background()); ok {
		t.Error("a given-up delivery is still pending")
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	s := e.session(t, rc.srv.URL)
	d := e.deliverer(Config{Backoff: func(int) (time.Duration, bool) { return 5 * time.Second, true }})
	start := e.clock.Now()
	deliverDue(t, d)
	if next := e.deliveries(t, s.ID)[0].NextAttemptAt; !next.Equal(start.Add(120 * time.Second)) {
		t.Errorf("next attempt at +%v, want +2m (Retry-After over the 5s backoff)", next.Sub(start))
	}
	e.clock.Add(60 * time.Second)
	deliverDue(t, d)
	if n := len(rc.requests()); n != 1 {
		t.Errorf("%d requests before Retry-After passed", n)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"30", 30 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"soon", 0},
		{"99999999999", maxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), maxRetryAfter},
	} {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestDefaultBackoffSchedule(t *testing.T) {
	want := []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour}
	for i, w := range want {
		for range 50 {
			got, ok := DefaultBackoff(i + 1)
			if !ok || got < w*8/10 || got > w*12/10 {
				t.Fatalf("DefaultBackoff(%d) = %v, %v; want %v ±20%%", i+1, got, ok, w)
			}
		}
	}
	if _, ok := DefaultBackoff(len(want) + 1); ok {
		t.Error("DefaultBackoff does not give up after the last delay")
	}
}

func TestGoneStopsDeliveriesToTheURL(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, status(http.StatusGone))
	s := e.session(t, rc.srv.URL)
	deliverDue(t, e.deliverer(Config{}))
	if st := e.deliveries(t, s.ID)[0].State; st != core.DeliveryStopped {
		t.Errorf("after 410: %s, want stopped", st)
	}
	evs := e.webhookEvents(t, s.ID)
	if len(evs) != 1 || evs[0]["outcome"] != "stopped" || evs[0]["http_status"] != float64(410) {
		t.Errorf("webhook events %v", evs)
	}
}

func TestRedirectIsAFailedDelivery(t *testing.T) {
	e := newEnv(t)
	elsewhere := newReceiver(t, nil)
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.srv.URL+"/stolen", http.StatusTemporaryRedirect)
	})
	s := e.session(t, rc.srv.URL)
	deliverDue(t, e.deliverer(Config{}))
	if n := len(elsewhere.requests()); n != 0 {
		t.Errorf("the redirect was followed (%d requests elsewhere)", n)
	}
	dels := e.deliveries(t, s.ID)
	evs := e.webhookEvents(t, s.ID)
	if dels[0].State != core.DeliveryPending || evs[0]["http_status"] != float64(307) || evs[0]["outcome"] != "retrying" {
		t.Errorf("after a 307: %+v, events %v", dels[0], evs)
	}
}

func TestEachAttemptHasATimeout(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	s := e.session(t, rc.srv.URL)
	start := time.Now()
	deliverDue(t, e.deliverer(Config{Timeout: 200 * time.Millisecond}))
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("attempt took %v with a 200ms timeout", took)
	}
	evs := e.webhookEvents(t, s.ID)
	if len(evs) != 1 || evs[0]["error"] != "timed out" || evs[0]["outcome"] != "retrying" {
		t.Errorf("webhook events %v, want a timed-out attempt", evs)
	}
}

func TestNoProxyFromTheEnvironment(t *testing.T) {
	proxy := newReceiver(t, nil)
	t.Setenv("HTTP_PROXY", proxy.srv.URL)
	t.Setenv("HTTPS_PROXY", proxy.srv.URL)
	t.Setenv("NO_PROXY", "")
	e := newEnv(t)
	rc := newReceiver(t, nil)
	// A name, not a loopback literal: the environment's proxy rules never
	// proxy loopback literals, so only a name shows a proxy is not used.
	_, port, _ := net.SplitHostPort(rc.srv.Listener.Addr().String())
	res := newResolver().set("hooks.example.com", []string{"127.0.0.1"})
	e.session(t, "http://hooks.example.com:"+port+"/hook")
	deliverDue(t, e.deliverer(Config{Policy: NewPolicy(true, res)}))
	if len(proxy.requests()) != 0 || len(rc.requests()) != 1 {
		t.Errorf("proxy got %d, receiver %d; want 0 and 1", len(proxy.requests()), len(rc.requests()))
	}
}

// TestDNSRebindingIsRefusedAtConnect: the name resolves to a public address
// when the URL is set, and to loopback when the webhook is sent. The set-time
// check passes; the dialer refuses, and the loopback receiver gets nothing.
func TestDNSRebindingIsRefusedAtConnect(t *testing.T) {
	e := newEnv(t)
	var hits atomic.Int32
	inside := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
	defer inside.Close()
	_, port, _ := net.SplitHostPort(inside.Listener.Addr().String())
	res := newResolver().set("rebind.example.com", []string{"93.184.215.14"}, []string{"127.0.0.1"})
	policy := NewPolicy(false, res)
	url := "https://rebind.example.com:" + port + "/hook"
	if err := policy.CheckWebhookURL(context.Background(), url); err != nil {
		t.Fatalf("set-time check of the first answer: %v", err)
	}
	s := e.session(t, url)
	tlsCfg := &tls.Config{RootCAs: inside.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, ServerName: "example.com"}
	deliverDue(t, e.deliverer(Config{Policy: policy, TLSConfig: tlsCfg}))
	if hits.Load() != 0 {
		t.Fatal("the rebound name reached the loopback receiver")
	}
	if res.count("rebind.example.com") < 2 {
		t.Fatal("the delivery did not resolve the name again")
	}
	evs := e.webhookEvents(t, s.ID)
	if len(evs) != 1 || !strings.Contains(evs[0]["error"].(string), "address refused") || !strings.Contains(evs[0]["error"].(string), "127.0.0.1") {
		t.Errorf("webhook events %v, want an attempt refused by the dialer", evs)
	}
	if strings.Contains(evs[0]["error"].(string), "/hook") {
		t.Errorf("the error shows the URL: %v", evs[0]["error"])
	}
}

// TestRedeliveryAfterCrashKeepsTheID: the process dies after the receiver
// got the webhook but before the outcome was recorded; the next deliverer
// sends it again with the same webhook-id and body.
func TestRedeliveryAfterCrashKeepsTheID(t *testing.T) {
	e := newEnv(t)
	arrived := make(chan struct{}, 1)
	var hang atomic.Bool
	hang.Store(true)
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			arrived <- struct{}{}
			<-r.Context().Done()
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	s := e.session(t, rc.srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.deliverer(Config{PollInterval: 10 * time.Millisecond}).Run(ctx) }()
	<-arrived
	cancel() // the runner goes away mid-attempt
	<-done
	if d := e.deliveries(t, s.ID)[0]; d.State != core.DeliveryPending || d.Attempts != 0 {
		t.Fatalf("after an interrupted attempt: %+v, want pending with no attempt recorded", d)
	}
	hang.Store(false)
	deliverDue(t, e.deliverer(Config{}))
	got := rc.requests()
	if len(got) != 2 || got[0].id != got[1].id || string(got[0].body) != string(got[1].body) {
		t.Fatalf("requests %+v: want the same delivery twice", got)
	}
	if d := e.deliveries(t, s.ID)[0]; d.State != core.DeliveryDelivered {
		t.Errorf("after redelivery: %+v", d)
	}
}

// countingOutbox counts the reads of due deliveries.
type countingOutbox struct {
	*store.Store
	due atomic.Int32
}

func (c *countingOutbox) DueDeliveries(ctx context.Context, now time.Time, limit int) ([]core.Delivery, error) {
	c.due.Add(1)
	return c.Store.DueDeliveries(ctx, now, limit)
}

// TestRunPicksUpNewWorkAndIdlesQuietly: idle, the loop reads no table; a
// status change committed by another process is delivered promptly.
func TestRunPicksUpNewWorkAndIdlesQuietly(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, nil)
	out := &countingOutbox{Store: e.st}
	d := New(Config{Outbox: out, Box: e.box, Clock: e.clock, Policy: NewPolicy(true, nil), PollInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	defer func() { cancel(); <-done }()

	time.Sleep(500 * time.Millisecond)
	if n := out.due.Load(); n > 2 {
		t.Errorf("an idle loop read the outbox %d times in 0.5s (50 polls)", n)
	}
	// Another process (its own connection pool) starts a session.
	other, err := store.Open(e.path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	(&env{st: other, box: e.box, clock: e.clock}).session(t, rc.srv.URL)
	deadline := time.Now().Add(5 * time.Second)
	for len(rc.requests()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(rc.requests()) != 1 {
		t.Fatal("the loop did not deliver a status change committed by another process")
	}
	time.Sleep(100 * time.Millisecond)
	before := out.due.Load()
	time.Sleep(500 * time.Millisecond)
	if n := out.due.Load() - before; n > 1 {
		t.Errorf("the loop read the outbox %d times in 0.5s after delivering everything", n)
	}
}
