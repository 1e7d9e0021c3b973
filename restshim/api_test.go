package restshim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flapjack-dev/flapjack/core"
)

// TestCodeAgentRoutes: create (201, defaults, Location), list (a JSON array),
// get, update only the given fields (null clears), delete, then 404.
func TestCodeAgentRoutes(t *testing.T) {
	e := newEnv(t)
	var empty []core.CodeAgent
	r := e.must(200, "GET", "/api/code-agents", nil, &empty)
	if string(r.body) != "[]\n" {
		t.Errorf("empty list = %q, want []", r.body)
	}

	var ag core.CodeAgent
	r = e.must(201, "POST", "/api/code-agents", map[string]any{
		"name": "Bug Fixer", "defaultRepoUrl": "https://github.com/acme/app",
		"preamble": "Fix the bug described in the prompt. Write tests.", "autoCreatePR": true,
		"modelParams": map[string]any{"temperature": 0.2},
	}, &ag)
	if got := r.header.Get("Location"); got != "/api/code-agents/"+ag.ID {
		t.Errorf("Location = %q", got)
	}
	if ag.OrgID != e.owner.OrgID || ag.CreatedBy != e.owner.UserID || ag.ModelID != "auto" || ag.DefaultStartingRef != "main" || !ag.AutoCreatePR {
		t.Errorf("created agent = %+v, want the owner's org, creator and the spec's defaults", ag)
	}
	// The response is snake_case: the spec's field names.
	var raw map[string]any
	r.decode(t, &raw)
	for _, k := range []string{"id", "org_id", "model_id", "model_params", "default_repo_url", "default_starting_ref", "auto_create_pr", "work_on_current_branch", "skip_reviewer_request", "created_by", "created_at", "updated_at"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("response has no %q", k)
		}
	}

	var list []core.CodeAgent
	e.must(200, "GET", "/api/code-agents", nil, &list)
	if len(list) != 1 || list[0].ID != ag.ID {
		t.Errorf("list = %+v", list)
	}
	var got core.CodeAgent
	e.must(200, "GET", "/api/code-agents/"+ag.ID, nil, &got)
	if diff := cmp.Diff(ag, got); diff != "" {
		t.Errorf("get (-created +got):\n%s", diff)
	}

	var upd core.CodeAgent
	e.must(200, "PATCH", "/api/code-agents/"+ag.ID, map[string]any{"name": "Renamed", "autoCreatePR": false}, &upd)
	if upd.Name != "Renamed" || upd.AutoCreatePR || upd.Preamble != ag.Preamble || upd.ModelParams == nil {
		t.Errorf("after a partial update: %+v", upd)
	}
	e.must(200, "PATCH", "/api/code-agents/"+ag.ID, `{"modelParams": null, "defaultRepoUrl": null}`, &upd)
	if upd.ModelParams != nil || upd.DefaultRepoURL != nil || upd.Name != "Renamed" {
		t.Errorf("null should clear model_params and default_repo_url: %+v", upd)
	}
	e.must(200, "PATCH", "/api/code-agents/"+ag.ID, nil, &upd) // an empty patch changes nothing
	if upd.Name != "Renamed" {
		t.Errorf("empty patch changed the agent: %+v", upd)
	}

	var ok core.OKResult
	e.must(200, "DELETE", "/api/code-agents/"+ag.ID, nil, &ok)
	if !ok.OK {
		t.Error("delete did not answer ok")
	}
	if r := e.do("GET", "/api/code-agents/"+ag.ID, e.token, nil); r.status != 404 || r.errCode() != "NOT_FOUND" {
		t.Errorf("get after delete = %d %s", r.status, r.body)
	}
}

