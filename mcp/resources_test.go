package mcp_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/flapjack-dev/flapjack/core"
)

// listener is a second client of the env's server that records the
// notifications it receives.
type listener struct {
	mu       sync.Mutex
	updated  []string
	progress []string
	session  *mcp.ClientSession
}

func (l *listener) updates() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.updated...)
}

func (l *listener) progresses() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.progress...)
}

// listen connects with the 2025-11-25 protocol, where resources/subscribe
// is answered once the server has the subscription (the newer protocol's
// subscriptions/listen stream is acknowledged asynchronously).
func (e *env) listen() *listener {
	e.t.Helper()
	l := &listener{}
	client := mcp.NewClient(&mcp.Implementation{Name: "listener", Version: "test"}, &mcp.ClientOptions{
		ResourceUpdatedHandler: func(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) {
			l.mu.Lock()
			l.updated = append(l.updated, req.Params.URI)
			l.mu.Unlock()
		},
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			l.mu.Lock()
			l.progress = append(l.progress, req.Params.Message)
			l.mu.Unlock()
		},
	})
	ct, st := mcp.NewInMemoryTransports()
	ss, err := e.server.Connect(e.t.Context(), st, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { ss.Close() })
	l.session, err = client.Connect(e.t.Context(), ct, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { l.session.Close() })
	return l
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// TestSessionResources: sessions are listed newest first and paged, read as
// JSON and as event lines, and an unknown session is not found.
func TestSessionResources(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	ag := e.createAgent(nil)
	var ids []string
	for range 53 {
		ids = append(ids, e.startSession(ag.ID, core.StatusPending, false))
	}
	var listed []string
	cursor := ""
	pages := 0
	for {
		res, err := e.client.ListResources(ctx, &mcp.ListResourcesParams{Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range res.Resources {
			listed = append(listed, strings.TrimPrefix(r.URI, "flapjack://sessions/"))
		}
		if res.NextCursor == "" {
			break
		}
		cursor = res.NextCursor
	}
	if pages != 2 || len(listed) != 53 || listed[0] != ids[52] || listed[52] != ids[0] {
		t.Errorf("%d pages, %d sessions, first %s last %s; want 2 pages of the 53, newest first", pages, len(listed), listed[0], listed[len(listed)-1])
	}
	tmpl, err := e.client.ListResourceTemplates(ctx, nil)
	if err != nil || len(tmpl.ResourceTemplates) != 2 {
		t.Fatalf("templates = %v, %v", tmpl, err)
	}

	res, err := e.client.ReadResource(ctx, &mcp.ReadResourceParams{URI: "flapjack://sessions/" + ids[0]})
	if err != nil {
		t.Fatal(err)
	}
	var d core.SessionDetail
	if err := json.Unmarshal([]byte(res.Contents[0].Text), &d); err != nil || d.ID != ids[0] || len(d.Messages) != 1 {
		t.Errorf("session resource = %s (%v)", res.Contents[0].Text, err)
	}
	res, err = e.client.ReadResource(ctx, &mcp.ReadResourceParams{URI: "flapjack://sessions/" + ids[0] + "/events"})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(res.Contents[0].Text, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "1 ") || !strings.Contains(lines[0], " status ") || !strings.HasPrefix(lines[1], "2 ") {
		t.Errorf("events resource = %q", res.Contents[0].Text)
	}
	for _, uri := range []string{"flapjack://sessions/cs-nope", "flapjack://sessions/", "flapjack://other/x", "flapjack://sessions/" + ids[0] + "/x"} {
		if _, err := e.client.ReadResource(ctx, &mcp.ReadResourceParams{URI: uri}); err == nil {
			t.Errorf("read %s: no error", uri)
		}
	}
}

// TestResourceSubscription: a subscriber gets resources/updated for every
// status change of the session (made directly in the store, as another
// process would), and at most once a second for its events while they
// arrive; after unsubscribe, nothing more.
func TestResourceSubscription(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	l := e.listen()
	ag := e.createAgent(nil)
	id := e.startSession(ag.ID, core.StatusPending, false)
	sURI, evURI := "flapjack://sessions/"+id, "flapjack://sessions/"+id+"/events"
	for _, uri := range []string{sURI, evURI} {
		if err := l.session.Subscribe(ctx, &mcp.SubscribeParams{URI: uri}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.session.Subscribe(ctx, &mcp.SubscribeParams{URI: "flapjack://sessions/cs-nope"}); err == nil {
		t.Error("subscribing to an unknown session succeeded")
	}
	for i, st := range []core.Status{core.StatusCreating, core.StatusRunning, core.StatusFinished} {
		e.setStatus(id, st, false)
		waitUntil(t, "update for "+string(st), func() bool { return count(l.updates(), sURI) == i+1 })
	}
	// A burst of events: updates of the events resource, but not one each.
	start := time.Now()
	for range 40 {
		if _, err := e.store.AppendEvents(ctx, id, []core.EventInput{{Type: core.EventStdout, Payload: json.RawMessage(`{"line":"x"}`), CreatedAt: time.Now()}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitUntil(t, "an events update", func() bool { return count(l.updates(), evURI) > 0 })
	time.Sleep(1200 * time.Millisecond)
	elapsed := time.Since(start)
	if n := count(l.updates(), evURI); n < 2 || float64(n) > elapsed.Seconds()+1 {
		t.Errorf("%d events updates in %v, want at least 2 and at most one a second", n, elapsed)
	}
	if err := l.session.Unsubscribe(ctx, &mcp.UnsubscribeParams{URI: sURI}); err != nil {
		t.Fatal(err)
	}
	before := count(l.updates(), sURI)
	e.setStatus(id, core.StatusFinished, true)
	time.Sleep(600 * time.Millisecond)
	if n := count(l.updates(), sURI); n != before {
		t.Errorf("%d session updates after unsubscribe", n-before)
	}
}

// TestWaitingEventsCallSendsProgress: a list-events call that waits, with a
// progress token, sends progress naming the session's status while it waits.
func TestWaitingEventsCallSendsProgress(t *testing.T) {
	e := newEnv(t)
	l := e.listen()
	ag := e.createAgent(nil)
	id := e.startSession(ag.ID, core.StatusRunning, false)
	params := &mcp.CallToolParams{Name: "flapjack_list_code_session_events",
		Arguments: map[string]any{"codeSessionId": id, "since": 2, "waitSeconds": 5}}
	params.SetProgressToken("wait-1")
	start := time.Now()
	res, err := l.session.CallTool(t.Context(), params)
	if err != nil || res.IsError {
		t.Fatalf("call = %v, %v", res, err)
	}
	if took := time.Since(start); took < 4*time.Second {
		t.Errorf("returned after %v, want the whole wait", took)
	}
	got := l.progresses()
	if len(got) < 2 || !strings.Contains(got[0], "(running") {
		t.Errorf("progress = %q, want at least 2 naming the status", got)
	}
	// Without a token, nothing is sent.
	n := len(got)
	if _, err := l.session.CallTool(t.Context(), &mcp.CallToolParams{Name: "flapjack_list_code_session_events",
		Arguments: map[string]any{"codeSessionId": id, "since": 2, "waitSeconds": 1}}); err != nil {
		t.Fatal(err)
	}
	if len(l.progresses()) != n {
		t.Error("progress sent without a progress token")
	}
}
