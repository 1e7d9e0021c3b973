package restshim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/store"
)

// fakeRuntime runs sessions in-process: a remote service we cannot reach in
// tests (Cursor) replaced by one that behaves by the words of the prompt.
//
//	block   runs until cancelled
//	spam N  emits N assistant events
//	fail    ends in error
//	else    an assistant event, a tool call and a result, then finished
type fakeRuntime struct {
	mu         sync.Mutex
	cancelErr  error // returned by Cancel instead of cancelling
	archiveErr error // returned by Archive
}

func (f *fakeRuntime) Name() string           { return "fake" }
func (f *fakeRuntime) NeedsCursorKey() bool   { return false }
func (f *fakeRuntime) AllowsLocalRepos() bool { return false }
func (f *fakeRuntime) Ready() error           { return nil }

func (f *fakeRuntime) Prepare(ctx context.Context, spec core.RunSpec) (core.RunStart, error) {
	return core.RunStart{CursorAgentID: "bc-fake"}, nil
}

func (f *fakeRuntime) Execute(ctx context.Context, spec core.RunSpec, sink core.RunSink) (core.RunOutcome, error) {
	p := spec.Message.Prompt
	emit := func(t core.EventType, payload string) {
		sink.Emit(core.EventInput{MessageID: spec.Message.ID, CursorRunID: spec.RunID, Type: t, Payload: json.RawMessage(payload)})
	}
	switch {
	case strings.Contains(p, "block"):
		emit(core.EventAssistant, `{"text":"waiting"}`)
		<-ctx.Done()
		return core.RunOutcome{Status: core.MessageError, Error: "stopped"}, nil
	case strings.Contains(p, "spam "):
		n, _ := strconv.Atoi(strings.Fields(p[strings.Index(p, "spam ")+5:])[0])
		for i := range n {
			emit(core.EventAssistant, fmt.Sprintf(`{"text":"line %d"}`, i+1))
		}
	case strings.Contains(p, "fail"):
		emit(core.EventStderr, `{"text":"it broke"}`)
		return core.RunOutcome{Status: core.MessageError, Error: "the agent failed"}, nil
	default:
		emit(core.EventAssistant, `{"text":"working on it"}`)
		emit(core.EventToolCall, `{"tool":"edit_file","path":"src/auth.ts"}`)
	}
	emit(core.EventResult, `{"text":"done"}`)
	return core.RunOutcome{Status: core.MessageFinished, ResultText: "done: " + spec.Message.ID}, nil
}

func (f *fakeRuntime) Cancel(ctx context.Context, s core.Session, mark func(context.Context) error) error {
	f.mu.Lock()
	err := f.cancelErr
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return mark(ctx)
}

func (f *fakeRuntime) Archive(ctx context.Context, s core.Session) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.archiveErr
}

func (f *fakeRuntime) set(cancelErr, archiveErr error) {
	f.mu.Lock()
	f.cancelErr, f.archiveErr = cancelErr, archiveErr
	f.mu.Unlock()
}

// env is one API on a real database under t.TempDir, served on loopback
// through the OpenAPI validator, with a runner driving its sessions.
type env struct {
	t      testing.TB
	store  *store.Store
	dbPath string
	svc    *core.Service
	h      *Handler
	srv    *httptest.Server
	rt     *fakeRuntime
	owner  core.Owner
	// token is the owner's token; the owner is a member of the default org.
	token string
	log   *syncBuffer
	seen  *validated
	doc   *apiDoc
}

type envOption func(*Options, *core.ServiceConfig)

func withOptions(f func(*Options)) envOption {
	return func(o *Options, _ *core.ServiceConfig) { f(o) }
}

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	dbPath := filepath.Join(t.TempDir(), "flapjack.db")
	st, err := store.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	owner, err := st.EnsureOwner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	box, err := core.NewBox(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	rt := &fakeRuntime{}
	logs := &syncBuffer{}
	logger := slog.New(LogHandler(slog.NewTextHandler(logs, nil)))
	// The Service and the authenticator read through the cache, as in flapjack serve.
	cached, err := store.NewReadCache(st, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cached.Close() })
	cfg := core.ServiceConfig{Store: cached, Box: box, Runtimes: map[string]core.Runtime{"fake": rt}, DefaultRuntime: "fake", Logger: logger}
	o := Options{Logger: logger, StreamPoll: 10 * time.Millisecond, Heartbeat: time.Minute}
	for _, f := range opts {
		f(&o, &cfg)
	}
	svc := core.NewService(cfg)
	runCtx, stop := context.WithCancel(ctx)
	runner := core.NewRunner(core.RunnerConfig{Store: st, Box: box, Runtimes: cfg.Runtimes, PollInterval: 10 * time.Millisecond})
	done := make(chan struct{})
	go func() { defer close(done); runner.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })

	h := New(svc, NewTokenAuthenticator(cached, logger), o)
	e := &env{t: t, store: st, dbPath: dbPath, svc: svc, h: h, rt: rt, owner: owner, log: logs, seen: &validated{}, doc: loadDoc(t)}
	e.srv = e.serve(h, nil)
	e.token = e.mintToken(owner.UserID, "owner")
	return e
}