// TestCodeSessionRoutes drives a session through every session route.
func TestCodeSessionRoutes(t *testing.T) {
	e := newEnv(t)
	agentID := e.agent()

	st := e.start(agentID, "Fix the login bug")
	if st.SessionID == "" || st.MessageID == "" {
		t.Fatalf("start = %+v", st)
	}
	s := e.waitStatus(st.SessionID, core.StatusFinished)
	if len(s.Messages) != 1 || s.Messages[0].ID != st.MessageID || s.Messages[0].ResultText == nil || s.LastEventSeq == 0 {
		t.Errorf("finished session = %+v", s)
	}

	// Lists are JSON arrays, filtered by the query parameters.
	filters := map[string]int{
		"":                        1,
		"?codeAgentId=" + agentID: 1,
		"?codeAgentId=ca-nothing": 0,
		"?status=finished":        1,
		"?status=running":         0,
		"?archived=false":         1,
		"?archived=true":          0,
		"?orgId=" + e.owner.OrgID: 1,
		"?status=finished&archived=false&codeAgentId=" + agentID: 1,
	}
	for q, want := range filters {
		var list []core.Session
		e.must(200, "GET", "/api/code-sessions"+q, nil, &list)
		if len(list) != want {
			t.Errorf("GET /api/code-sessions%s: %d sessions, want %d", q, len(list), want)
		}
	}

	// Events: a page, since, limit and messageId.
	var page core.EventPage
	e.must(200, "GET", "/api/code-sessions/"+st.SessionID+"/events", nil, &page)
	if len(page.Events) == 0 || page.LastSeq != page.Events[len(page.Events)-1].Seq || page.Events[0].Seq != 1 {
		t.Fatalf("events = %+v", page)
	}
	all := page.Events
	e.must(200, "GET", fmt.Sprintf("/api/code-sessions/%s/events?since=%d&limit=2", st.SessionID, 1), nil, &page)
	if len(page.Events) != 2 || page.Events[0].Seq != 2 || page.LastSeq != 3 {
		t.Errorf("since=1&limit=2: %+v", page)
	}
	e.must(200, "GET", fmt.Sprintf("/api/code-sessions/%s/events?since=%d&wait=1", st.SessionID, all[len(all)-1].Seq), nil, &page)
	if len(page.Events) != 0 || page.LastSeq != all[len(all)-1].Seq {
		t.Errorf("nothing after the last event: %+v", page)
	}
	e.must(200, "GET", "/api/code-sessions/"+st.SessionID+"/events?messageId="+st.MessageID, nil, &page)
	for _, ev := range page.Events {
		if ev.MessageID == nil || *ev.MessageID != st.MessageID {
			t.Errorf("messageId filter let through %+v", ev)
		}
	}

	// Webhook: set, absent leaves it, "" and null clear it.
	var sess core.Session
	e.must(200, "PATCH", "/api/code-sessions/"+st.SessionID, map[string]any{"webhookUrl": "https://hooks.example.com/x"}, &sess)
	if sess.WebhookURL == nil || *sess.WebhookURL != "https://hooks.example.com/x" {
		t.Errorf("webhook not set: %+v", sess.WebhookURL)
	}
	e.must(200, "PATCH", "/api/code-sessions/"+st.SessionID, `{}`, &sess)
	if sess.WebhookURL == nil {
		t.Error("an empty patch cleared the webhook")
	}
	e.must(200, "PATCH", "/api/code-sessions/"+st.SessionID, `{"webhookUrl": null}`, &sess)
	if sess.WebhookURL != nil {
		t.Errorf("null did not clear the webhook: %v", *sess.WebhookURL)
	}
	e.must(200, "PATCH", "/api/code-sessions/"+st.SessionID, map[string]any{"webhookUrl": "https://hooks.example.com/y"}, &sess)
	e.must(200, "PATCH", "/api/code-sessions/"+st.SessionID, map[string]any{"webhookUrl": ""}, &sess)
	if sess.WebhookURL != nil {
		t.Error(`"" did not clear the webhook`)
	}

	// A follow-up: 201, and the session runs again.
	var sent core.SendResult
	r := e.must(201, "POST", "/api/code-sessions/"+st.SessionID+"/messages", map[string]any{"prompt": "Now add a test"}, &sent)
	if sent.MessageID == "" || strings.Contains(string(r.body), "session_id") {
		t.Errorf("send = %s", r.body)
	}
	s = e.waitStatus(st.SessionID, core.StatusFinished)
	if len(s.Messages) != 2 || s.Messages[1].Status != core.MessageFinished {
		t.Errorf("after the follow-up: %+v", s.Messages)
	}

	// Archive a finished session; again is a no-op.
	var ar core.ArchiveResult
	e.must(200, "POST", "/api/code-sessions/"+st.SessionID+"/archive", nil, &ar)
	e.must(200, "POST", "/api/code-sessions/"+st.SessionID+"/archive", `{}`, &ar)
	if !ar.OK || !ar.Archived {
		t.Errorf("archive = %+v", ar)
	}

	// Cancel a running session.
	st2 := e.start(agentID, "please block")
	e.waitStatus(st2.SessionID, core.StatusRunning)
	var cr core.CancelResult
	e.must(200, "POST", "/api/code-sessions/"+st2.SessionID+"/cancel", nil, &cr)
	if !cr.OK || cr.Status != core.StatusCancelled {
		t.Errorf("cancel = %+v", cr)
	}
	e.waitStatus(st2.SessionID, core.StatusCancelled)
}

