// Package restshim serves the Code Agents API over HTTP, as documented in
// spec/code-agents-api.md and in the OpenAPI document it embeds. It is a thin
// adapter over core.Service: handlers authenticate, decode strictly, call the
// Service and encode its result; every rule about agents and sessions lives in
// core. Tokens are resolved by an Authenticator, so storage stays outside.
package restshim

import (
	"bufio"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// Options configure a Handler. Zero values get the documented defaults.
type Options struct {
	// Logger receives the access log and internal errors; nil discards.
	Logger *slog.Logger
	// AccessLog gets one line per request (default Logger); serve gives it
	// a LogBuffer, so a busy server does not write once per request.
	AccessLog *slog.Logger
	// Heartbeat is the interval of comment lines on idle event streams, so
	// proxies and clients can tell a quiet stream from a dead one (15 s).
	Heartbeat time.Duration
	// StreamPoll is how often an event stream re-reads the log when no
	// commit woke it (15 s): only a safety net, since commits (this
	// process's at once, other processes' within tens of milliseconds) wake
	// streams; a shorter one makes idle streams cost CPU.
	StreamPoll time.Duration
	// StreamWriteTimeout bounds each write of an event stream: a client that
	// stops reading is dropped after it (30 s).
	StreamWriteTimeout time.Duration
	// MCP, when set, serves the MCP server over Streamable HTTP at /mcp with
	// the same tokens, one server per MCP session acting as the token's user.
	MCP NewMCPServer
	// Redactor is the last net over error messages on their way out (the
	// Service already redacts at the source); nil redacts nothing more.
	Redactor *core.Redactor
}

// Route is one operation of the API.
type Route struct {
	Method string
	// Path is the ServeMux path, with {name} wildcards as in the OpenAPI document.
	Path        string
	OperationID string
	// Public routes answer without a token; every other route requires one.
	Public bool
}

// Handler is the REST API as an http.Handler.
type Handler struct {
	svc    *core.Service
	auth   Authenticator
	log    *slog.Logger
	opts   Options
	mux    *http.ServeMux
	routes []Route

	// closing is closed by CloseStreams, so event streams end on shutdown.
	closing   chan struct{}
	closeOnce sync.Once
	mcp       *mcpEndpoint
	// web holds the dashboard's sign-ins (dashboard.go).
	web *webSessions
	// bufs holds *[]byte for answers that append their own JSON, so a
	// page of events (~55 KB) is not a fresh allocation per request.
	bufs sync.Pool
}

// New returns the API over svc; auth resolves bearer tokens.
func New(svc *core.Service, auth Authenticator, opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if _, ok := opts.Logger.Handler().(requestIDHandler); !ok {
		opts.Logger = slog.New(LogHandler(opts.Logger.Handler()))
	}
	if opts.AccessLog == nil {
		opts.AccessLog = opts.Logger
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 15 * time.Second
	}
	if opts.StreamPoll <= 0 {
		opts.StreamPoll = 15 * time.Second
	}
	if opts.StreamWriteTimeout <= 0 {
		opts.StreamWriteTimeout = 30 * time.Second
	}
	h := &Handler{svc: svc, auth: auth, log: opts.Logger, opts: opts, mux: http.NewServeMux(), closing: make(chan struct{}), web: newWebSessions()}
	h.handle(Route{"GET", "/healthz", "health", true}, h.health)
	h.handle(Route{"GET", "/openapi.json", "openapi", true}, h.openAPI)
	h.api(Route{Method: "GET", Path: "/api/code-agents", OperationID: "listCodeAgents"}, h.listAgents)
	h.api(Route{Method: "POST", Path: "/api/code-agents", OperationID: "createCodeAgent"}, h.createAgent)
	h.api(Route{Method: "GET", Path: "/api/code-agents/{codeAgentId}", OperationID: "getCodeAgent"}, h.getAgent)
	h.api(Route{Method: "PATCH", Path: "/api/code-agents/{codeAgentId}", OperationID: "updateCodeAgent"}, h.updateAgent)
	h.api(Route{Method: "DELETE", Path: "/api/code-agents/{codeAgentId}", OperationID: "deleteCodeAgent"}, h.deleteAgent)
	h.api(Route{Method: "GET", Path: "/api/code-sessions", OperationID: "listCodeSessions"}, h.listSessions)
	h.api(Route{Method: "POST", Path: "/api/code-sessions", OperationID: "startCodeSession"}, h.startSession)
	h.api(Route{Method: "GET", Path: "/api/code-sessions/{codeSessionId}", OperationID: "getCodeSession"}, h.getSession)
	h.api(Route{Method: "PATCH", Path: "/api/code-sessions/{codeSessionId}", OperationID: "updateCodeSession"}, h.updateSession)
	h.api(Route{Method: "POST", Path: "/api/code-sessions/{codeSessionId}/messages", OperationID: "sendCodeSessionMessage"}, h.sendMessage)
	h.api(Route{Method: "GET", Path: "/api/code-sessions/{codeSessionId}/events", OperationID: "listCodeSessionEvents"}, h.listEvents)
	h.handle(Route{Method: "GET", Path: "/api/code-sessions/{codeSessionId}/events/stream", OperationID: "streamCodeSessionEvents"}, h.authed(h.streamEvents))
	h.api(Route{Method: "POST", Path: "/api/code-sessions/{codeSessionId}/cancel", OperationID: "cancelCodeSession"}, h.cancel)
	h.api(Route{Method: "POST", Path: "/api/code-sessions/{codeSessionId}/archive", OperationID: "archiveCodeSession"}, h.archive)
	if opts.MCP != nil {
		h.mcp = newMCPEndpoint(h, opts.MCP)
		h.mux.Handle(MCPPath, h.mcp)
	}
	h.fallbacks()
	h.registerDashboard()
	return h
}

// Routes lists every operation the Handler serves, in registration order.
func (h *Handler) Routes() []Route { return append([]Route(nil), h.routes...) }

// CloseStreams ends every open event stream cleanly and makes new ones end at
// once; give it to http.Server.RegisterOnShutdown, because Shutdown waits for
// handlers and a stream would otherwise never return.
func (h *Handler) CloseStreams() {
	h.closeOnce.Do(func() {
		close(h.closing)
		if h.mcp != nil {
			h.mcp.close()
		}
	})
}

func (h *Handler) handle(rt Route, fn http.HandlerFunc) {
	h.routes = append(h.routes, rt)
	h.mux.HandleFunc(rt.Method+" "+rt.Path, fn)
}

// apiFunc is a JSON operation: it returns the success status and body.
type apiFunc func(w http.ResponseWriter, r *http.Request, a core.Actor) (int, any, error)

// api registers an authenticated JSON operation.
func (h *Handler) api(rt Route, fn apiFunc) {
	h.handle(rt, h.authed(func(w http.ResponseWriter, r *http.Request, a core.Actor) {
		status, body, err := fn(w, r, a)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		switch b := body.(type) {
		case pooledJSON:
			h.writePooled(w, status, b)
			return
		case jsonAppender:
			h.writeAppended(w, status, b)
			return
		}
		writeJSON(w, status, body)
	}))
}

// fallbacks answer what no route matches with the API's error body: 405 with
// Allow for a known path and another method, 404 for anything else. Both
// require a token on non-public paths, so nothing answers without one.
func (h *Handler) fallbacks() {
	methods := map[string][]string{}
	public := map[string]bool{}
	for _, rt := range h.routes {
		methods[rt.Path] = append(methods[rt.Path], rt.Method)
		public[rt.Path] = rt.Public
	}
	for path, ms := range methods {
		sort.Strings(ms)
		allow := strings.Join(ms, ", ")
		notAllowed := func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeErrorBody(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method "+r.Method+" is not allowed here; allowed: "+allow)
		}
		if public[path] {
			h.mux.HandleFunc(path, notAllowed)
		} else {
			h.mux.HandleFunc(path, h.authed(func(w http.ResponseWriter, r *http.Request, _ core.Actor) { notAllowed(w, r) }))
		}
	}
	h.mux.HandleFunc("/", h.authed(func(w http.ResponseWriter, r *http.Request, _ core.Actor) {
		writeErrorBody(w, http.StatusNotFound, string(core.CodeNotFound), "no such route: "+clip(r.URL.Path))
	}))
}

// Transport-level error codes, for failures that happen before the Service
// is reached. Everything else carries the Service's codes.
const (
	CodeUnauthorized     = "UNAUTHORIZED"
	CodeMethodNotAllowed = "METHOD_NOT_ALLOWED"
)

// unauthorizedMessage is the one answer to every missing, malformed, unknown
// or revoked token, so a caller learns nothing about which it was.
const unauthorizedMessage = "a valid API token is required: send Authorization: Bearer fj_live_... (create one with: flapjack token create)"

// authed resolves the bearer token before fn runs; without one, the
// dashboard's cookie (see dashboard.go), whose changing requests must come
// from the page itself.
func (h *Handler) authed(fn func(http.ResponseWriter, *http.Request, core.Actor)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// The token is the bearer's, else the dashboard session's; forget
		// names what to drop when the token turns out revoked.
		tok, forget := "", func() {}
		if r.Header.Get("Authorization") == "" {
			if s, cookie, ok := h.webSessionOf(r); ok {
				if !safeMethod(r.Method) && !fromThePage(r, s) {
					writeErrorBody(w, http.StatusForbidden, CodeUnauthorized, "a signed-in dashboard request that changes something must come from the dashboard page (Origin and "+csrfHeader+")")
					return
				}
				tok, forget = s.token, func() { h.web.remove(cookie) }
			}
		}
		if tok == "" {
			var ok bool
			if tok, ok = bearer(r.Header.Get("Authorization")); !ok || !WellFormedToken(tok) {
				unauthorized(w)
				return
			}
		}
		a, err := h.auth.Authenticate(r.Context(), tok)
		if errors.Is(err, ErrUnauthenticated) {
			forget()
			unauthorized(w)
			return
		}
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		if info := infoFrom(r.Context()); info != nil {
			info.user = a.UserID
		}
		fn(w, r, a)
	}
}

