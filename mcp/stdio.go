package mcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Defaults of the stdio frame guard.
const (
	// DefaultMaxFrame is the longest input line passed on: far above the
	// largest valid request (100,000-character prompt and preamble, JSON
	// escaped), far below what could exhaust memory.
	DefaultMaxFrame = 4 << 20
	// DefaultDrainTimeout bounds how long answers are awaited after stdin
	// closed: the longest tool call (a 25 s wait) with room.
	DefaultDrainTimeout = 60 * time.Second
	// keepForID is how much of an over-long line is kept to find its id.
	keepForID = 4 << 10
)

// JSON-RPC error codes the guard answers with.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
)

// StdioGuard stands between a client's byte stream and the SDK's transport,
// so that no input can end the server: every line that is not a single
// JSON-RPC 2.0 object (not JSON, a batch, a wrong version or id type,
// trailing data, a byte-order mark, an over-long line, a second initialize)
// is answered with a JSON-RPC error, with its id when that can be recovered,
// and the session goes on. At the end of input it waits until every request
// passed on has been answered before it lets the SDK see the end, so piped
// requests all get their answers.
type StdioGuard struct {
	In  io.Reader
	Out io.Writer
	// MaxFrame is the longest line passed on (DefaultMaxFrame); longer lines
	// are skipped without being held whole.
	MaxFrame int
	// DrainTimeout bounds the wait for answers at the end of input
	// (DefaultDrainTimeout).
	DrainTimeout time.Duration
	Log          *slog.Logger

	mu          sync.Mutex
	pending     map[string]int // ids of requests passed on, not yet answered
	answered    chan struct{}  // signalled when pending shrinks
	initialized bool
	out         sync.Mutex // whole lines to Out, from the guard and the SDK
}

// Transport returns the SDK transport fed by the guard. Call it once.
func (g *StdioGuard) Transport() mcp.Transport {
	if g.MaxFrame <= 0 {
		g.MaxFrame = DefaultMaxFrame
	}
	if g.DrainTimeout <= 0 {
		g.DrainTimeout = DefaultDrainTimeout
	}
	if g.Log == nil {
		g.Log = slog.New(slog.DiscardHandler)
	}
	g.pending = map[string]int{}
	g.answered = make(chan struct{}, 1)
	pr, pw := io.Pipe()
	go g.pump(pw)
	// The SDK's own limit stays above ours, so it never ends the session.
	return &mcp.IOTransport{Reader: pr, Writer: &guardWriter{g: g}, MaxLineLength: g.MaxFrame + 1024}
}

