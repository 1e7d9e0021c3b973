package cloud

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeCursor is Cursor's Cloud Agents API v1 as the spec documents it, on
// httptest, driven by a scenario from testdata/cursor: the runs' SSE streams
// (raw wire format, with ": fake:..." comment lines as directives for the fake)
// and canned answers that take precedence over the normal behaviour.
//
// Stream directives (comment lines, never sent):
//
//	: fake:drop         end the connection here, the first time only
//	: fake:expire       end the connection and let the stream expire (410 afterwards)
//	: fake:stall        go silent until the client hangs up, the first time only
//	: fake:wait NAME    block here while gate NAME is closed (gates start open)
type fakeCursor struct {
	t   testing.TB
	srv *httptest.Server
	key string

	mu       sync.Mutex
	scen     scenario
	agents   []*fakeAgent
	runs     map[string]*fakeRun
	requests []fakeRequest
	queued   map[string][]fakeResponse
	gates    map[string]*gate
	streams  atomic.Int32
}

// scenario is one testdata/cursor/*.json file.
type scenario struct {
	About string `json:"about"`
	// Responses are canned answers per route pattern, used in order before
	// the fake's normal behaviour.
	Responses map[string][]fakeResponse `json:"responses"`
	// Runs script the runs in creation order (the last one repeats).
	Runs []runScript `json:"runs"`
}

type runScript struct {
	// Stream names the .sse file of the run's stream.
	Stream string `json:"stream"`
	// Polls are the statuses GET run answers once the stream expired, before Final.
	Polls []string `json:"polls"`
	// Final is the terminal run (fields added to id, agentId, createdAt).
	Final map[string]any `json:"final"`
	items []streamItem
}

type fakeResponse struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Error   *errorData        `json:"error"`
	Body    json.RawMessage   `json:"body"`
	// Hang does the real work, then never answers (until the client hangs up).
	Hang bool `json:"hang"`
	// Times repeats the answer (default once).
	Times int `json:"times"`
}

// streamItem is an event block of a .sse file, or a directive.
type streamItem struct {
	raw       string
	id, event string
	directive string
	arg       string
}

type fakeAgent struct {
	ID                  string
	BranchName          string
	CreatedAt           time.Time
	LatestRunID         string
	Repos               []RepoRef
	AutoCreatePR        bool
	SkipReviewerRequest bool
	Status              string
}

type fakeRun struct {
	ID, AgentID string
	CreatedAt   time.Time
	Status      string
	script      *runScript
	expired     bool
	fired       map[int]bool
	polls       int
}

type fakeRequest struct {
	Pattern string
	Method  string
	Path    string
	Query   url.Values
	Header  http.Header
	Body    []byte
}

type gate struct {
	open        chan struct{}
	reached     chan struct{}
	openOnce    sync.Once
	reachedOnce sync.Once
}

const fakeKey = "cursor_test_key_0123456789"

// newFake starts a fake serving testdata/cursor/<name>.json.
func newFake(t testing.TB, name string) *fakeCursor {
	t.Helper()
	f := &fakeCursor{t: t, key: fakeKey, runs: map[string]*fakeRun{}, queued: map[string][]fakeResponse{}, gates: map[string]*gate{}}
	f.scen = loadScenario(t, name)
	for pattern, list := range f.scen.Responses {
		for _, r := range list {
			for range max(r.Times, 1) {
				f.queued[pattern] = append(f.queued[pattern], r)
			}
		}
	}
	mux := http.NewServeMux()
	f.route(mux, "POST /v1/agents", f.createAgent)
	f.route(mux, "GET /v1/agents", f.listAgents)
	f.route(mux, "GET /v1/agents/{agent}", f.getAgent)
	f.route(mux, "POST /v1/agents/{agent}/runs", f.createRun)
	f.route(mux, "GET /v1/agents/{agent}/runs/{run}", f.getRun)
	f.route(mux, "GET /v1/agents/{agent}/runs/{run}/stream", f.stream)
	f.route(mux, "POST /v1/agents/{agent}/runs/{run}/cancel", f.cancelRun)
	f.route(mux, "POST /v1/agents/{agent}/archive", f.archive)
	f.route(mux, "GET /v1/me", f.me)
	f.route(mux, "GET /v1/models", f.models)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		f.openAllGates()
		f.srv.CloseClientConnections()
		f.srv.Close()
	})
	return f
}