// bearer extracts the token of "Bearer <token>"; the scheme is
// case-insensitive (RFC 9110), the token is not.
func bearer(header string) (string, bool) {
	const scheme = "bearer "
	if len(header) <= len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return "", false
	}
	return strings.TrimLeft(header[len(scheme):], " "), true
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", "Bearer")
	writeErrorBody(w, http.StatusUnauthorized, CodeUnauthorized, unauthorizedMessage)
}

// statusError is a client error whose HTTP status is not its code's default
// (413 and 415 are VALIDATION_ERRORs with a more precise status).
type statusError struct {
	status int
	err    *core.Error
}

func (e *statusError) Error() string { return e.err.Error() }

// writeError answers with the error body. Internal causes are logged, never
// shown; a request whose client has gone gets no answer.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var se *statusError
	if errors.As(err, &se) {
		writeErrorBody(w, se.status, string(se.err.Code), se.err.Message)
		return
	}
	if r.Context().Err() != nil && (errors.Is(err, r.Context().Err())) {
		if info := infoFrom(r.Context()); info != nil {
			info.clientGone = true
		}
		return
	}
	e := core.AsError(err)
	if e.Code == core.CodeInternal {
		h.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", errors.Unwrap(e))
	}
	writeErrorBody(w, e.Code.HTTPStatus(), string(e.Code), h.opts.Redactor.String(e.Message))
}