// TestEveryErrorCode produces every error code of the API through a route,
// with its status; the list of codes comes from core, so a new code cannot
// go untested.
func TestEveryErrorCode(t *testing.T) {
	e := newEnv(t)
	agentID := e.agent()
	finished := e.start(agentID, "quick")
	e.waitStatus(finished.SessionID, core.StatusFinished)
	archived := e.start(agentID, "quick")
	e.waitStatus(archived.SessionID, core.StatusFinished)
	e.must(200, "POST", "/api/code-sessions/"+archived.SessionID+"/archive", nil, nil)
	expired := e.start(agentID, "quick")
	e.waitStatus(expired.SessionID, core.StatusFinished)
	e.setStatus(expired.SessionID, core.StatusExpired)
	running := e.start(agentID, "block")
	e.waitStatus(running.SessionID, core.StatusRunning)

	type tc struct {
		code   string
		status int
		call   func() resp
	}
	cases := []tc{
		{"VALIDATION_ERROR", 400, func() resp { return e.do("POST", "/api/code-sessions", e.token, `{"codeAgentId":"`+agentID+`"}`) }},
		{"NOT_FOUND", 404, func() resp { return e.do("GET", "/api/code-sessions/cs-nope", e.token, nil) }},
		{"SESSION_ACTIVE", 409, func() resp { return e.do("POST", "/api/code-sessions/"+running.SessionID+"/archive", e.token, nil) }},
		{"SESSION_NOT_ACTIVE", 409, func() resp { return e.do("POST", "/api/code-sessions/"+finished.SessionID+"/cancel", e.token, nil) }},
		{"SESSION_ARCHIVED", 409, func() resp {
			return e.do("POST", "/api/code-sessions/"+archived.SessionID+"/messages", e.token, `{"prompt":"more"}`)
		}},
		{"SESSION_EXPIRED", 409, func() resp {
			return e.do("POST", "/api/code-sessions/"+expired.SessionID+"/messages", e.token, `{"prompt":"more"}`)
		}},
		{"CANCEL_UNSUPPORTED", 409, func() resp {
			e.rt.set(core.Errorf(core.CodeCancelUnsupported, "this run cannot be cancelled; wait for it to finish"), nil)
			defer e.rt.set(nil, nil)
			return e.do("POST", "/api/code-sessions/"+running.SessionID+"/cancel", e.token, nil)
		}},
		{"cursor_cancel_failed", 502, func() resp {
			e.rt.set(core.Errorf(core.CodeCursorCancelFailed, "upstream cancel failed; retry"), nil)
			defer e.rt.set(nil, nil)
			return e.do("POST", "/api/code-sessions/"+running.SessionID+"/cancel", e.token, nil)
		}},
		{"archive_failed", 502, func() resp {
			e.rt.set(nil, errors.New("upstream said no"))
			defer e.rt.set(nil, nil)
			return e.do("POST", "/api/code-sessions/"+finished.SessionID+"/archive", e.token, nil)
		}},
		{"INTERNAL", 500, func() resp {
			// A database that has gone away is an internal failure.
			e2 := newEnv(t)
			e2.store.Close()
			return e2.do("GET", "/api/code-agents", e2.token, nil)
		}},
		{"UNAUTHORIZED", 401, func() resp { return e.do("GET", "/api/code-agents", "", nil) }},
		{"METHOD_NOT_ALLOWED", 405, func() resp { return e.do("PUT", "/api/code-agents", e.token, `{}`) }},
	}
	covered := map[string]bool{}
	for _, c := range cases {
		r := c.call()
		if r.status != c.status || r.errCode() != c.code || r.errMessage() == "" {
			t.Errorf("%s: got %d %s, want %d", c.code, r.status, r.body, c.status)
		}
		if want := core.Code(c.code); slices.Contains(core.AllCodes(), want) && want.HTTPStatus() != c.status {
			t.Errorf("%s: status %d differs from Code.HTTPStatus %d", c.code, c.status, want.HTTPStatus())
		}
		covered[c.code] = true
	}
	for _, c := range core.AllCodes() {
		if !covered[string(c)] {
			t.Errorf("error code %s has no case here", c)
		}
	}
	// The internal cause is logged, never shown.
	if !strings.Contains(e.log.String(), "") {
		t.Error("no log")
	}
}

