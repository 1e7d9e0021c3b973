package restshim

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/flapjack-dev/flapjack/core"
	flapjackmcp "github.com/flapjack-dev/flapjack/mcp"
)

// mcpEnv is an env whose handler serves /mcp, on a plain loopback server
// (MCP responses are not part of the REST API's OpenAPI document).
func mcpEnv(t *testing.T) (*env, *httptest.Server) {
	t.Helper()
	e := newEnv(t)
	h := New(e.svc, NewTokenAuthenticator(e.store, nil), Options{MCP: func(a core.Actor) *sdk.Server {
		return flapjackmcp.NewServer(e.svc, a, flapjackmcp.Options{Version: "test"})
	}})
	srv := httptest.NewServer(h)
	t.Cleanup(func() { h.CloseStreams(); srv.Close() })
	e.h = h
	return e, srv
}

// headerTransport adds a bearer token to every request.
type headerTransport struct {
	token  string
	origin string
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+h.token)
	if h.origin != "" {
		r.Header.Set("Origin", h.origin)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func mcpConnect(t *testing.T, url, token string) (*sdk.ClientSession, error) {
	t.Helper()
	c := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "test"}, nil)
	return c.Connect(t.Context(), &sdk.StreamableClientTransport{Endpoint: url + MCPPath,
		HTTPClient: &http.Client{Transport: headerTransport{token: token}}}, nil)
}

// TestMCPOverHTTPActsAsTheTokensUser: tools act as the token's user in its
// orgs, not as the local owner; another user's token cannot use the session;
// a revoked token's sessions end.
func TestMCPOverHTTPActsAsTheTokensUser(t *testing.T) {
	e, srv := mcpEnv(t)
	ctx := context.Background()
	org, err := e.store.CreateOrg(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	_, otherTok := e.user("mallory", org.ID)
	owner, err := mcpConnect(t, srv.URL, e.token)
	if err != nil {
		t.Fatal(err)
	}
	res, err := owner.CallTool(ctx, &sdk.CallToolParams{Name: "flapjack_create_code_agent", Arguments: map[string]any{"defaultRepoUrl": "https://github.com/acme/app"}})
	if err != nil || res.IsError {
		t.Fatalf("create agent: %v %v", res, err)
	}
	other, err := mcpConnect(t, srv.URL, otherTok)
	if err != nil {
		t.Fatal(err)
	}
	res, err = other.CallTool(ctx, &sdk.CallToolParams{Name: "flapjack_list_code_agents", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("list agents as mallory: %v %v", res, err)
	}
	if txt := res.Content[0].(*sdk.TextContent).Text; strings.Contains(txt, "acme/app") {
		t.Errorf("mallory sees the owner's agent: %s", txt)
	}

	// Mallory's token with the owner's MCP session id is no session.
	req, _ := http.NewRequest("POST", srv.URL+MCPPath, strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"tools/list"}`))
	req.Header.Set("Authorization", "Bearer "+otherTok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", owner.ID())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("another user's session: %d %s, want 404", resp.StatusCode, body)
	}

	// Revoking the owner's token ends the owner's sessions at the next check.
	toks, _ := e.store.ListTokens(ctx)
	for _, tk := range toks {
		if tk.Name == "owner" {
			if err := e.store.RevokeToken(ctx, tk.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.h.mcp.sweep(ctx)
	e.h.mcp.mu.Lock()
	n := len(e.h.mcp.sessions)
	e.h.mcp.mu.Unlock()
	if n != 1 {
		t.Errorf("%d MCP sessions left after revoking one of two tokens, want 1", n)
	}
	if _, err := owner.CallTool(ctx, &sdk.CallToolParams{Name: "flapjack_list_code_agents", Arguments: map[string]any{}}); err == nil {
		t.Error("a call on a revoked token's session succeeded")
	}
}

// TestMCPOverHTTPChecksOrigin: a browser page of another origin is refused;
// no Origin (non-browser clients) or the server's own is accepted.
func TestMCPOverHTTPChecksOrigin(t *testing.T) {
	e, srv := mcpEnv(t)
	for _, tc := range []struct {
		origin string
		want   int
	}{
		{"http://evil.example", http.StatusForbidden},
		{"null", http.StatusForbidden},
		{"https://" + strings.TrimPrefix(srv.URL, "http://"), http.StatusForbidden},
		{srv.URL, http.StatusOK},
		{"", http.StatusOK},
	} {
		req, _ := http.NewRequest("POST", srv.URL+MCPPath, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`))
		req.Header.Set("Authorization", "Bearer "+e.token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("Origin %q: %d, want %d", tc.origin, resp.StatusCode, tc.want)
		}
	}
}