// errorBody is the API's error object.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeErrorBody(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: msg}})
}

// streamedArray is an answer written as a JSON array while it is produced:
// each calls yield per element, in order, and stops when yield returns
// false (the client is gone).
type streamedArray[T any] func(yield func(T) bool) error

// writeStream answers 200 with the elements as a JSON array, through a
// buffer. A failure half-way cannot become an error answer any more, so
// the connection is cut instead: the client sees a broken body, never a
// short list that looks whole.
func (s streamedArray[T]) writeStream(w http.ResponseWriter) {
	setJSONHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	sep := byte('[')
	var werr error
	var buf []byte // reused by types that append their JSON
	err := s(func(v T) bool {
		if werr = bw.WriteByte(sep); werr != nil {
			return false
		}
		sep = ','
		var b []byte
		// A type's own JSON directly: through json.Marshal its output would
		// be parsed and compacted again, a third of the cost.
		if a, ok := any(v).(jsonAppender); ok {
			buf = a.AppendJSON(buf[:0])
			b = buf
		} else if m, ok := any(v).(json.Marshaler); ok {
			b, werr = m.MarshalJSON()
		} else {
			b, werr = json.Marshal(v)
		}
		if werr == nil {
			_, werr = bw.Write(b)
		}
		return werr == nil
	})
	if err == nil && werr == nil {
		if sep == '[' {
			bw.WriteByte('[')
		}
		bw.WriteString("]\n")
		werr = bw.Flush()
	}
	if err != nil || werr != nil {
		panic(http.ErrAbortHandler)
	}
}

