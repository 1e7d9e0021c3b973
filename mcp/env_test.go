package mcp_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/flapjack-dev/flapjack/core"
	flapjackmcp "github.com/flapjack-dev/flapjack/mcp"
	"github.com/flapjack-dev/flapjack/store"
)

// fakeRuntime is a "local" runtime that runs nothing. Cancel and Archive fail
// with the error set for a session, if any.
type fakeRuntime struct {
	mu         sync.Mutex
	cancelErrs map[string]error
	archiveErr map[string]error
}

func (r *fakeRuntime) Name() string           { return core.RuntimeLocal }
func (r *fakeRuntime) NeedsCursorKey() bool   { return false }
func (r *fakeRuntime) AllowsLocalRepos() bool { return true }
func (r *fakeRuntime) Ready() error           { return nil }

func (r *fakeRuntime) Prepare(context.Context, core.RunSpec) (core.RunStart, error) {
	return core.RunStart{}, nil
}

func (r *fakeRuntime) Execute(context.Context, core.RunSpec, core.RunSink) (core.RunOutcome, error) {
	return core.RunOutcome{Status: core.MessageFinished}, nil
}

func (r *fakeRuntime) Cancel(ctx context.Context, s core.Session, markCancelled func(context.Context) error) error {
	r.mu.Lock()
	err := r.cancelErrs[s.ID]
	r.mu.Unlock()
	if err != nil {
		return err
	}
	return markCancelled(ctx)
}

func (r *fakeRuntime) Archive(_ context.Context, s core.Session) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.archiveErr[s.ID]
}

func (r *fakeRuntime) failCancel(id string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cancelErrs[id] = err
}

func (r *fakeRuntime) failArchive(id string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.archiveErr[id] = err
}

// env is a flapjack MCP server on a fresh database, with a connected client.
type env struct {
	t       *testing.T
	store   *store.Store
	owner   core.Owner
	rt      *fakeRuntime
	server  *mcp.Server
	client  *mcp.ClientSession
	capture *captureTransport
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	st, err := store.Open(filepath.Join(t.TempDir(), "flapjack.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key := make([]byte, 32)
	rand.Read(key)
	box, err := core.NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	owner, err := st.EnsureOwner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rt := &fakeRuntime{cancelErrs: map[string]error{}, archiveErr: map[string]error{}}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc := core.NewService(core.ServiceConfig{
		Store:          st,
		Box:            box,
		Runtimes:       map[string]core.Runtime{core.RuntimeLocal: rt},
		DefaultRuntime: core.RuntimeLocal,
		Logger:         log,
	})
	actor := core.Actor{UserID: owner.UserID, AllOrgs: true, DefaultOrgID: owner.OrgID}
	server := flapjackmcp.NewServer(svc, actor, flapjackmcp.Options{Version: "test", Logger: log, CheckOutput: true})

	e := &env{t: t, store: st, owner: owner, rt: rt, server: server}
	ct, srvT := mcp.NewInMemoryTransports()
	ss, err := server.Connect(ctx, srvT, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	e.capture = &captureTransport{Transport: ct}
	client := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "test"}, nil)
	e.client, err = client.Connect(ctx, e.capture, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.client.Close() })
	return e
}

// call calls a tool and fails the test on a protocol error.
func (e *env) call(name string, args any) *mcp.CallToolResult {
	e.t.Helper()
	res, err := e.client.CallTool(e.t.Context(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		e.t.Fatalf("%s: %v", name, err)
	}
	return res
}

// callOK calls a tool that must succeed and decodes its structured output.
func callOK[T any](e *env, name string, args any) T {
	e.t.Helper()
	res := e.call(name, args)
	if res.IsError {
		e.t.Fatalf("%s(%v): unexpected tool error %s", name, args, text(res))
	}
	var out T
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		e.t.Fatalf("%s: decoding %s: %v", name, b, err)
	}
	var fromText any
	if err := json.Unmarshal([]byte(text(res)), &fromText); err != nil {
		e.t.Errorf("%s: text content is not JSON: %v", name, err)
	} else if diff := cmp.Diff(res.StructuredContent, fromText); diff != "" {
		e.t.Errorf("%s: text content differs from structured content (-structured +text):\n%s", name, diff)
	}
	return out
}

func text(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// errCode returns the code a tool error starts with, "" for a success.
func errCode(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	if !res.IsError {
		return ""
	}
	if len(res.Content) != 1 {
		t.Errorf("tool error has %d content blocks, want 1", len(res.Content))
	}
	code, _, found := strings.Cut(text(res), ": ")
	if !found {
		t.Errorf("tool error %q does not start with a code", text(res))
	}
	return code
}

// setStatus moves a session to status directly in the store.
func (e *env) setStatus(id string, status core.Status, archived bool) {
	e.t.Helper()
	ctx := e.t.Context()
	ss, err := e.store.GetSession(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	ss.Status = status
	ss.Archived = archived
	if status.Terminal() {
		now := time.Now().UTC().Truncate(time.Millisecond)
		ss.CompletedAt = &now
	}
	if _, err := e.store.Apply(ctx, core.Change{Session: ss}); err != nil {
		e.t.Fatal(err)
	}
}

// createAgent creates a template on a public repository.
func (e *env) createAgent(args map[string]any) core.CodeAgent {
	e.t.Helper()
	if args == nil {
		args = map[string]any{}
	}
	if _, ok := args["defaultRepoUrl"]; !ok {
		args["defaultRepoUrl"] = "https://github.com/acme/app"
	}
	return callOK[core.CodeAgent](e, "flapjack_create_code_agent", args)
}

// startSession starts a session of agent in status, archived as given.
func (e *env) startSession(agentID string, status core.Status, archived bool) string {
	e.t.Helper()
	res := callOK[core.StartResult](e, "flapjack_start_code_session", map[string]any{"codeAgentId": agentID, "prompt": "fix it"})
	if status != core.StatusPending || archived {
		e.setStatus(res.SessionID, status, archived)
	}
	return res.SessionID
}

// captureTransport records the raw result of every response the client reads.
type captureTransport struct {
	mcp.Transport
	mu      sync.Mutex
	results []json.RawMessage
}

func (c *captureTransport) Connect(ctx context.Context) (mcp.Connection, error) {
	conn, err := c.Transport.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &captureConn{Connection: conn, t: c}, nil
}

func (c *captureTransport) last() json.RawMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.results[len(c.results)-1]
}

type captureConn struct {
	mcp.Connection
	t *captureTransport
}

func (c *captureConn) Read(ctx context.Context) (jsonrpc.Message, error) {
	m, err := c.Connection.Read(ctx)
	if r, ok := m.(*jsonrpc.Response); ok && err == nil {
		c.t.mu.Lock()
		c.t.results = append(c.t.results, append(json.RawMessage(nil), r.Result...))
		c.t.mu.Unlock()
	}
	return m, err
}