// serve starts h on loopback behind the OpenAPI validator; every server a
// test talks to is made here, so every response is validated.
func (e *env) serve(h *Handler, configure func(*http.Server)) *httptest.Server {
	srv := httptest.NewUnstartedServer(validating(e.t, e.doc, h, e.seen))
	srv.Config.RegisterOnShutdown(h.CloseStreams)
	if configure != nil {
		configure(srv.Config)
	}
	srv.Start()
	e.t.Cleanup(func() {
		h.CloseStreams()
		srv.Close()
	})
	return srv
}

// mintToken creates a token for a user and returns its plaintext.
func (e *env) mintToken(userID, name string) string {
	e.t.Helper()
	m := NewToken()
	if _, err := e.store.CreateToken(context.Background(), store.NewToken{UserID: userID, Name: name, Prefix: m.Prefix, Hash: m.Hash[:]}); err != nil {
		e.t.Fatal(err)
	}
	return m.Token
}

// user creates a user in the given orgs and returns a token of theirs.
func (e *env) user(name string, orgIDs ...string) (store.User, string) {
	e.t.Helper()
	ctx := context.Background()
	u, err := e.store.CreateUser(ctx, name)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, o := range orgIDs {
		if err := e.store.AddMember(ctx, o, u.ID); err != nil {
			e.t.Fatal(err)
		}
	}
	return u, e.mintToken(u.ID, name)
}

func (e *env) org(name string) string {
	e.t.Helper()
	o, err := e.store.CreateOrg(context.Background(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	return o.ID
}

// resp is a buffered response.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
}

// errCode returns the error body's code, "" for a success body.
func (r resp) errCode() string {
	var b errorBody
	json.Unmarshal(r.body, &b)
	return b.Error.Code
}

func (r resp) errMessage() string {
	var b errorBody
	json.Unmarshal(r.body, &b)
	return b.Error.Message
}

// do sends a request with a JSON body (a string or []byte is sent as is)
// and the token (none when ""), and buffers the answer.
func (e *env) do(method, path, token string, body any, headers ...string) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

// must sends a request as the owner and fails the test unless the status is want.
func (e *env) must(want int, method, path string, body any, out any) resp {
	e.t.Helper()
	r := e.do(method, path, e.token, body)
	if r.status != want {
		e.t.Fatalf("%s %s = %d, want %d: %s", method, path, r.status, want, r.body)
	}
	if out != nil {
		r.decode(e.t, out)
	}
	return r
}

// agent creates a template as the owner and returns its id.
func (e *env) agent() string {
	e.t.Helper()
	var ag core.CodeAgent
	e.must(201, "POST", "/api/code-agents", map[string]any{"name": "Bug Fixer", "defaultRepoUrl": "https://github.com/acme/app"}, &ag)
	return ag.ID
}

// start starts a session as the owner and returns its ids.
func (e *env) start(agentID, prompt string) core.StartResult {
	e.t.Helper()
	var st core.StartResult
	e.must(201, "POST", "/api/code-sessions", map[string]any{"codeAgentId": agentID, "prompt": prompt, "cursorApiKey": "cursor_test_0123456789"}, &st)
	return st
}

// waitStatus polls the session until it has the status.
func (e *env) waitStatus(id string, want core.Status) core.SessionDetail {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var s core.SessionDetail
		e.must(200, "GET", "/api/code-sessions/"+id, nil, &s)
		if s.Status == want {
			return s
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("session %s is %s, never reached %s", id, s.Status, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// setStatus forces a session into a status through the store, for states the
// API cannot reach by itself (expired).
func (e *env) setStatus(id string, st core.Status) {
	e.t.Helper()
	ctx := context.Background()
	for range 10 {
		s, err := e.store.GetSession(ctx, id)
		if err != nil {
			e.t.Fatal(err)
		}
		s.Status = st
		if _, err = e.store.Apply(ctx, core.Change{Session: s}); err == nil {
			return
		} else if !errors.Is(err, core.ErrConflict) {
			e.t.Fatal(err)
		}
	}
	e.t.Fatal("could not set the status")
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