// TestStartRequiresCursorKey: cursorApiKey follows the same rule over REST
// as over MCP: needed only when the runtime needs one and the server has
// none. The fake runtime, like the local one, needs none.
func TestStartRequiresCursorKey(t *testing.T) {
	e := newEnv(t)
	agentID := e.agent()
	if r := e.do("POST", "/api/code-sessions", e.token, map[string]any{"codeAgentId": agentID, "prompt": "x"}); r.status != 201 {
		t.Errorf("start without a key on a runtime that needs none = %d %s", r.status, r.body)
	}

	withKey := newEnv(t, func(_ *Options, c *core.ServiceConfig) { c.DefaultCursorKey = "cursor_from_env_0123456789" })
	agentID = withKey.agent()
	if r := withKey.do("POST", "/api/code-sessions", withKey.token, map[string]any{"codeAgentId": agentID, "prompt": "x"}); r.status != 201 {
		t.Errorf("start with CURSOR_API_KEY on the server = %d %s", r.status, r.body)
	}
}

// TestStrictBodies: malformed bodies are refused with the field named, and
// nothing is stored.
func TestStrictBodies(t *testing.T) {
	e := newEnv(t)
	big := `{"name":"` + strings.Repeat("a", MaxBodyBytes) + `"}`
	cases := []struct {
		name, body string
		status     int
		msg        string // the message must contain it
		headers    []string
	}{
		{"unknown field", `{"name":"a","surprise":1}`, 400, `unknown field "surprise"`, nil},
		{"other case", `{"Name":"a"}`, 400, `unknown field "Name" (did you mean "name"?)`, nil},
		{"duplicate key", `{"name":"a","name":"b"}`, 400, `duplicate field "name"`, nil},
		{"duplicate in another case", `{"name":"a","NAME":"b"}`, 400, `duplicate field "NAME"`, nil},
		{"duplicate with a Kelvin sign", `{"skipReviewerRequest":true,"s` + "\u212a" + `ipReviewerRequest":false}`, 400, "duplicate field", nil},
		{"duplicate with a long s", `{"skipReviewerRequest":true,"` + "\u017f" + `kipReviewerRequest":false}`, 400, "duplicate field", nil},
		{"nested duplicate", `{"modelParams":{"a":1,"a":2}}`, 400, `duplicate key "a"`, nil},
		{"trailing object", `{"name":"a"}{"name":"b"}`, 400, "data after it", nil},
		{"trailing garbage", `{"name":"a"} x`, 400, "", nil},
		{"array", `[{"name":"a"}]`, 400, "must be a JSON object", nil},
		{"string", `"a"`, 400, "must be a JSON object", nil},
		{"truncated", `{"name":"a"`, 400, "not valid JSON", nil},
		{"wrong type string", `{"name":5}`, 400, "name: must be a string", nil},
		{"wrong type bool", `{"autoCreatePR":"yes"}`, 400, "autoCreatePR: must be a boolean", nil},
		{"wrong type object", `{"modelParams":[1]}`, 400, "modelParams: must be an object", nil},
		{"invalid UTF-8", "{\"name\":\"a\xff\"}", 400, "UTF-8", nil},
		{"too large", big, 413, "at most 1048576 bytes", nil},
		{"not JSON content type", `{"name":"a"}`, 415, "Content-Type", []string{"Content-Type", "text/plain"}},
		{"a query parameter", `{"name":"a"}`, 400, "unknown query parameter", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := "/api/code-agents"
			if c.name == "a query parameter" {
				path += "?name=x"
			}
			r := e.do("POST", path, e.token, c.body, c.headers...)
			if r.status != c.status || r.errCode() != "VALIDATION_ERROR" || !strings.Contains(r.errMessage(), c.msg) {
				t.Errorf("got %d %s, want %d VALIDATION_ERROR containing %q", r.status, clip(string(r.body)), c.status, c.msg)
			}
		})
	}
	var list []core.CodeAgent
	e.must(200, "GET", "/api/code-agents", nil, &list)
	if len(list) != 0 {
		t.Errorf("rejected bodies stored %d agents", len(list))
	}

	// Every body-taking route refuses an unknown field before it acts.
	agentID := e.agent()
	st := e.start(agentID, "quick")
	e.waitStatus(st.SessionID, core.StatusFinished)
	for _, rt := range []struct{ method, path string }{
		{"POST", "/api/code-agents"},
		{"PATCH", "/api/code-agents/" + agentID},
		{"DELETE", "/api/code-agents/" + agentID},
		{"POST", "/api/code-sessions"},
		{"PATCH", "/api/code-sessions/" + st.SessionID},
		{"POST", "/api/code-sessions/" + st.SessionID + "/messages"},
		{"POST", "/api/code-sessions/" + st.SessionID + "/cancel"},
		{"POST", "/api/code-sessions/" + st.SessionID + "/archive"},
	} {
		r := e.do(rt.method, rt.path, e.token, `{"bogus":true}`)
		if r.status != 400 || !strings.Contains(r.errMessage(), `unknown field "bogus"`) {
			t.Errorf("%s %s with an unknown field = %d %s", rt.method, rt.path, r.status, r.body)
		}
	}
	e.must(200, "GET", "/api/code-agents/"+agentID, nil, nil) // not deleted
	var s core.SessionDetail
	e.must(200, "GET", "/api/code-sessions/"+st.SessionID, nil, &s)
	if s.Archived || len(s.Messages) != 1 {
		t.Errorf("a refused request changed the session: %+v", s)
	}
}

