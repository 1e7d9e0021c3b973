package cloud

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/flapjack-dev/flapjack/core"
)

// Client defaults. Cursor documents no timeouts; these are what a user waiting
// on a session would tolerate.
const (
	DefaultBaseURL = "https://api.cursor.com"
	// DefaultRequestTimeout bounds one request (not a stream) from connect to the
	// end of its body.
	DefaultRequestTimeout = 60 * time.Second
	// DefaultStreamIdleTimeout is how long a run stream may stay silent before it
	// counts as dropped; Cursor sends a heartbeat about every 15 s.
	DefaultStreamIdleTimeout = 60 * time.Second
	// DefaultMaxRetries is how many times a 429, a 5xx or a failed connection is
	// retried before the error is returned.
	DefaultMaxRetries = 4
	// maxRetryAfter caps a Retry-After we honour, so a bogus header cannot park
	// a session for a day.
	maxRetryAfter = 5 * time.Minute
	// backoffBase and backoffMax shape the exponential backoff used when the
	// server gives no Retry-After: 1s, 2s, 4s, ... up to 30s.
	backoffBase = time.Second
	backoffMax  = 30 * time.Second
	// maxBodyBytes bounds a JSON response we read into memory.
	maxBodyBytes = 16 << 20
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// BaseURL is the API root, DefaultBaseURL when empty.
	BaseURL string
	// APIKey is the Cursor API key: sent as the Basic user name, never logged.
	APIKey string
	// HTTPClient must have no Timeout of its own (streams run for hours); nil
	// means a plain client on the default transport.
	HTTPClient *http.Client
	// UserAgent is sent on every request ("flapjack/<version>").
	UserAgent         string
	RequestTimeout    time.Duration
	StreamIdleTimeout time.Duration
	// MaxRetries: 0 means DefaultMaxRetries, a negative value no retries.
	MaxRetries int
	// Sleep waits between retries; tests inject one that does not really wait.
	// It must return early with ctx's error when ctx ends.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Client speaks Cursor's Cloud Agents API v1 with one API key.
type Client struct {
	base        *url.URL
	auth        string
	key         string
	redactor    *core.Redactor
	http        *http.Client
	userAgent   string
	timeout     time.Duration
	idleTimeout time.Duration
	maxRetries  int
	sleep       func(context.Context, time.Duration) error
}

// NewClient checks cfg and returns a Client.
func NewClient(cfg ClientConfig) (*Client, error) {
	base, err := parseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base:        base,
		auth:        "Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.APIKey+":")),
		key:         cfg.APIKey,
		redactor:    core.NewRedactor(cfg.APIKey),
		http:        cfg.HTTPClient,
		userAgent:   cfg.UserAgent,
		timeout:     cfg.RequestTimeout,
		idleTimeout: cfg.StreamIdleTimeout,
		maxRetries:  cfg.MaxRetries,
		sleep:       cfg.Sleep,
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if c.userAgent == "" {
		c.userAgent = "flapjack"
	}
	if c.timeout <= 0 {
		c.timeout = DefaultRequestTimeout
	}
	if c.idleTimeout <= 0 {
		c.idleTimeout = DefaultStreamIdleTimeout
	}
	switch {
	case c.maxRetries == 0:
		c.maxRetries = DefaultMaxRetries
	case c.maxRetries < 0:
		c.maxRetries = 0
	}
	if c.sleep == nil {
		c.sleep = SleepContext
	}
	return c, nil
}

// parseBaseURL accepts an http or https URL with a host and an optional path prefix.
func parseBaseURL(raw string) (*url.URL, error) {
	if raw == "" {
		raw = DefaultBaseURL
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("cursor API URL %q: want http(s)://host[/prefix] without credentials or query", raw)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// SleepContext waits for d or until ctx ends.
func SleepContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ---- Errors ----

// APIError is an error answer of the API: its HTTP status and Cursor's own code
// and message, kept so callers can tell agent_busy from run_not_cancellable.
type APIError struct {
	Status  int
	Code    string
	Message string
	// RetryAfter is the server's Retry-After, 0 when absent.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Cursor API answered %d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// ErrorCode returns Cursor's error code of err ("agent_busy"), or "".
func ErrorCode(err error) string {
	var e *APIError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// HTTPStatus returns the HTTP status of an API error, or 0.
func HTTPStatus(err error) int {
	var e *APIError
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// retryable reports whether the status is one we retry: rate limited or a
// server-side failure.
func retryable(status int) bool { return status == http.StatusTooManyRequests || status >= 500 }

// readAPIError turns an error response into an APIError. A body that is not
// Cursor's error object (a proxy's HTML page) leaves Code empty.
func (c *Client) readAPIError(resp *http.Response) *APIError {
	e := &APIError{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &body) == nil {
		// Never passed through raw: an upstream may echo the request's
		// Authorization header in either field.
		e.Code = upstreamText(c.redact(body.Error.Code), maxUpstreamCode)
		e.Message = upstreamText(c.redact(body.Error.Message), maxUpstreamMessage)
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

// parseRetryAfter reads Retry-After as seconds (what Cursor sends) or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return min(time.Duration(n*float64(time.Second)), maxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}

// Bounds of what an upstream error may put into flapjack's errors and events.
const (
	maxUpstreamCode    = 64
	maxUpstreamMessage = 500
)

// redact keeps the key, in every form it takes, out of anything the server
// echoes back.
func (c *Client) redact(s string) string { return c.redactor.String(s) }

// upstreamText makes an upstream string safe to store and show: valid UTF-8,
// control characters as spaces, at most max runes.
func upstreamText(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max]) + "…"
	}
	return s
}

// backoff is the wait before retry number attempt (0-based) when the server
// gave no Retry-After.
func backoff(attempt int) time.Duration {
	d := backoffBase
	for range attempt {
		d *= 2
		if d >= backoffMax {
			return backoffMax
		}
	}
	return d
}

// notSent reports whether a transport error happened before the request could
// reach the server (no connection), so even a non-idempotent call may be retried.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// ---- Requests ----

// call describes one API call.
type call struct {
	method string
	path   string
	query  url.Values
	body   any
	// idempotent calls are also retried after a 5xx or a transport error that
	// may have happened after the server received the request.
	idempotent bool
	// once makes a single attempt: the caller retries, because it has work
	// to do between attempts (see CreateAgent).
	once bool
}

// url joins the base URL and an already escaped path.
func (c *Client) url(path string, q url.Values) string {
	s := c.base.String() + path
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s
}

func (c *Client) newRequest(ctx context.Context, cl call, payload []byte) (*http.Request, error) {
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, c.url(cl.path, cl.query), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// do runs a call with retries and decodes a 2xx body into out (if not nil).
func (c *Client) do(ctx context.Context, cl call, out any) error {
	var payload []byte
	if cl.body != nil {
		var err error
		if payload, err = json.Marshal(cl.body); err != nil {
			return fmt.Errorf("encoding %s %s: %w", cl.method, cl.path, err)
		}
	}
	for attempt := 0; ; attempt++ {
		retry, wait, err := c.attempt(ctx, cl, payload, out)
		if err == nil {
			return nil
		}
		if !retry || cl.once || attempt >= c.maxRetries || ctx.Err() != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if wait <= 0 {
			wait = backoff(attempt)
		}
		if err := c.sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// attempt makes one request. It returns whether a failure may be retried, how
// long the server asked us to wait, and the error.
func (c *Client) attempt(ctx context.Context, cl call, payload []byte, out any) (bool, time.Duration, error) {
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := c.newRequest(rctx, cl, payload)
	if err != nil {
		return false, 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return cl.idempotent || notSent(err), 0, fmt.Errorf("%s %s: %w", cl.method, cl.path, stripURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := c.readAPIError(resp)
		// A 429 was not processed; a 5xx on a call that is not idempotent may
		// have been (a gateway timing out), so its caller decides.
		return e.Status == http.StatusTooManyRequests || (cl.idempotent && retryable(e.Status)), e.RetryAfter, e
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
	if err != nil {
		return cl.idempotent, 0, fmt.Errorf("%s %s: reading the answer: %w", cl.method, cl.path, err)
	}
	if out == nil || len(bytes.TrimSpace(raw)) == 0 {
		return false, 0, nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return false, 0, fmt.Errorf("%s %s: the answer is not the documented JSON: %w", cl.method, cl.path, err)
	}
	return false, 0, nil
}

// stripURL drops the URL that net/http puts into its errors; the caller names
// the call instead, and a URL is noise in a message shown to users.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func agentPath(agentID string) string { return "/v1/agents/" + url.PathEscape(agentID) }

func runPath(agentID, runID string) string {
	return agentPath(agentID) + "/runs/" + url.PathEscape(runID)
}

// CreateAgent creates an agent and its first run (POST /v1/agents) in a
// single attempt: after a 5xx or a lost answer the agent may exist, and a
// blind retry could create a second one, so the caller checks before it
// retries (see Runtime.Prepare), and also paces 429s itself.
func (c *Client) CreateAgent(ctx context.Context, req CreateAgentRequest) (CreateAgentResponse, error) {
	var out CreateAgentResponse
	err := c.do(ctx, call{method: http.MethodPost, path: "/v1/agents", body: req, once: true}, &out)
	return out, err
}

// CreateRun sends a follow-up prompt as a new run of the agent
// (POST /v1/agents/{id}/runs); 409 agent_busy while another run is active.
// Only a 429 or a failed connection is retried here: after a 5xx or a lost
// answer the run may exist, so the caller checks first.
func (c *Client) CreateRun(ctx context.Context, agentID string, req CreateRunRequest) (Run, error) {
	var out struct {
		Run Run `json:"run"`
	}
	err := c.do(ctx, call{method: http.MethodPost, path: agentPath(agentID) + "/runs", body: req}, &out)
	return out.Run, err
}

// GetAgent returns one agent.
func (c *Client) GetAgent(ctx context.Context, agentID string) (Agent, error) {
	var out Agent
	err := c.do(ctx, call{method: http.MethodGet, path: agentPath(agentID), idempotent: true}, &out)
	return out, err
}

// ListAgents returns one page of agents, newest first; cursor is the previous
// page's NextCursor ("" for the first).
func (c *Client) ListAgents(ctx context.Context, limit int, cursor string) (AgentPage, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var out AgentPage
	err := c.do(ctx, call{method: http.MethodGet, path: "/v1/agents", query: q, idempotent: true}, &out)
	return out, err
}

// GetRun returns one run.
func (c *Client) GetRun(ctx context.Context, agentID, runID string) (Run, error) {
	var out Run
	err := c.do(ctx, call{method: http.MethodGet, path: runPath(agentID, runID), idempotent: true}, &out)
	return out, err
}

// CancelRun cancels the agent's active run; 409 run_not_cancellable when it
// cannot be. Retried like an idempotent call: cancelling twice changes nothing.
func (c *Client) CancelRun(ctx context.Context, agentID, runID string) error {
	return c.do(ctx, call{method: http.MethodPost, path: runPath(agentID, runID) + "/cancel", idempotent: true}, nil)
}

// ArchiveAgent archives the agent (reversible upstream).
func (c *Client) ArchiveAgent(ctx context.Context, agentID string) error {
	return c.do(ctx, call{method: http.MethodPost, path: agentPath(agentID) + "/archive", idempotent: true}, nil)
}

// Me describes the API key (GET /v1/me).
func (c *Client) Me(ctx context.Context) (Me, error) {
	var out Me
	err := c.do(ctx, call{method: http.MethodGet, path: "/v1/me", idempotent: true}, &out)
	return out, err
}

// ListModels returns the models the key may use (GET /v1/models).
func (c *Client) ListModels(ctx context.Context) ([]Model, error) {
	var out modelList
	err := c.do(ctx, call{method: http.MethodGet, path: "/v1/models", idempotent: true}, &out)
	return out.models(), err
}

// ---- Streams ----

// errIdle marks a stream that stayed silent longer than the idle timeout.
var errIdle = errors.New("the run stream stayed silent too long")

// Stream is an open SSE stream of one run.
type Stream struct {
	body   io.ReadCloser
	reader *sseReader
	cancel context.CancelFunc
	timer  *time.Timer
	idle   time.Duration
	// timedOut is set when the idle timer cut the connection.
	timedOut atomic.Bool
	// Retention is X-Cursor-Stream-Retention-Seconds: how long the run's
	// stream can be replayed (0 when not sent).
	Retention time.Duration
}

// StreamRun opens the run's event stream. With lastEventID it resumes after
// that event (Cursor re-sends the current status first). The connection has no
// overall deadline: it is cut when nothing arrives for the idle timeout.
func (c *Client) StreamRun(ctx context.Context, agentID, runID, lastEventID string) (*Stream, error) {
	cl := call{method: http.MethodGet, path: runPath(agentID, runID) + "/stream", idempotent: true}
	for attempt := 0; ; attempt++ {
		st, retry, wait, err := c.openStream(ctx, cl, lastEventID)
		if err == nil {
			return st, nil
		}
		if !retry || attempt >= c.maxRetries || ctx.Err() != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		if wait <= 0 {
			wait = backoff(attempt)
		}
		if err := c.sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

func (c *Client) openStream(ctx context.Context, cl call, lastEventID string) (*Stream, bool, time.Duration, error) {
	sctx, cancel := context.WithCancel(ctx)
	st := &Stream{cancel: cancel, idle: c.idleTimeout}
	// Until the headers arrive the request timeout applies; then the idle one.
	st.timer = time.AfterFunc(c.timeout, func() { st.timedOut.Store(true); cancel() })
	req, err := c.newRequest(sctx, cl, nil)
	if err != nil {
		st.stop()
		return nil, false, 0, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		st.stop()
		return nil, true, 0, fmt.Errorf("%s %s: %w", cl.method, cl.path, stripURL(err))
	}
	if resp.StatusCode != http.StatusOK {
		e := c.readAPIError(resp)
		resp.Body.Close()
		st.stop()
		return nil, retryable(e.Status), e.RetryAfter, e
	}
	if n, err := strconv.Atoi(resp.Header.Get("X-Cursor-Stream-Retention-Seconds")); err == nil && n > 0 {
		st.Retention = time.Duration(n) * time.Second
	}
	st.body = resp.Body
	st.timer.Reset(c.idleTimeout)
	st.reader = newSSEReader(idleReader{st})
	return st, false, 0, nil
}

// idleReader re-arms the stream's idle timer whenever bytes arrive.
type idleReader struct{ st *Stream }

func (r idleReader) Read(p []byte) (int, error) {
	n, err := r.st.body.Read(p)
	if n > 0 {
		r.st.timer.Reset(r.st.idle)
	}
	return n, err
}

// Next returns the next event. io.EOF means the server ended the stream;
// errIdle that it went silent; anything else a broken connection.
func (s *Stream) Next() (Event, error) {
	ev, err := s.reader.next()
	if err != nil && s.timedOut.Load() {
		return Event{}, errIdle
	}
	return ev, err
}

// Close ends the stream.
func (s *Stream) Close() error {
	s.stop()
	if s.body != nil {
		return s.body.Close()
	}
	return nil
}

func (s *Stream) stop() {
	s.timer.Stop()
	s.cancel()
}
