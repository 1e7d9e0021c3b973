package restshim

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/flapjack-dev/flapjack/core"
)

// MCPPath is where flapjack serve offers the MCP server over Streamable HTTP.
const MCPPath = "/mcp"

// Defaults of the MCP endpoint.
const (
	// mcpRecheck is how often the token behind each MCP session is checked
	// again, so a revoked token ends its open sessions (streams included).
	mcpRecheck = 5 * time.Second
	// mcpIdle ends MCP sessions that saw no request for this long.
	mcpIdle = 30 * time.Minute
)

// NewMCPServer makes the MCP server of one client session, acting as actor
// (the mcp package's NewServer, which this package does not import).
type NewMCPServer func(actor core.Actor) *sdk.Server

// mcpEndpoint is the MCP server over Streamable HTTP, authenticated by the
// same bearer tokens as the REST API and acting as the token's user. Each
// MCP session is bound to the user and token that opened it: another user's
// requests cannot reach it, and it ends when its token is revoked.
type mcpEndpoint struct {
	h         *Handler
	newServer NewMCPServer
	sdk       *sdk.StreamableHTTPHandler

	mu       sync.Mutex
	sessions map[string]*mcpOwner // Mcp-Session-Id → who opened it
	stop     chan struct{}
	stopOnce sync.Once
}

// mcpOwner is who opened an MCP session, and its server.
type mcpOwner struct {
	userID string
	token  string
	server *sdk.Server
}

// Context keys of an MCP request: the authenticated actor, and for a new
// session the owner record its server is bound to.
type (
	mcpActorKey struct{}
	mcpOwnerKey struct{}
)

func newMCPEndpoint(h *Handler, newServer NewMCPServer) *mcpEndpoint {
	e := &mcpEndpoint{h: h, newServer: newServer, sessions: map[string]*mcpOwner{}, stop: make(chan struct{})}
	e.sdk = sdk.NewStreamableHTTPHandler(e.server, &sdk.StreamableHTTPOptions{
		Logger:         h.log,
		SessionTimeout: mcpIdle,
	})
	go e.recheck()
	return e
}

// server is the SDK's getServer: a new session gets a server acting as the
// request's actor; the owner record learns it and binds it to the session
// id once the SDK assigned one.
func (e *mcpEndpoint) server(r *http.Request) *sdk.Server {
	a, _ := r.Context().Value(mcpActorKey{}).(core.Actor)
	s := e.newServer(a)
	if o, ok := r.Context().Value(mcpOwnerKey{}).(*mcpOwner); ok {
		o.server = s
	}
	return s
}

// ServeHTTP authenticates, checks Origin and the session's owner, and hands
// the request to the SDK.
func (e *mcpEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		// A browser page of another site (DNS rebinding, CSRF) must not reach
		// a local MCP server, as the MCP specification asks.
		writeErrorBody(w, http.StatusForbidden, "FORBIDDEN", "requests from another origin are refused")
		return
	}
	e.h.authed(func(w http.ResponseWriter, r *http.Request, a core.Actor) {
		if r.Method == http.MethodGet {
			// The server's notification stream lives as long as the session,
			// past serve's write timeout; sessions end on idle, revocation
			// and shutdown.
			_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		}
		tok, _ := bearer(r.Header.Get("Authorization"))
		if id := r.Header.Get("Mcp-Session-Id"); id != "" {
			e.mu.Lock()
			o := e.sessions[id]
			e.mu.Unlock()
			if o != nil && o.userID != a.UserID {
				// Another user's session is, to this caller, no session.
				writeErrorBody(w, http.StatusNotFound, string(core.CodeNotFound), "no such MCP session")
				return
			}
			if o != nil {
				// The session now answers to the token last used with it.
				e.mu.Lock()
				o.token = tok
				e.mu.Unlock()
			}
			ctx := context.WithValue(r.Context(), mcpActorKey{}, a)
			e.sdk.ServeHTTP(w, r.WithContext(ctx))
			return
		}
		o := &mcpOwner{userID: a.UserID, token: tok}
		ctx := context.WithValue(context.WithValue(r.Context(), mcpActorKey{}, a), mcpOwnerKey{}, o)
		bw := &bindWriter{ResponseWriter: w, bind: func(id string) {
			if id == "" || o.server == nil {
				return
			}
			e.mu.Lock()
			e.sessions[id] = o
			e.mu.Unlock()
		}}
		e.sdk.ServeHTTP(bw, r.WithContext(ctx))
	})(w, r)
}

// sameOrigin accepts requests without Origin (non-browser clients) and those
// whose Origin is the server's own (scheme and host as the request reached it).
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return strings.EqualFold(u.Scheme, scheme) && strings.EqualFold(u.Host, r.Host)
}

// bindWriter learns the session id the SDK assigns, from its response header.
type bindWriter struct {
	http.ResponseWriter
	bind  func(id string)
	bound bool
}

func (b *bindWriter) WriteHeader(code int) {
	if !b.bound {
		b.bound = true
		if code < 300 {
			b.bind(b.Header().Get("Mcp-Session-Id"))
		}
	}
	b.ResponseWriter.WriteHeader(code)
}

func (b *bindWriter) Write(p []byte) (int, error) {
	if !b.bound {
		b.WriteHeader(http.StatusOK)
	}
	return b.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (flushes,
// deadlines) through the wrapper.
func (b *bindWriter) Unwrap() http.ResponseWriter { return b.ResponseWriter }

// Flush passes flushes on: the SDK streams over SSE.
func (b *bindWriter) Flush() {
	if f, ok := b.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// recheck ends the sessions whose token was revoked, and forgets those that
// ended on their own.
func (e *mcpEndpoint) recheck() {
	t := time.NewTicker(mcpRecheck)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		e.sweep(context.Background())
	}
}

// sweep is one pass of recheck.
func (e *mcpEndpoint) sweep(ctx context.Context) {
	e.mu.Lock()
	owners := make(map[string]*mcpOwner, len(e.sessions))
	for id, o := range e.sessions {
		owners[id] = o
	}
	e.mu.Unlock()
	for id, o := range owners {
		live := false
		for range o.server.Sessions() {
			live = true
		}
		revoked := false
		if live {
			_, err := e.h.auth.Authenticate(ctx, o.token)
			revoked = errors.Is(err, ErrUnauthenticated)
		}
		if !live || revoked {
			for ss := range o.server.Sessions() {
				_ = ss.Close()
			}
			e.mu.Lock()
			delete(e.sessions, id)
			e.mu.Unlock()
		}
	}
}

// close ends every MCP session (shutdown).
func (e *mcpEndpoint) close() {
	e.stopOnce.Do(func() { close(e.stop) })
	e.mu.Lock()
	owners := make([]*mcpOwner, 0, len(e.sessions))
	for _, o := range e.sessions {
		owners = append(owners, o)
	}
	e.mu.Unlock()
	for _, o := range owners {
		for ss := range o.server.Sessions() {
			_ = ss.Close()
		}
	}
}