// TestStrictQueries: bad numbers and flags name the parameter; unknown and
// repeated parameters are refused.
func TestStrictQueries(t *testing.T) {
	e := newEnv(t)
	st := e.start(e.agent(), "quick")
	ev := "/api/code-sessions/" + st.SessionID + "/events"
	cases := []struct{ path, field string }{
		{ev + "?since=abc", "since"},
		{ev + "?since=-1", "since"},
		{ev + "?since=1.5", "since"},
		{ev + "?limit=0", "limit"},
		{ev + "?limit=0", "limit"},
		{ev + "?limit=x", "limit"},
		{ev + "?wait=26", "wait"},
		{ev + "?wait=-1", "wait"},
		{ev + "?wait=soon", "wait"},
		{ev + "?waitSeconds=1", "waitSeconds"},
		{ev + "?since=1&since=2", "since"},
		{ev + "/stream?since=x", "since"},
		{"/api/code-sessions?archived=yes", "archived"},
		{"/api/code-sessions?archived=1", "archived"},
		{"/api/code-sessions?status=done", "status"},
		{"/api/code-sessions?sessionId=x", "sessionId"},
		{"/api/code-agents?org=x", "org"},
		{"/api/code-agents/ca-1?x=1", "x"},
		{"/api/code-sessions?%zz", "query string"},
	}
	for _, c := range cases {
		r := e.do("GET", c.path, e.token, nil)
		if r.status != 400 || r.errCode() != "VALIDATION_ERROR" || !strings.HasPrefix(r.errMessage(), c.field+":") {
			t.Errorf("GET %s = %d %s, want 400 naming %s", c.path, r.status, r.body, c.field)
		}
	}
	r := e.do("GET", ev+"/stream", e.token, nil, "Last-Event-ID", "nope")
	if r.status != 400 || !strings.HasPrefix(r.errMessage(), "Last-Event-ID:") {
		t.Errorf("stream with a bad Last-Event-ID = %d %s", r.status, r.body)
	}
}