// pump reads lines, answers the bad ones and passes the good ones on.
func (g *StdioGuard) pump(pw *io.PipeWriter) {
	r := bufio.NewReaderSize(g.In, 64<<10)
	var line bytes.Buffer
	tooLong := false
	for {
		chunk, err := r.ReadSlice('\n')
		if len(chunk) > 0 {
			if !tooLong && line.Len()+len(chunk) > g.MaxFrame+1 {
				tooLong = true
				// Keep only the start, to find the id.
				if line.Len() < keepForID {
					line.Write(chunk[:min(len(chunk), keepForID-line.Len())])
				}
			} else if !tooLong {
				line.Write(chunk)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if line.Len() > 0 || tooLong {
			if tooLong {
				g.reply(recoverID(line.Bytes()), codeInvalidRequest, "the message is longer than "+strconv.Itoa(g.MaxFrame)+" bytes; it was skipped")
			} else {
				g.check(line.Bytes(), pw)
			}
			line.Reset()
			tooLong = false
		}
		if err != nil {
			break
		}
	}
	g.drain()
	_ = pw.Close()
}

// drain waits until every request passed on was answered, or the timeout.
func (g *StdioGuard) drain() {
	deadline := time.NewTimer(g.DrainTimeout)
	defer deadline.Stop()
	for {
		g.mu.Lock()
		n := len(g.pending)
		g.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-g.answered:
		case <-deadline.C:
			g.Log.Warn("stdin closed with requests still unanswered", "requests", n)
			return
		}
	}
}

// frame is the envelope of a JSON-RPC 2.0 message.
type frame struct {
	JSONRPC *string         `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  *string         `json:"method"`
	Result  json.RawMessage `json:"result"`
	Error   json.RawMessage `json:"error"`
}

// check passes a well-formed message on and answers anything else.
func (g *StdioGuard) check(raw []byte, pw *io.PipeWriter) {
	line := bytes.TrimRight(raw, "\r\n")
	if len(bytes.TrimSpace(line)) == 0 {
		return // blank lines separate nothing; ignore them
	}
	if bytes.HasPrefix(line, []byte("\xef\xbb\xbf")) {
		g.reply(nil, codeParseError, "parse error: the line starts with a byte-order mark")
		return
	}
	if !utf8.Valid(line) {
		g.reply(recoverID(line), codeParseError, "parse error: the line is not valid UTF-8")
		return
	}
	if !json.Valid(line) {
		g.reply(recoverID(line), codeParseError, "parse error: the line is not one JSON value")
		return
	}
	trimmed := bytes.TrimLeft(line, " \t")
	if trimmed[0] == '[' {
		g.reply(nil, codeInvalidRequest, "invalid request: batches are not supported; send one message per line")
		return
	}
	if trimmed[0] != '{' {
		g.reply(nil, codeInvalidRequest, "invalid request: a message must be a JSON object")
		return
	}
	var f frame
	if err := json.Unmarshal(line, &f); err != nil {
		g.reply(recoverID(line), codeInvalidRequest, `invalid request: "jsonrpc" and "method" must be strings, "result" and "error" JSON values`)
		return
	}
	id, idOK := validID(f.ID)
	switch {
	case !idOK:
		g.reply(nil, codeInvalidRequest, "invalid request: id must be a string or an integer")
		return
	case f.JSONRPC == nil || *f.JSONRPC != "2.0":
		g.reply(id, codeInvalidRequest, `invalid request: "jsonrpc" must be "2.0"`)
		return
	case f.Method == nil && f.Result == nil && f.Error == nil:
		g.reply(id, codeInvalidRequest, "invalid request: no method, result or error")
		return
	case f.Method != nil && *f.Method == "initialize":
		g.mu.Lock()
		again := g.initialized
		g.initialized = true
		g.mu.Unlock()
		if again {
			g.reply(id, codeInvalidRequest, "invalid request: the session is already initialized")
			return
		}
	}
	if f.Method != nil && *f.Method == "notifications/cancelled" {
		// A cancelled request may get no answer: stop waiting for it.
		var c struct {
			Params struct {
				RequestID json.RawMessage `json:"requestId"`
			} `json:"params"`
		}
		if json.Unmarshal(line, &c) == nil {
			if rid, ok := validID(c.Params.RequestID); ok && rid != nil {
				g.answer(rid)
			}
		}
	}
	if f.Method != nil && id != nil {
		g.mu.Lock()
		g.pending[string(id)]++
		g.mu.Unlock()
	}
	buf := make([]byte, 0, len(line)+1)
	buf = append(append(buf, line...), '\n')
	_, _ = pw.Write(buf) // fails only once the SDK stopped reading
}

// validID returns the id in canonical JSON (nil when absent), so a request
// and its response match byte for byte, and whether it is allowed: absent, a
// string, or an integer that fits an int64.
func validID(raw json.RawMessage) (json.RawMessage, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, true
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, false
		}
		b, _ := json.Marshal(s)
		return b, true
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return nil, false
		}
		return json.RawMessage(strconv.FormatInt(n, 10)), true
	}
	return nil, false
}

// recoverID finds the id of a message that is not well formed: it reads the
// top-level members of the object in order, as far as they decode, so an id
// that comes before the damage (trailing data, invalid bytes, a cut-off
// line) is found.
func recoverID(line []byte) json.RawMessage {
	dec := json.NewDecoder(bytes.NewReader(line))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return nil
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil
		}
		if key == "id" {
			id, ok := validID(v)
			if !ok {
				return nil
			}
			return id
		}
	}
	return nil
}

// reply writes a JSON-RPC error response.
func (g *StdioGuard) reply(id json.RawMessage, code int, msg string) {
	if id == nil {
		id = json.RawMessage("null")
	}
	b, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}{JSONRPC: "2.0", ID: id, Error: struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, msg}})
	g.Log.Warn("refused a malformed MCP message", "code", code, "reason", msg)
	g.writeLine(append(b, '\n'))
}

func (g *StdioGuard) writeLine(b []byte) {
	g.out.Lock()
	defer g.out.Unlock()
	_, _ = g.Out.Write(b)
}

// answer notes the response to id.
func (g *StdioGuard) answer(id json.RawMessage) {
	canon, ok := validID(id)
	if !ok || canon == nil {
		return
	}
	g.mu.Lock()
	k := string(canon)
	if g.pending[k] > 0 {
		if g.pending[k]--; g.pending[k] == 0 {
			delete(g.pending, k)
		}
	}
	g.mu.Unlock()
	select {
	case g.answered <- struct{}{}:
	default:
	}
}

// guardWriter is the SDK's side of stdout: whole lines, serialized with the
// guard's own answers, and every response noted.
type guardWriter struct {
	g   *StdioGuard
	buf []byte
}

func (w *guardWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := w.buf[:i+1]
		w.g.writeLine(line)
		var f frame
		if json.Unmarshal(line, &f) == nil && f.Method == nil && (f.Result != nil || f.Error != nil) {
			w.g.answer(f.ID)
		}
		w.buf = w.buf[i+1:]
	}
}

func (w *guardWriter) Close() error { return nil }

// RunStdio serves s on stdio behind a StdioGuard until the input ends and
// every request read was answered, or ctx ends.
func RunStdio(ctx context.Context, s *mcp.Server, in io.Reader, out io.Writer, log *slog.Logger) error {
	g := &StdioGuard{In: in, Out: out, Log: log}
	return s.Run(ctx, g.Transport())
}