// jsonAppender is a type that appends its own JSON (sessions, events).
type jsonAppender interface{ AppendJSON([]byte) []byte }

// streamer is an answer that writes itself.
type streamer interface{ writeStream(w http.ResponseWriter) }

// writeAppended answers with v's own JSON, written into a pooled buffer.
func (h *Handler) writeAppended(w http.ResponseWriter, status int, v jsonAppender) {
	bp := h.getBuf()
	h.writePooled(w, status, pooledJSON{bp, v.AppendJSON((*bp)[:0])})
}

// pooledJSON is an answer's JSON already written, b, in a buffer from
// getBuf.
type pooledJSON struct {
	buf *[]byte
	b   []byte
}

// writePooled answers with p and gives its buffer back.
func (h *Handler) writePooled(w http.ResponseWriter, status int, p pooledJSON) {
	b := append(p.b, '\n')
	setJSONHeaders(w.Header())
	w.WriteHeader(status)
	w.Write(b)
	h.putBuf(p.buf, b)
}

// getBuf returns a buffer for an answer, empty; give it back with putBuf.
func (h *Handler) getBuf() *[]byte {
	bp, _ := h.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	*bp = (*bp)[:0]
	return bp
}

// putBuf keeps b, the buffer bp grew to, for the next answer.
func (h *Handler) putBuf(bp *[]byte, b []byte) {
	if cap(b) <= maxPooledBuffer {
		*bp = b
		h.bufs.Put(bp)
	}
}

// maxPooledBuffer is the largest buffer kept for the next answer: a rare
// huge page (up to core.MaxEventPageBytes) is let go, not held forever.
const maxPooledBuffer = 1 << 20

// setJSONHeaders sets what every JSON answer carries. API answers hold
// private data, so no cache may keep them.
func setJSONHeaders(hdr http.Header) {
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
}

// writeJSON answers with v as JSON. API answers hold private data, so no
// cache may keep them.
func writeJSON(w http.ResponseWriter, status int, v any) {
	if s, ok := v.(streamer); ok {
		s.writeStream(w)
		return
	}
	var b []byte
	var err error
	// A type that writes itself (an events page) is taken as written:
	// through json.Marshal its output would be parsed and compacted again.
	if m, ok := v.(json.Marshaler); ok {
		b, err = m.MarshalJSON()
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody{Error: errorDetail{Code: string(core.CodeInternal), Message: "internal error"}})
	}
	setJSONHeaders(w.Header())
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// ---- Public routes ----

func (h *Handler) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, core.OKResult{OK: true})
}

func (h *Handler) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write([]byte(openAPIDocument))
}