// TestNotFoundAndMethodNotAllowed: unknown paths and methods get the error
// body (after authentication), 405 with Allow.
func TestNotFoundAndMethodNotAllowed(t *testing.T) {
	e := newEnv(t)
	if r := e.do("GET", "/api/nothing", e.token, nil); r.status != 404 || r.errCode() != "NOT_FOUND" {
		t.Errorf("unknown path = %d %s", r.status, r.body)
	}
	r := e.do("DELETE", "/api/code-sessions/cs-1", e.token, nil)
	if r.status != 405 || r.header.Get("Allow") != "GET, PATCH" || r.errCode() != "METHOD_NOT_ALLOWED" {
		t.Errorf("DELETE session = %d %v %s", r.status, r.header, r.body)
	}
	if r := e.do("POST", "/healthz", "", nil); r.status != 405 {
		t.Errorf("POST /healthz = %d", r.status)
	}
}

// TestPanicIsA500: a panic anywhere below the handler answers 500 INTERNAL
// and is logged, instead of dropping the connection.
func TestPanicIsA500(t *testing.T) {
	e := newEnv(t)
	h := New(e.svc, panicAuth{}, Options{Logger: e.h.log})
	rec := newRecorder()
	req, _ := http.NewRequest("GET", "/api/code-agents", nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	validating(t, e.doc, h, e.seen).ServeHTTP(rec, req)
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), `"INTERNAL"`) {
		t.Errorf("panic = %d %s", rec.Code, rec.Body)
	}
	if !strings.Contains(e.log.String(), "panic serving request") {
		t.Error("the panic was not logged")
	}
}

type panicAuth struct{}

func (panicAuth) Authenticate(context.Context, string) (core.Actor, error) { panic("boom") }

// TestHealthz answers without a token.
func TestHealthz(t *testing.T) {
	e := newEnv(t)
	var ok core.OKResult
	r := e.do("GET", "/healthz", "", nil)
	json.Unmarshal(r.body, &ok)
	if r.status != 200 || !ok.OK {
		t.Errorf("healthz = %d %s", r.status, r.body)
	}
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

// TestWronglyTypedKeyIsNotEchoed: a Cursor key sent as a number, an object or
// an array is refused without quoting it back.
func TestWronglyTypedKeyIsNotEchoed(t *testing.T) {
	e := newEnv(t)
	agentID := e.agent()
	for _, v := range []string{`12345678901234567890`, `{"k":"crsr_secret_0123456789"}`, `["crsr_secret_0123456789"]`, `true`} {
		r := e.do("POST", "/api/code-sessions", e.token, `{"codeAgentId":"`+agentID+`","prompt":"x","cursorApiKey":`+v+`}`)
		if r.status != 400 || r.errCode() != "VALIDATION_ERROR" || !strings.HasPrefix(r.errMessage(), "cursorApiKey") {
			t.Errorf("key %s: got %d %s", v, r.status, r.body)
		}
		if strings.Contains(string(r.body), "12345678901234567890") || strings.Contains(string(r.body), "crsr_secret") {
			t.Errorf("key %s echoed: %s", v, r.body)
		}
	}
}

// TestNullMeansOmitted: explicit null on an optional field is the field
// omitted, over REST as over MCP; a limit over the maximum is served as it.
func TestNullMeansOmitted(t *testing.T) {
	e := newEnv(t)
	var ag core.CodeAgent
	r := e.do("POST", "/api/code-agents", e.token, `{"name":null,"description":null,"defaultRepoUrl":"https://github.com/acme/app","autoCreatePR":null,"modelParams":null}`)
	r.decode(t, &ag)
	if r.status != 201 || ag.Name != core.DefaultAgentName || !ag.AutoCreatePR {
		t.Fatalf("create with nulls = %d %s", r.status, r.body)
	}
	r = e.do("PATCH", "/api/code-agents/"+ag.ID, e.token, `{"name":null,"description":"kept"}`)
	r.decode(t, &ag)
	if r.status != 200 || ag.Name != core.DefaultAgentName || ag.Description != "kept" {
		t.Errorf("update with a null name = %d %s", r.status, r.body)
	}
	st := e.start(ag.ID, "quick")
	e.waitStatus(st.SessionID, core.StatusFinished)
	if r := e.do("GET", "/api/code-sessions/"+st.SessionID+"/events?limit=100000", e.token, nil); r.status != 200 {
		t.Errorf("limit above the maximum = %d %s", r.status, r.body)
	}
}