func loadScenario(t testing.TB, name string) scenario {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "cursor", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	// In a JSON file a backslash is itself escaped.
	raw = []byte(keyEchoes(true).Replace(string(raw)))
	var s scenario
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("scenario %s: %v", name, err)
	}
	for i := range s.Runs {
		if s.Runs[i].Stream != "" {
			s.Runs[i].items = loadStream(t, s.Runs[i].Stream)
		}
	}
	return s
}

// keyEchoes fills in the forms of the fake's key that a hostile upstream
// echoes: $KEY, $BASIC (the Authorization header), $KEY_JSON (every character
// \u-escaped), $KEY_URL (every byte %-escaped), $KEY_B64. inJSON doubles the
// backslashes, for placeholders inside a JSON file's strings.
func keyEchoes(inJSON bool) *strings.Replacer {
	var esc, pct strings.Builder
	for _, r := range fakeKey {
		fmt.Fprintf(&esc, `\u%04x`, r)
	}
	for i := 0; i < len(fakeKey); i++ {
		fmt.Fprintf(&pct, "%%%02X", fakeKey[i])
	}
	jsonForm := esc.String()
	if inJSON {
		jsonForm = strings.ReplaceAll(jsonForm, `\`, `\\`)
	}
	return strings.NewReplacer("$KEY_JSON", jsonForm, "$KEY_URL", pct.String(),
		"$KEY_B64", base64.StdEncoding.EncodeToString([]byte(fakeKey)),
		"$BASIC", "Basic "+base64.StdEncoding.EncodeToString([]byte(fakeKey+":")), "$KEY", fakeKey)
}

// loadStream splits a .sse file into event blocks and directives.
func loadStream(t testing.TB, file string) []streamItem {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "cursor", file))
	if err != nil {
		t.Fatal(err)
	}
	raw = []byte(keyEchoes(false).Replace(string(raw)))
	var items []streamItem
	for _, block := range strings.Split(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\n\n") {
		block = strings.Trim(block, "\n")
		if block == "" {
			continue
		}
		lines := strings.Split(block, "\n")
		if !slices.ContainsFunc(lines, func(l string) bool { return !strings.HasPrefix(l, ":") }) {
			// Only comments: directives for the fake, other comments sent as they are.
			for _, l := range lines {
				if d, ok := strings.CutPrefix(l, ": fake:"); ok {
					name, arg, _ := strings.Cut(d, " ")
					items = append(items, streamItem{directive: name, arg: arg})
				} else {
					items = append(items, streamItem{raw: l + "\n\n"})
				}
			}
			continue
		}
		it := streamItem{raw: block + "\n\n"}
		for _, line := range lines {
			if v, ok := strings.CutPrefix(line, "id: "); ok {
				it.id = v
			}
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				it.event = v
			}
		}
		items = append(items, it)
	}
	return items
}

// URL is the base URL of the fake API.
func (f *fakeCursor) URL() string { return f.srv.URL }

// route registers a handler that records the request, checks the key, and
// serves a canned answer when one is queued.
func (f *fakeCursor) route(mux *http.ServeMux, pattern string, h http.HandlerFunc) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.requests = append(f.requests, fakeRequest{Pattern: pattern, Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone(), Body: body})
		var canned *fakeResponse
		if q := f.queued[pattern]; len(q) > 0 {
			canned, f.queued[pattern] = &q[0], q[1:]
		}
		f.mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		if r.Header.Get("Authorization") != "Basic "+base64.StdEncoding.EncodeToString([]byte(f.key+":")) {
			writeError(w, http.StatusUnauthorized, "unauthorized", "Invalid API key")
			return
		}
		switch {
		case canned == nil:
			h(w, r)
		case canned.Hang:
			h(httptest.NewRecorder(), r)
			<-r.Context().Done()
		default:
			for k, v := range canned.Headers {
				w.Header().Set(k, v)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(canned.Status)
			switch {
			case canned.Error != nil:
				echo := keyEchoes(false)
				json.NewEncoder(w).Encode(map[string]any{"error": errorData{Code: echo.Replace(canned.Error.Code), Message: echo.Replace(canned.Error.Message)}})
			case canned.Body != nil:
				w.Write(canned.Body)
			}
		}
	})
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// newRunLocked creates a run of agent a with the next script.
func (f *fakeCursor) newRunLocked(a *fakeAgent) *fakeRun {
	n := len(f.runs)
	run := &fakeRun{ID: fmt.Sprintf("run-%08d-0000-4000-8000-000000000000", n+1), AgentID: a.ID, CreatedAt: time.Now().UTC(), Status: RunRunning, fired: map[int]bool{}}
	if len(f.scen.Runs) > 0 {
		run.script = &f.scen.Runs[min(n, len(f.scen.Runs)-1)]
	} else {
		run.script = &runScript{Final: map[string]any{"status": RunFinished}}
	}
	f.runs[run.ID] = run
	a.LatestRunID = run.ID
	return run
}

// addAgent adds an agent (with one run) as if created at the given time.
func (f *fakeCursor) addAgent(createdAt time.Time, repo string, autoPR, skipReviewer bool, branch string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := &fakeAgent{ID: fmt.Sprintf("bc-%08d-0000-4000-8000-000000000000", len(f.agents)+1), CreatedAt: createdAt, Repos: []RepoRef{{URL: repo, StartingRef: "main"}}, BranchName: branch,
		AutoCreatePR: autoPR, SkipReviewerRequest: skipReviewer, Status: "ACTIVE"}
	f.agents = append(f.agents, a)
	f.newRunLocked(a).CreatedAt = createdAt
	return a.ID
}

func (f *fakeCursor) agentJSON(a *fakeAgent) map[string]any {
	return map[string]any{
		"id": a.ID, "name": "Fix the login bug", "status": a.Status,
		"url":       "https://cursor.com/agents?id=" + a.ID,
		"createdAt": a.CreatedAt.Format(time.RFC3339Nano), "updatedAt": a.CreatedAt.Format(time.RFC3339Nano),
		"latestRunId": a.LatestRunID, "repos": a.Repos, "autoCreatePR": a.AutoCreatePR,
		"skipReviewerRequest": a.SkipReviewerRequest, "branchName": a.BranchName,
		"someFutureField": map[string]any{"ignored": true},
	}
}

func (f *fakeCursor) runJSON(run *fakeRun) map[string]any {
	out := map[string]any{}
	if TerminalRunStatus(run.Status) {
		for k, v := range run.script.Final {
			out[k] = v
		}
	}
	out["id"], out["agentId"], out["status"] = run.ID, run.AgentID, run.Status
	out["createdAt"] = run.CreatedAt.Format(time.RFC3339Nano)
	out["futureField"] = 1
	return out
}

// finalStatus is the status the run ends with.
func (run *fakeRun) finalStatus() string {
	if s, _ := run.script.Final["status"].(string); s != "" {
		return s
	}
	return RunFinished
}

func (f *fakeCursor) agent(id string) *fakeAgent {
	for _, a := range f.agents {
		if a.ID == id {
			return a
		}
	}
	return nil
}

func (f *fakeCursor) createAgent(w http.ResponseWriter, r *http.Request) {
	var req CreateAgentRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Prompt.Text == "" {
		writeError(w, http.StatusBadRequest, "validation_error", "prompt.text is required")
		return
	}
	if len(req.Repos) == 0 {
		writeError(w, http.StatusBadRequest, "repository_required", "repos is required")
		return
	}
	f.mu.Lock()
	a := &fakeAgent{ID: fmt.Sprintf("bc-%08d-0000-4000-8000-000000000000", len(f.agents)+1), CreatedAt: time.Now().UTC(), Repos: req.Repos, BranchName: req.BranchName,
		AutoCreatePR: req.AutoCreatePR, SkipReviewerRequest: req.SkipReviewerRequest, Status: "ACTIVE"}
	f.agents = append(f.agents, a)
	run := f.newRunLocked(a)
	resp := map[string]any{"agent": f.agentJSON(a), "run": f.runJSON(run)}
	f.mu.Unlock()
	writeJSON(w, http.StatusCreated, resp)
}

func (f *fakeCursor) listAgents(w http.ResponseWriter, r *http.Request) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	if limit <= 0 {
		limit = 20
	}
	start, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
	f.mu.Lock()
	defer f.mu.Unlock()
	newest := slices.Clone(f.agents)
	slices.SortStableFunc(newest, func(a, b *fakeAgent) int { return b.CreatedAt.Compare(a.CreatedAt) })
	items := []map[string]any{}
	for i := start; i < len(newest) && i < start+limit; i++ {
		items = append(items, f.agentJSON(newest[i]))
	}
	out := map[string]any{"items": items}
	if start+limit < len(newest) {
		out["nextCursor"] = strconv.Itoa(start + limit)
	}
	writeJSON(w, http.StatusOK, out)
}

func (f *fakeCursor) getAgent(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.agent(r.PathValue("agent"))
	if a == nil {
		writeError(w, http.StatusNotFound, "agent_not_found", "Agent not found")
		return
	}
	writeJSON(w, http.StatusOK, f.agentJSON(a))
}

func (f *fakeCursor) createRun(w http.ResponseWriter, r *http.Request) {
	var req CreateRunRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Prompt.Text == "" {
		writeError(w, http.StatusBadRequest, "validation_error", "prompt.text is required")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.agent(r.PathValue("agent"))
	switch {
	case a == nil:
		writeError(w, http.StatusNotFound, "agent_not_found", "Agent not found")
	case a.Status == "ARCHIVED":
		writeError(w, http.StatusConflict, "agent_archived", "Agent is archived")
	case a.LatestRunID != "" && !TerminalRunStatus(f.runs[a.LatestRunID].Status):
		writeError(w, http.StatusConflict, "agent_busy", "Agent already has an active run")
	default:
		writeJSON(w, http.StatusCreated, map[string]any{"run": f.runJSON(f.newRunLocked(a))})
	}
}

// lookupRun finds the run of the request's path, answering 404 itself.
func (f *fakeCursor) lookupRun(w http.ResponseWriter, r *http.Request) *fakeRun {
	run := f.runs[r.PathValue("run")]
	if run == nil || run.AgentID != r.PathValue("agent") {
		writeError(w, http.StatusNotFound, "run_not_found", "Run not found")
		return nil
	}
	return run
}

func (f *fakeCursor) getRun(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	run := f.lookupRun(w, r)
	if run == nil {
		return
	}
	if run.expired && !TerminalRunStatus(run.Status) {
		if run.polls < len(run.script.Polls) {
			run.Status = run.script.Polls[run.polls]
			run.polls++
		} else {
			run.Status = run.finalStatus()
		}
	}
	writeJSON(w, http.StatusOK, f.runJSON(run))
}

func (f *fakeCursor) cancelRun(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	run := f.lookupRun(w, r)
	if run == nil {
		return
	}
	if TerminalRunStatus(run.Status) {
		writeError(w, http.StatusConflict, "run_not_cancellable", "Run is not active")
		return
	}
	run.Status = RunCancelled
	writeJSON(w, http.StatusOK, map[string]any{"id": run.ID})
}

func (f *fakeCursor) archive(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.agent(r.PathValue("agent"))
	if a == nil {
		writeError(w, http.StatusNotFound, "agent_not_found", "Agent not found")
		return
	}
	a.Status = "ARCHIVED"
	writeJSON(w, http.StatusOK, map[string]any{"id": a.ID})
}

func (f *fakeCursor) me(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"apiKeyName": "flapjack tests", "userEmail": "dev@example.com", "createdAt": "2026-01-02T03:04:05Z", "plan": "pro"})
}

func (f *fakeCursor) models(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"items": []any{map[string]any{"id": "composer-2", "name": "Composer 2", "new": true}, "gpt-5"}})
}

// stream serves a run's SSE stream from its script, resuming after
// Last-Event-ID with the current status first, as Cursor does.
func (f *fakeCursor) stream(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	run := f.lookupRun(w, r)
	if run == nil {
		f.mu.Unlock()
		return
	}
	if run.expired {
		f.mu.Unlock()
		writeError(w, http.StatusGone, "stream_expired", "The run's stream is no longer available")
		return
	}
	items := run.script.items
	start := 0
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		i := slices.IndexFunc(items, func(it streamItem) bool { return it.id == last })
		if i < 0 {
			f.mu.Unlock()
			writeError(w, http.StatusBadRequest, "invalid_last_event_id", "Unknown Last-Event-ID")
			return
		}
		start = i + 1
	}
	f.mu.Unlock()
	f.streams.Add(1)
	defer f.streams.Add(-1)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Cursor-Stream-Retention-Seconds", "3600")
	w.WriteHeader(http.StatusOK)
	fl := w.(http.Flusher)
	send := func(it streamItem) {
		io.WriteString(w, strings.NewReplacer("$RUN", run.ID, "$AGENT", run.AgentID).Replace(it.raw))
		fl.Flush()
	}
	if start > 0 {
		// The current status, re-sent first on every reconnect.
		for i := start - 1; i >= 0; i-- {
			if items[i].event == evStatus {
				st := items[i]
				st.raw = strings.Join(slices.DeleteFunc(strings.Split(st.raw, "\n"), func(l string) bool { return strings.HasPrefix(l, "id:") }), "\n")
				send(st)
				break
			}
		}
	}
	for i := start; i < len(items); i++ {
		it := items[i]
		if it.directive != "" {
			f.mu.Lock()
			first := !run.fired[i]
			run.fired[i] = true
			if it.directive == "expire" {
				run.expired = true
			}
			f.mu.Unlock()
			switch it.directive {
			case "drop", "expire":
				if first || it.directive == "expire" {
					return
				}
			case "stall":
				if first {
					<-r.Context().Done()
					return
				}
			case "wait":
				g := f.gate(it.arg)
				g.reachedOnce.Do(func() { close(g.reached) })
				select {
				case <-g.open:
				case <-r.Context().Done():
					return
				}
			default:
				f.t.Errorf("unknown stream directive %q", it.directive)
			}
			continue
		}
		send(it)
		if it.event == evDone {
			f.mu.Lock()
			if !TerminalRunStatus(run.Status) {
				run.Status = run.finalStatus()
			}
			f.mu.Unlock()
		}
	}
}

// gate returns the named gate; a new one is open.
func (f *fakeCursor) gate(name string) *gate {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.gates[name]
	if g == nil {
		g = &gate{open: make(chan struct{}), reached: make(chan struct{})}
		close(g.open)
		g.openOnce.Do(func() {})
		f.gates[name] = g
	}
	return g
}

// closeGate makes streams block at "fake:wait name" until openGate.
func (f *fakeCursor) closeGate(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gates[name] = &gate{open: make(chan struct{}), reached: make(chan struct{})}
}

func (f *fakeCursor) openGate(name string) {
	g := f.gate(name)
	g.openOnce.Do(func() { close(g.open) })
}

func (f *fakeCursor) openAllGates() {
	f.mu.Lock()
	gs := make([]*gate, 0, len(f.gates))
	for _, g := range f.gates {
		gs = append(gs, g)
	}
	f.mu.Unlock()
	for _, g := range gs {
		g.openOnce.Do(func() { close(g.open) })
	}
}

// reached is closed once a stream arrived at the gate.
func (f *fakeCursor) reached(name string) <-chan struct{} { return f.gate(name).reached }

// requestsTo returns the recorded requests of one route pattern.
func (f *fakeCursor) requestsTo(pattern string) []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeRequest
	for _, r := range f.requests {
		if r.Pattern == pattern {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeCursor) allRequests() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func (f *fakeCursor) agentCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.agents)
}

func (f *fakeCursor) agentStatus(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a := f.agent(id); a != nil {
		return a.Status
	}
	return ""
}

func (f *fakeCursor) runStatus(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.runs[id]; r != nil {
		return r.Status
	}
	return ""
}

// Route patterns, for requestsTo.
const (
	routeCreate  = "POST /v1/agents"
	routeList    = "GET /v1/agents"
	routeAgent   = "GET /v1/agents/{agent}"
	routeRuns    = "POST /v1/agents/{agent}/runs"
	routeRun     = "GET /v1/agents/{agent}/runs/{run}"
	routeStream  = "GET /v1/agents/{agent}/runs/{run}/stream"
	routeCancel  = "POST /v1/agents/{agent}/runs/{run}/cancel"
	routeArchive = "POST /v1/agents/{agent}/archive"
)

// agentInfo returns the i-th agent's id and latest run.
func (f *fakeCursor) agentInfo(i int) (id, latestRun string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i >= len(f.agents) {
		return "", ""
	}
	return f.agents[i].ID, f.agents[i].LatestRunID
}

// queue adds canned answers for a route before those already queued.
func (f *fakeCursor) queue(pattern string, rs ...fakeResponse) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queued[pattern] = append(rs, f.queued[pattern]...)
}

// addRun adds a run to an agent, created at the given time and in a status.
func (f *fakeCursor) addRun(agentID string, createdAt time.Time, status string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	run := f.newRunLocked(f.agent(agentID))
	run.CreatedAt, run.Status = createdAt, status
	return run.ID
}

// setRunStatus sets a run's status.
func (f *fakeCursor) setRunStatus(runID, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs[runID].Status = status
}

// expire makes a run's stream expired (410), so GET run walks its polls.
func (f *fakeCursor) expire(runID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs[runID].expired = true
}

// archiveAgent archives an agent as if done in Cursor.
func (f *fakeCursor) archiveAgent(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.agent(id).Status = "ARCHIVED"
}
