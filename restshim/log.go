package restshim

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// reqInfo travels with a request so the access log can name its id, its
// user and how it ended.
type reqInfo struct {
	id         string
	user       string
	clientGone bool
}

type ctxKey struct{}

func infoFrom(ctx context.Context) *reqInfo {
	i, _ := ctx.Value(ctxKey{}).(*reqInfo)
	return i
}

// RequestID returns the id of the request ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	if i := infoFrom(ctx); i != nil {
		return i.id
	}
	return ""
}

// ServeHTTP gives the request an id (X-Request-Id), answers a panic with a
// 500 instead of a dropped connection, and writes one access-log line. The
// line holds the path without the query string and never a header, so no
// token or secret reaches the log.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	info := &reqInfo{id: requestID(r.Header.Get("X-Request-Id"))}
	w.Header().Set("X-Request-Id", info.id)
	ctx := context.WithValue(r.Context(), ctxKey{}, info)
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		p := recover()
		if p != nil && p != http.ErrAbortHandler {
			h.log.ErrorContext(ctx, "panic serving request", "method", r.Method, "path", r.URL.Path,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			if sw.status == 0 {
				writeErrorBody(sw, http.StatusInternalServerError, string(core.CodeInternal), "internal error")
			}
		}
		status := sw.status
		if info.clientGone && status == 0 {
			status = 499 // the client closed the request first (nginx's convention)
		}
		// Straight to the handler: a Logger would also look up the
		// caller's frame, which the line does not show.
		if access := h.opts.AccessLog.Handler(); access.Enabled(ctx, slog.LevelInfo) {
			end := time.Now()
			rec := slog.NewRecord(end, slog.LevelInfo, "request", 0)
			rec.AddAttrs(
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.Int("status", status),
				slog.Float64("duration_ms", float64(end.Sub(start).Microseconds())/1000),
				slog.Int64("bytes", sw.bytes),
				slog.String("user", info.user),
			)
			access.Handle(ctx, rec)
		}
		if p == http.ErrAbortHandler {
			panic(p)
		}
	}()
	h.mux.ServeHTTP(sw, r.WithContext(ctx))
}

// requestID keeps a client's request id when it is short and plain (so it
// can be correlated with the client's logs), else makes one.
func requestID(client string) string {
	if n := len(client); n > 0 && n <= 64 {
		ok := true
		for i := 0; i < n && ok; i++ {
			c := client[i]
			ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':'
		}
		if ok {
			return client
		}
	}
	return newRequestID()
}

// newRequestID returns "req-" and 20 random base32 characters, the shape
// of core.NewID's ids. Its 100 bits come from math/rand/v2 (ChaCha8, seeded
// by the OS, per thread): an id needs to be unique and not to count the
// server's requests, not to be a secret, and this costs a tenth of a
// crypto/rand read on every request.
func newRequestID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	b := [24]byte{'r', 'e', 'q', '-'}
	var x uint64
	for i := 4; i < len(b); i, x = i+1, x>>5 {
		if (i-4)%12 == 0 { // 12 characters of 5 bits from each draw
			x = rand.Uint64()
		}
		b[i] = alphabet[x&31]
	}
	return string(b[:])
}

// statusWriter records the status and size of a response. It unwraps for
// http.ResponseController, so flushing and deadlines reach the connection.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush lets plain http.Flusher users flush through the wrapper.
func (w *statusWriter) Flush() {
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// LogHandler wraps a slog.Handler so that every record logged with a
// request's context carries its request_id: the Service's own error logs
// then match the access-log line of the request that caused them.
func LogHandler(next slog.Handler) slog.Handler { return requestIDHandler{next} }

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
