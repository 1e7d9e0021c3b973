package cloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func testClient(t *testing.T, base string, s *sleeper, tweak ...func(*ClientConfig)) *Client {
	t.Helper()
	cfg := ClientConfig{BaseURL: base, APIKey: fakeKey, UserAgent: "flapjack/1.2.3", Sleep: s.sleep}
	for _, f := range tweak {
		f(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestClientReadsDocumentedAnswers: the read calls decode Cursor's JSON and
// ignore fields they do not know; Basic auth and User-Agent go on each call.
func TestClientReadsDocumentedAnswers(t *testing.T) {
	f := newFake(t, "empty")
	s := &sleeper{}
	c := testClient(t, f.URL(), s)
	ctx := context.Background()
	id := f.addAgent(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), testRepo, true, false, "")
	f.addAgent(time.Date(2026, 1, 3, 3, 4, 5, 0, time.UTC), testRepo, true, false, "")

	me, err := c.Me(ctx)
	if err != nil || me.APIKeyName != "flapjack tests" || me.UserEmail != "dev@example.com" {
		t.Errorf("Me = %+v, %v", me, err)
	}
	models, err := c.ListModels(ctx)
	if diff := cmp.Diff([]Model{{ID: "composer-2", Name: "Composer 2"}, {ID: "gpt-5"}}, models); err != nil || diff != "" {
		t.Errorf("ListModels err %v (-want +got):\n%s", err, diff)
	}
	a, err := c.GetAgent(ctx, id)
	if err != nil || a.ID != id || a.Status != "ACTIVE" || !a.CreatedAt.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) ||
		a.AutoCreatePR == nil || !*a.AutoCreatePR || len(a.Repos) != 1 || a.Repos[0].URL != testRepo {
		t.Errorf("GetAgent = %+v, %v", a, err)
	}
	page, err := c.ListAgents(ctx, 1, "")
	if err != nil || len(page.Items) != 1 || page.Items[0].ID == id || page.NextCursor == "" {
		t.Fatalf("first page = %+v, %v (want the newer agent and a cursor)", page, err)
	}
	page, err = c.ListAgents(ctx, 1, page.NextCursor)
	if err != nil || len(page.Items) != 1 || page.Items[0].ID != id || page.NextCursor != "" {
		t.Errorf("second page = %+v, %v", page, err)
	}
	run, err := c.GetRun(ctx, id, a.LatestRunID)
	if err != nil || run.ID != a.LatestRunID || run.AgentID != id || run.Status != RunRunning {
		t.Errorf("GetRun = %+v, %v", run, err)
	}
	lists := f.requestsTo(routeList)
	if q := lists[1].Query; q.Get("limit") != "1" || q.Get("cursor") != "1" {
		t.Errorf("list query %v", q)
	}
	for _, r := range f.allRequests() {
		if r.Header.Get("User-Agent") != "flapjack/1.2.3" || !strings.HasPrefix(r.Header.Get("Authorization"), "Basic ") {
			t.Errorf("%s %s: headers %v", r.Method, r.Path, r.Header)
		}
	}
}

// TestClientIgnoresUnknownEnumValues: a run status Cursor adds later is kept
// as is, and is not taken for terminal.
func TestClientIgnoresUnknownEnumValues(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"id":"run-1","agentId":"bc-1","status":"PAUSED_FOR_REVIEW","createdAt":1767323045000,"new":{"nested":[1,2]}}`)
	}))
	defer srv.Close()
	run, err := testClient(t, srv.URL, &sleeper{}).GetRun(context.Background(), "bc-1", "run-1")
	if err != nil || run.Status != "PAUSED_FOR_REVIEW" || TerminalRunStatus(run.Status) || run.CreatedAt.UnixMilli() != 1767323045000 {
		t.Errorf("GetRun = %+v, %v", run, err)
	}
}

// scripted answers requests in order from a list of (status, headers, body).
type scripted struct {
	mu      sync.Mutex
	answers []answer
	n       int
}

type answer struct {
	status int
	header map[string]string
	body   string
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	a := s.answers[min(s.n, len(s.answers)-1)]
	s.n++
	s.mu.Unlock()
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

func (s *scripted) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// TestClientRetriesAndErrors: 429 and 5xx are retried with exponential
// backoff or the server's Retry-After, a bounded number of times; a 4xx is
// returned at once with Cursor's code and message; a 5xx on a call that may
// have taken effect (create) is not retried blindly.
func TestClientRetriesAndErrors(t *testing.T) {
	const busy = `{"error":{"code":"agent_busy","message":"Agent already has an active run"}}`
	tests := []struct {
		name      string
		answers   []answer
		call      func(*Client) error
		wantErr   *APIError
		wantCalls int
		wantWaits []time.Duration
	}{{
		name:    "4xx keeps Cursor's code and message",
		answers: []answer{{409, nil, busy}},
		call: func(c *Client) error {
			_, err := c.CreateRun(context.Background(), "bc-1", CreateRunRequest{Prompt: Prompt{Text: "x"}})
			return err
		},
		wantErr:   &APIError{Status: 409, Code: "agent_busy", Message: "Agent already has an active run"},
		wantCalls: 1,
	}, {
		name:      "5xx then success",
		answers:   []answer{{500, nil, `{"error":{"code":"internal_error","message":"x"}}`}, {503, nil, ""}, {200, nil, `{"id":"bc-1"}`}},
		call:      func(c *Client) error { _, err := c.GetAgent(context.Background(), "bc-1"); return err },
		wantCalls: 3,
		wantWaits: []time.Duration{time.Second, 2 * time.Second},
	}, {
		name:    "429 honours Retry-After",
		answers: []answer{{429, map[string]string{"Retry-After": "7"}, `{"error":{"code":"rate_limit_exceeded","message":"slow down"}}`}, {200, nil, `{"id":"bc-1"}`}},
		call: func(c *Client) error {
			_, err := c.CreateRun(context.Background(), "bc-1", CreateRunRequest{})
			return err
		},
		wantCalls: 2,
		wantWaits: []time.Duration{7 * time.Second},
	}, {
		name:      "create is one attempt: the runtime paces it and checks in between",
		answers:   []answer{{429, map[string]string{"Retry-After": "7"}, `{"error":{"code":"rate_limit_exceeded","message":"slow down"}}`}},
		call:      func(c *Client) error { _, err := c.CreateAgent(context.Background(), CreateAgentRequest{}); return err },
		wantErr:   &APIError{Status: 429, Code: "rate_limit_exceeded", Message: "slow down", RetryAfter: 7 * time.Second},
		wantCalls: 1,
	}, {
		name:      "retries are bounded",
		answers:   []answer{{503, map[string]string{"Content-Type": "text/html"}, "<html>down</html>"}},
		call:      func(c *Client) error { _, err := c.GetRun(context.Background(), "bc-1", "run-1"); return err },
		wantErr:   &APIError{Status: 503, Message: "Service Unavailable"},
		wantCalls: 1 + DefaultMaxRetries,
		wantWaits: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second},
	}, {
		name:    "5xx on a follow-up is the caller's to retry",
		answers: []answer{{502, nil, "bad gateway"}},
		call: func(c *Client) error {
			_, err := c.CreateRun(context.Background(), "bc-1", CreateRunRequest{})
			return err
		},
		wantErr:   &APIError{Status: 502, Message: "Bad Gateway"},
		wantCalls: 1,
	}, {
		name:      "cancel retries 5xx: cancelling twice changes nothing",
		answers:   []answer{{500, nil, ""}, {200, nil, `{"id":"run-1"}`}},
		call:      func(c *Client) error { return c.CancelRun(context.Background(), "bc-1", "run-1") },
		wantCalls: 2,
		wantWaits: []time.Duration{time.Second},
	}, {
		name:      "the key echoed by the server is redacted",
		answers:   []answer{{401, nil, `{"error":{"code":"unauthorized","message":"bad key ` + fakeKey + `"}}`}},
		call:      func(c *Client) error { _, err := c.Me(context.Background()); return err },
		wantErr:   &APIError{Status: 401, Code: "unauthorized", Message: "bad key [REDACTED]"},
		wantCalls: 1,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &scripted{answers: tt.answers}
			srv := httptest.NewServer(h)
			defer srv.Close()
			s := &sleeper{}
			err := tt.call(testClient(t, srv.URL, s))
			var got *APIError
			if err != nil && !errors.As(err, &got) {
				t.Fatalf("error %v is not an APIError", err)
			}
			if diff := cmp.Diff(tt.wantErr, got); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if h.count() != tt.wantCalls {
				t.Errorf("%d calls, want %d", h.count(), tt.wantCalls)
			}
			if diff := cmp.Diff(tt.wantWaits, s.waits()); diff != "" {
				t.Errorf("waits (-want +got):\n%s", diff)
			}
			if err != nil && strings.Contains(err.Error(), fakeKey) {
				t.Error("the error holds the key")
			}
		})
	}
}

// TestClientRequestTimeout: a call that gets no answer fails after the
// request timeout.
func TestClientRequestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := testClient(t, srv.URL, &sleeper{}, func(cfg *ClientConfig) { cfg.RequestTimeout = 50 * time.Millisecond; cfg.MaxRetries = -1 })
	start := time.Now()
	_, err := c.GetAgent(context.Background(), "bc-1")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("GetAgent = %v after %v, want a deadline error after ~50ms", err, time.Since(start))
	}
}

// TestStreamOutlivesRequestTimeout: the request timeout does not cut a
// stream that keeps delivering; the idle timeout cuts one that goes silent.
func TestStreamOutlivesRequestTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != "text/event-stream" || r.Header.Get("Last-Event-ID") != "41" {
			http.Error(w, "bad headers", 400)
			return
		}
		w.Header().Set("X-Cursor-Stream-Retention-Seconds", "600")
		for i := range 4 {
			fmt.Fprintf(w, "id: %d\nevent: heartbeat\ndata: {}\n\n", 42+i)
			w.(http.Flusher).Flush()
			time.Sleep(40 * time.Millisecond)
		}
		<-r.Context().Done() // then silence
	}))
	defer srv.Close()
	c := testClient(t, srv.URL, &sleeper{}, func(cfg *ClientConfig) {
		cfg.RequestTimeout = 50 * time.Millisecond
		cfg.StreamIdleTimeout = 150 * time.Millisecond
	})
	st, err := c.StreamRun(context.Background(), "bc-1", "run-1", "41")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Retention != 10*time.Minute {
		t.Errorf("retention %v", st.Retention)
	}
	var ids []string
	for {
		ev, err := st.Next()
		if err != nil {
			if !errors.Is(err, errIdle) {
				t.Errorf("stream ended with %v, want the idle timeout", err)
			}
			break
		}
		ids = append(ids, ev.ID)
	}
	if diff := cmp.Diff([]string{"42", "43", "44", "45"}, ids); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		"0.5":                           500 * time.Millisecond,
		"-3":                            0,
		"86400":                         maxRetryAfter,
		"Fri, 02 Jan 2026 03:04:15 GMT": 10 * time.Second,
		"soon":                          0,
	}
	for in, want := range tests {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestNewClientChecksBaseURL(t *testing.T) {
	for _, bad := range []string{"ftp://x", "https://", "https://user:pw@x", "https://x/?q=1", "not a url"} {
		if _, err := NewClient(ClientConfig{BaseURL: bad}); err == nil {
			t.Errorf("NewClient(%q) accepted", bad)
		}
	}
	c, err := NewClient(ClientConfig{BaseURL: "https://proxy.example/cursor/"})
	if err != nil || c.url("/v1/me", nil) != "https://proxy.example/cursor/v1/me" {
		t.Errorf("prefix: %v %v", c, err)
	}
	c, _ = NewClient(ClientConfig{})
	if c.url("/v1/agents/"+"a%2Fb", nil) != DefaultBaseURL+"/v1/agents/a%2Fb" || agentPath("a/b") != "/v1/agents/a%2Fb" {
		t.Errorf("escaping: %s", c.url(agentPath("a/b"), nil))
	}
}

// TestAgentWithUnreadableRepos: an agent whose repos come in a shape we do
// not know still decodes; its repositories are simply unknown.
func TestAgentWithUnreadableRepos(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"items":[{"id":"bc-1","createdAt":"2026-01-02T03:04:05Z","repos":{"github":"acme/app"}}]}`)
	}))
	defer srv.Close()
	page, err := testClient(t, srv.URL, &sleeper{}).ListAgents(context.Background(), 10, "")
	if err != nil || len(page.Items) != 1 || page.Items[0].ID != "bc-1" || len(page.Items[0].Repos) != 0 {
		t.Errorf("ListAgents = %+v, %v", page, err)
	}
}
