package mcp_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/flapjack-dev/flapjack/core"
)

func ptr[T any](v T) *T { return &v }

type agentList struct {
	CodeAgents []core.CodeAgent `json:"code_agents"`
	NextCursor string           `json:"next_cursor,omitempty"`
}

type sessionList struct {
	CodeSessions []core.Session `json:"code_sessions"`
	NextCursor   string         `json:"next_cursor,omitempty"`
}

var (
	ignoreAgentMeta   = cmpopts.IgnoreFields(core.CodeAgent{}, "ID", "CreatedAt", "UpdatedAt")
	ignoreSessionMeta = cmpopts.IgnoreFields(core.Session{}, "CreatedAt", "LastEventAt")
	ignoreMessageMeta = cmpopts.IgnoreFields(core.Message{}, "CreatedAt", "CompletedAt")
	sortAgents        = cmpopts.SortSlices(func(a, b core.CodeAgent) bool { return a.ID < b.ID })
)

func TestAgentTools(t *testing.T) {
	e := newEnv(t)

	full := callOK[core.CodeAgent](e, "flapjack_create_code_agent", map[string]any{
		"name":                "Bug Fixer",
		"description":         "Fixes bugs",
		"modelId":             "gpt-5",
		"modelParams":         map[string]any{"temperature": 0.2},
		"defaultRepoUrl":      "https://github.com/acme/app",
		"defaultStartingRef":  "develop",
		"autoCreatePR":        false,
		"workOnCurrentBranch": true,
		"skipReviewerRequest": true,
		"preamble":            "Be careful.",
		"runtime":             "local",
		"orgId":               e.owner.OrgID,
	})
	wantFull := core.CodeAgent{
		OrgID:               e.owner.OrgID,
		Name:                "Bug Fixer",
		Description:         "Fixes bugs",
		ModelID:             "gpt-5",
		ModelParams:         map[string]any{"temperature": 0.2},
		DefaultRepoURL:      ptr("https://github.com/acme/app"),
		DefaultStartingRef:  "develop",
		WorkOnCurrentBranch: true,
		SkipReviewerRequest: true,
		Preamble:            "Be careful.",
		Runtime:             "local",
		CreatedBy:           e.owner.UserID,
	}
	if diff := cmp.Diff(wantFull, full, ignoreAgentMeta); diff != "" {
		t.Errorf("create (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(full.ID, core.PrefixAgent) {
		t.Errorf("agent id %q lacks prefix %q", full.ID, core.PrefixAgent)
	}

	minimal := callOK[core.CodeAgent](e, "flapjack_create_code_agent", map[string]any{})
	wantMinimal := core.CodeAgent{
		OrgID:              e.owner.OrgID,
		Name:               core.DefaultAgentName,
		ModelID:            core.DefaultModelID,
		DefaultStartingRef: core.DefaultStartingRef,
		AutoCreatePR:       true,
		CreatedBy:          e.owner.UserID,
	}
	if diff := cmp.Diff(wantMinimal, minimal, ignoreAgentMeta); diff != "" {
		t.Errorf("create with defaults (-want +got):\n%s", diff)
	}

	got := callOK[core.CodeAgent](e, "flapjack_get_code_agent", map[string]any{"codeAgentId": full.ID})
	if diff := cmp.Diff(full, got); diff != "" {
		t.Errorf("get (-want +got):\n%s", diff)
	}

	for _, args := range []map[string]any{{}, {"orgId": e.owner.OrgID}} {
		list := callOK[agentList](e, "flapjack_list_code_agents", args)
		if diff := cmp.Diff(agentList{CodeAgents: []core.CodeAgent{full, minimal}}, list, sortAgents); diff != "" {
			t.Errorf("list %v (-want +got):\n%s", args, diff)
		}
	}

	// Only the given fields change; false, "" and {} are values.
	updates := []struct {
		args map[string]any
		want func(*core.CodeAgent)
	}{
		{map[string]any{"autoCreatePR": false}, func(a *core.CodeAgent) { a.AutoCreatePR = false }},
		{map[string]any{"name": "Renamed", "description": ""}, func(a *core.CodeAgent) { a.Name = "Renamed" }},
		{map[string]any{"defaultRepoUrl": "/srv/repo", "modelParams": map[string]any{"x": "y"}}, func(a *core.CodeAgent) {
			a.DefaultRepoURL = ptr("/srv/repo")
			a.ModelParams = map[string]any{"x": "y"}
		}},
		{map[string]any{"defaultRepoUrl": "", "modelParams": map[string]any{}}, func(a *core.CodeAgent) {
			a.DefaultRepoURL = nil
			a.ModelParams = nil
		}},
		{map[string]any{"workOnCurrentBranch": true, "skipReviewerRequest": true, "preamble": "p", "defaultStartingRef": "v1.2", "modelId": "m", "runtime": ""},
			func(a *core.CodeAgent) {
				a.WorkOnCurrentBranch, a.SkipReviewerRequest, a.Preamble, a.DefaultStartingRef, a.ModelID = true, true, "p", "v1.2", "m"
			}},
	}
	want := minimal
	for _, u := range updates {
		u.want(&want)
		u.args["codeAgentId"] = minimal.ID
		got := callOK[core.CodeAgent](e, "flapjack_update_code_agent", u.args)
		if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(core.CodeAgent{}, "UpdatedAt")); diff != "" {
			t.Errorf("update %v (-want +got):\n%s", u.args, diff)
		}
		stored := callOK[core.CodeAgent](e, "flapjack_get_code_agent", map[string]any{"codeAgentId": minimal.ID})
		if diff := cmp.Diff(got, stored); diff != "" {
			t.Errorf("get after update %v (-want +got):\n%s", u.args, diff)
		}
	}

	del := callOK[core.OKResult](e, "flapjack_delete_code_agent", map[string]any{"codeAgentId": full.ID})
	if diff := cmp.Diff(core.OKResult{OK: true}, del); diff != "" {
		t.Errorf("delete (-want +got):\n%s", diff)
	}
	res := e.call("flapjack_get_code_agent", map[string]any{"codeAgentId": full.ID})
	if code := errCode(t, res); code != string(core.CodeNotFound) {
		t.Errorf("get after delete: code %q, want %q", code, core.CodeNotFound)
	}
}

func TestSessionTools(t *testing.T) {
	e := newEnv(t)
	ag := e.createAgent(map[string]any{"workOnCurrentBranch": true, "preamble": "Be careful."})

	start := callOK[core.StartResult](e, "flapjack_start_code_session", map[string]any{
		"codeAgentId":  ag.ID,
		"prompt":       "Fix the login bug",
		"cursorApiKey": "key_1234567890abcdef",
		"orgId":        e.owner.OrgID,
		"repoUrl":      "https://github.com/acme/other",
		"startingRef":  "dev",
		"autoCreatePR": false,
		"modelId":      "m1",
		"modelParams":  map[string]any{"a": 1},
		"webhookUrl":   "https://hooks.example.com/x",
	})
	if !strings.HasPrefix(start.SessionID, core.PrefixSession) || !strings.HasPrefix(start.MessageID, core.PrefixMessage) {
		t.Fatalf("start = %+v, want cs- and msg- ids", start)
	}
	sid := start.SessionID

	wantSession := core.Session{
		ID:                  sid,
		OrgID:               e.owner.OrgID,
		CodeAgentID:         ag.ID,
		RepoURL:             "https://github.com/acme/other",
		StartingRef:         "dev",
		Status:              core.StatusPending,
		WebhookURL:          ptr("https://hooks.example.com/x"),
		ModelID:             "m1",
		ModelParams:         map[string]any{"a": float64(1)},
		WorkOnCurrentBranch: true,
		Runtime:             core.RuntimeLocal,
		LastEventSeq:        2,
		CreatedBy:           e.owner.UserID,
	}
	first := core.Message{ID: start.MessageID, SessionID: sid, Role: "user", Prompt: "Fix the login bug", Status: core.MessageQueued}
	detail := callOK[core.SessionDetail](e, "flapjack_get_code_session", map[string]any{"codeSessionId": sid})
	if diff := cmp.Diff(core.SessionDetail{Session: wantSession, Messages: []core.Message{first}}, detail,
		ignoreSessionMeta, ignoreMessageMeta); diff != "" {
		t.Errorf("get (-want +got):\n%s", diff)
	}

	lists := []struct {
		args map[string]any
		want []string
	}{
		{map[string]any{}, []string{sid}},
		{map[string]any{"codeAgentId": ag.ID, "status": "pending", "archived": false, "orgId": e.owner.OrgID}, []string{sid}},
		{map[string]any{"status": "finished"}, []string{}},
		{map[string]any{"archived": true}, []string{}},
		{map[string]any{"codeAgentId": "ca-other"}, []string{}},
	}
	for _, l := range lists {
		list := callOK[sessionList](e, "flapjack_list_code_sessions", l.args)
		ids := []string{}
		for _, s := range list.CodeSessions {
			ids = append(ids, s.ID)
		}
		if diff := cmp.Diff(l.want, ids); diff != "" {
			t.Errorf("list %v (-want +got):\n%s", l.args, diff)
		}
	}
	list := callOK[sessionList](e, "flapjack_list_code_sessions", map[string]any{})
	if diff := cmp.Diff([]core.Session{wantSession}, list.CodeSessions, ignoreSessionMeta); diff != "" {
		t.Errorf("listed session (-want +got):\n%s", diff)
	}

	for _, u := range []struct {
		webhook any
		want    *string
	}{
		{"https://hooks.example.com/new", ptr("https://hooks.example.com/new")},
		{nil, nil},
		{"https://hooks.example.com/again", ptr("https://hooks.example.com/again")},
		{"", nil},
	} {
		got := callOK[core.Session](e, "flapjack_update_code_session", map[string]any{"codeSessionId": sid, "webhookUrl": u.webhook})
		if diff := cmp.Diff(u.want, got.WebhookURL); diff != "" {
			t.Errorf("update webhookUrl %v (-want +got):\n%s", u.webhook, diff)
		}
	}

	// A follow-up on an active session is queued.
	sent := callOK[core.SendResult](e, "flapjack_send_code_session_message", map[string]any{"codeSessionId": sid, "prompt": "Also add a test"})
	second := core.Message{ID: sent.MessageID, SessionID: sid, Role: "user", Prompt: "Also add a test", Status: core.MessageQueued}
	detail = callOK[core.SessionDetail](e, "flapjack_get_code_session", map[string]any{"codeSessionId": sid})
	if diff := cmp.Diff([]core.Message{first, second}, detail.Messages, ignoreMessageMeta); diff != "" {
		t.Errorf("messages after send (-want +got):\n%s", diff)
	}
	if detail.Status != core.StatusPending {
		t.Errorf("status after send = %s, want pending", detail.Status)
	}

	type evSummary struct {
		Seq  int64
		Type core.EventType
		Msg  string
	}
	summarize := func(p core.EventPage) ([]evSummary, int64) {
		out := []evSummary{}
		for _, ev := range p.Events {
			s := evSummary{Seq: ev.Seq, Type: ev.Type}
			if ev.MessageID != nil {
				s.Msg = *ev.MessageID
			}
			if ev.SessionID != sid || !json.Valid(ev.Payload) {
				t.Errorf("event %+v: bad session or payload", ev)
			}
			out = append(out, s)
		}
		return out, p.LastSeq
	}
	all := []evSummary{
		{1, core.EventStatus, ""},
		{2, core.EventUserMessage, first.ID},
		{3, core.EventUserMessage, second.ID},
	}
	for _, q := range []struct {
		args map[string]any
		want []evSummary
		last int64
	}{
		{map[string]any{}, all, 3},
		{map[string]any{"since": 0, "limit": 500, "waitSeconds": 0}, all, 3},
		{map[string]any{"since": 1}, all[1:], 3},
		{map[string]any{"since": 3}, []evSummary{}, 3},
		{map[string]any{"limit": 1}, all[:1], 1},
		{map[string]any{"messageId": second.ID}, all[2:], 3},
	} {
		q.args["codeSessionId"] = sid
		got, last := summarize(callOK[core.EventPage](e, "flapjack_list_code_session_events", q.args))
		if diff := cmp.Diff(q.want, got); diff != "" {
			t.Errorf("events %v (-want +got):\n%s", q.args, diff)
		}
		if last != q.last {
			t.Errorf("events %v: last_seq = %d, want %d", q.args, last, q.last)
		}
	}

	cancel := callOK[core.CancelResult](e, "flapjack_cancel_code_session", map[string]any{"codeSessionId": sid})
	if diff := cmp.Diff(core.CancelResult{OK: true, Status: core.StatusCancelled}, cancel); diff != "" {
		t.Errorf("cancel (-want +got):\n%s", diff)
	}
	detail = callOK[core.SessionDetail](e, "flapjack_get_code_session", map[string]any{"codeSessionId": sid})
	if detail.Status != core.StatusCancelled {
		t.Errorf("status after cancel = %s, want cancelled", detail.Status)
	}
	for _, m := range detail.Messages {
		if m.Status != core.MessageCancelled {
			t.Errorf("message %s after cancel: %s, want cancelled", m.ID, m.Status)
		}
	}

	archive := callOK[core.ArchiveResult](e, "flapjack_archive_code_session", map[string]any{"codeSessionId": sid})
	if diff := cmp.Diff(core.ArchiveResult{OK: true, Archived: true}, archive); diff != "" {
		t.Errorf("archive (-want +got):\n%s", diff)
	}
	stored, err := e.store.GetSession(t.Context(), sid)
	if err != nil {
		t.Fatal(err)
	}
	if !stored.Archived || stored.CursorKeyCiphertext != nil {
		t.Errorf("after archive: archived %v, key ciphertext %d bytes; want archived and no key", stored.Archived, len(stored.CursorKeyCiphertext))
	}
	again := callOK[core.ArchiveResult](e, "flapjack_archive_code_session", map[string]any{"codeSessionId": sid})
	if diff := cmp.Diff(core.ArchiveResult{OK: true, Archived: true}, again); diff != "" {
		t.Errorf("archive again (-want +got):\n%s", diff)
	}
	archived := callOK[sessionList](e, "flapjack_list_code_sessions", map[string]any{"archived": true})
	if len(archived.CodeSessions) != 1 || archived.CodeSessions[0].ID != sid {
		t.Errorf("archived sessions = %+v, want just %s", archived.CodeSessions, sid)
	}
}

// A follow-up on an ended session starts a new run.
func TestSendRestartsEndedSession(t *testing.T) {
	e := newEnv(t)
	ag := e.createAgent(nil)
	sid := e.startSession(ag.ID, core.StatusFinished, false)
	callOK[core.SendResult](e, "flapjack_send_code_session_message", map[string]any{"codeSessionId": sid, "prompt": "more"})
	detail := callOK[core.SessionDetail](e, "flapjack_get_code_session", map[string]any{"codeSessionId": sid})
	if detail.Status != core.StatusCreating {
		t.Errorf("status = %s, want creating", detail.Status)
	}
}

func TestToolErrors(t *testing.T) {
	e := newEnv(t)
	ag := e.createAgent(nil)
	noRepo := e.createAgent(map[string]any{"defaultRepoUrl": ""})
	pending := e.startSession(ag.ID, core.StatusPending, false)
	finished := e.startSession(ag.ID, core.StatusFinished, false)
	archived := e.startSession(ag.ID, core.StatusFinished, true)
	expired := e.startSession(ag.ID, core.StatusExpired, false)
	cancelUnsupported := e.startSession(ag.ID, core.StatusRunning, false)
	e.rt.failCancel(cancelUnsupported, core.Errorf(core.CodeCancelUnsupported, "the run cannot be cancelled"))
	cancelFailed := e.startSession(ag.ID, core.StatusRunning, false)
	e.rt.failCancel(cancelFailed, core.Errorf(core.CodeCursorCancelFailed, "upstream cancel failed"))
	archiveFailed := e.startSession(ag.ID, core.StatusError, false)
	e.rt.failArchive(archiveFailed, core.Errorf(core.CodeArchiveFailed, "upstream archive failed"))

	long := func(n int) string { return strings.Repeat("x", n) }
	const (
		validation      = core.CodeValidation
		notFound        = core.CodeNotFound
		unknownAgent    = "ca-unknown"
		unknownSession  = "cs-unknown"
		unknownOrg      = "org-unknown"
		createAgent     = "flapjack_create_code_agent"
		updateAgent     = "flapjack_update_code_agent"
		start           = "flapjack_start_code_session"
		updateSession   = "flapjack_update_code_session"
		send            = "flapjack_send_code_session_message"
		events          = "flapjack_list_code_session_events"
		cancelSession   = "flapjack_cancel_code_session"
		archiveSession  = "flapjack_archive_code_session"
		listAgents      = "flapjack_list_code_agents"
		listSessions    = "flapjack_list_code_sessions"
		getAgentTool    = "flapjack_get_code_agent"
		getSessionTool  = "flapjack_get_code_session"
		deleteAgentTool = "flapjack_delete_code_agent"
	)
	startArgs := func(kv ...any) map[string]any {
		m := map[string]any{"codeAgentId": ag.ID, "prompt": "do it"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name string
		tool string
		args map[string]any
		want core.Code
	}{
		{"list agents: unknown org", listAgents, map[string]any{"orgId": unknownOrg}, notFound},
		{"list agents: orgId not a string", listAgents, map[string]any{"orgId": 5}, validation},
		{"list agents: unknown argument", listAgents, map[string]any{"org": "x"}, validation},

		{"get agent: unknown", getAgentTool, map[string]any{"codeAgentId": unknownAgent}, notFound},
		{"get agent: missing id", getAgentTool, map[string]any{}, validation},
		{"get agent: empty id", getAgentTool, map[string]any{"codeAgentId": ""}, validation},

		{"create: name too long", createAgent, map[string]any{"name": long(core.MaxNameChars + 1)}, validation},
		{"create: name blank", createAgent, map[string]any{"name": "  "}, validation},
		{"create: description too long", createAgent, map[string]any{"description": long(core.MaxDescriptionChars + 1)}, validation},
		{"create: preamble too long", createAgent, map[string]any{"preamble": long(core.MaxPreambleChars + 1)}, validation},
		{"create: bad repo URL", createAgent, map[string]any{"defaultRepoUrl": "ftp://example.com/repo"}, validation},
		{"create: ref starts with -", createAgent, map[string]any{"defaultStartingRef": "-x"}, validation},
		{"create: unknown runtime", createAgent, map[string]any{"runtime": "mars"}, validation},
		{"create: modelParams not an object", createAgent, map[string]any{"modelParams": "hot"}, validation},
		{"create: unknown org", createAgent, map[string]any{"orgId": unknownOrg}, notFound},
		{"create: unknown argument", createAgent, map[string]any{"color": "red"}, validation},

		{"update agent: unknown", updateAgent, map[string]any{"codeAgentId": unknownAgent, "name": "x"}, notFound},
		{"update agent: missing id", updateAgent, map[string]any{"name": "x"}, validation},
		{"update agent: name too long", updateAgent, map[string]any{"codeAgentId": ag.ID, "name": long(core.MaxNameChars + 1)}, validation},
		{"update agent: orgId is not updatable", updateAgent, map[string]any{"codeAgentId": ag.ID, "orgId": e.owner.OrgID}, validation},
		{"update agent: unknown runtime", updateAgent, map[string]any{"codeAgentId": ag.ID, "runtime": "mars"}, validation},
		{"update agent: autoCreatePR not a boolean", updateAgent, map[string]any{"codeAgentId": ag.ID, "autoCreatePR": "no"}, validation},

		{"delete agent: unknown", deleteAgentTool, map[string]any{"codeAgentId": unknownAgent}, notFound},

		{"list sessions: unknown status", listSessions, map[string]any{"status": "sleeping"}, validation},
		{"list sessions: archived not a boolean", listSessions, map[string]any{"archived": "true"}, validation},
		{"list sessions: unknown org", listSessions, map[string]any{"orgId": unknownOrg}, notFound},

		{"get session: unknown", getSessionTool, map[string]any{"codeSessionId": unknownSession}, notFound},
		{"get session: missing id", getSessionTool, map[string]any{}, validation},

		{"start: prompt empty", start, startArgs("prompt", ""), validation},
		{"start: prompt blank", start, startArgs("prompt", " \n "), validation},
		{"start: prompt too long", start, startArgs("prompt", long(core.MaxPromptChars+1)), validation},
		{"start: prompt missing", start, map[string]any{"codeAgentId": ag.ID}, validation},
		{"start: unknown agent", start, startArgs("codeAgentId", unknownAgent), notFound},
		{"start: unknown org", start, startArgs("orgId", unknownOrg), notFound},
		{"start: missing repo", start, startArgs("codeAgentId", noRepo.ID), validation},
		{"start: bad repo URL", start, startArgs("repoUrl", "http://github.com/acme/app"), validation},
		{"start: ref starts with -", start, startArgs("startingRef", "-rf"), validation},
		{"start: webhook not https", start, startArgs("webhookUrl", "http://hooks.example.com/x"), validation},
		{"start: key with spaces", start, startArgs("cursorApiKey", "sk_secret with space"), validation},
		{"start: key too long", start, startArgs("cursorApiKey", "sk_secret_"+long(core.MaxKeyChars)), validation},
		{"start: modelParams not an object", start, startArgs("modelParams", []any{1}), validation},

		{"update session: webhookUrl missing", updateSession, map[string]any{"codeSessionId": pending}, validation},
		{"update session: webhook not https", updateSession, map[string]any{"codeSessionId": pending, "webhookUrl": "http://hooks.example.com/x"}, validation},
		{"update session: unknown", updateSession, map[string]any{"codeSessionId": unknownSession, "webhookUrl": nil}, notFound},
		{"update session: archived", updateSession, map[string]any{"codeSessionId": archived, "webhookUrl": nil}, core.CodeSessionArchived},

		{"send: prompt empty", send, map[string]any{"codeSessionId": pending, "prompt": ""}, validation},
		{"send: prompt too long", send, map[string]any{"codeSessionId": pending, "prompt": long(core.MaxPromptChars + 1)}, validation},
		{"send: unknown session", send, map[string]any{"codeSessionId": unknownSession, "prompt": "x"}, notFound},
		{"send: archived", send, map[string]any{"codeSessionId": archived, "prompt": "x"}, core.CodeSessionArchived},
		{"send: expired", send, map[string]any{"codeSessionId": expired, "prompt": "x"}, core.CodeSessionExpired},

		{"events: limit 0", events, map[string]any{"codeSessionId": pending, "limit": 0}, validation},
		{"events: limit 0", events, map[string]any{"codeSessionId": pending, "limit": 0}, validation},
		{"events: limit not an integer", events, map[string]any{"codeSessionId": pending, "limit": 1.5}, validation},
		{"events: since -1", events, map[string]any{"codeSessionId": pending, "since": -1}, validation},
		{"events: waitSeconds 26", events, map[string]any{"codeSessionId": pending, "waitSeconds": 26}, validation},
		{"events: waitSeconds -1", events, map[string]any{"codeSessionId": pending, "waitSeconds": -1}, validation},
		{"events: unknown session", events, map[string]any{"codeSessionId": unknownSession}, notFound},

		{"cancel: finished", cancelSession, map[string]any{"codeSessionId": finished}, core.CodeSessionNotActive},
		{"cancel: archived", cancelSession, map[string]any{"codeSessionId": archived}, core.CodeSessionNotActive},
		{"cancel: unsupported upstream", cancelSession, map[string]any{"codeSessionId": cancelUnsupported}, core.CodeCancelUnsupported},
		{"cancel: upstream failed", cancelSession, map[string]any{"codeSessionId": cancelFailed}, core.CodeCursorCancelFailed},
		{"cancel: unknown", cancelSession, map[string]any{"codeSessionId": unknownSession}, notFound},

		{"archive: active", archiveSession, map[string]any{"codeSessionId": pending}, core.CodeSessionActive},
		{"archive: upstream failed", archiveSession, map[string]any{"codeSessionId": archiveFailed}, core.CodeArchiveFailed},
		{"archive: unknown", archiveSession, map[string]any{"codeSessionId": unknownSession}, notFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.call(tt.tool, tt.args)
			if got := errCode(t, res); got != string(tt.want) {
				t.Errorf("%s: code %q, want %q (%s)", tt.tool, got, tt.want, text(res))
			}
			if res.StructuredContent != nil {
				t.Errorf("tool error carries structured content %v", res.StructuredContent)
			}
			// Errors are short and never echo a key back.
			if n := len(text(res)); n > 1000 {
				t.Errorf("error text is %d bytes long", n)
			}
			if strings.Contains(text(res), "sk_secret") {
				t.Errorf("error text echoes the key: %s", text(res))
			}
		})
	}
}

// An unexpected failure shows only "INTERNAL: internal error", never its cause.
func TestInternalErrorHidesCause(t *testing.T) {
	e := newEnv(t)
	ag := e.createAgent(nil)
	sid := e.startSession(ag.ID, core.StatusRunning, false)
	e.rt.failCancel(sid, errors.New("secret cause"))
	res := e.call("flapjack_cancel_code_session", map[string]any{"codeSessionId": sid})
	if got, want := text(res), "INTERNAL: internal error"; !res.IsError || got != want {
		t.Errorf("cancel: IsError %v, text %q; want a tool error %q", res.IsError, got, want)
	}
}

func TestListEventsWait(t *testing.T) {
	e := newEnv(t)
	ag := e.createAgent(nil)
	sid := e.startSession(ag.ID, core.StatusRunning, false)
	base := callOK[core.EventPage](e, "flapjack_list_code_session_events", map[string]any{"codeSessionId": sid})

	t.Run("returns when an event arrives", func(t *testing.T) {
		appended := make(chan error, 1)
		time.AfterFunc(200*time.Millisecond, func() {
			_, err := e.store.AppendEvents(context.Background(), sid, []core.EventInput{{
				Type: core.EventStdout, Payload: json.RawMessage(`{"text":"hello"}`), CreatedAt: time.Now().UTC(),
			}})
			appended <- err
		})
		began := time.Now()
		page := callOK[core.EventPage](e, "flapjack_list_code_session_events",
			map[string]any{"codeSessionId": sid, "since": base.LastSeq, "waitSeconds": 20})
		took := time.Since(began)
		if err := <-appended; err != nil {
			t.Fatal(err)
		}
		if took > 10*time.Second {
			t.Errorf("took %v, want well under the 20 s wait", took)
		}
		if len(page.Events) != 1 || page.Events[0].Type != core.EventStdout || page.LastSeq != base.LastSeq+1 {
			t.Errorf("page = %+v, want the one stdout event with last_seq %d", page, base.LastSeq+1)
		}
	})

	t.Run("empty after the wait", func(t *testing.T) {
		last := callOK[core.EventPage](e, "flapjack_list_code_session_events", map[string]any{"codeSessionId": sid}).LastSeq
		began := time.Now()
		page := callOK[core.EventPage](e, "flapjack_list_code_session_events",
			map[string]any{"codeSessionId": sid, "since": last, "waitSeconds": 1})
		if took := time.Since(began); took < 900*time.Millisecond {
			t.Errorf("returned after %v, want about 1 s", took)
		}
		if diff := cmp.Diff(core.EventPage{Events: []core.Event{}, LastSeq: last}, page); diff != "" {
			t.Errorf("page (-want +got):\n%s", diff)
		}
	})

	t.Run("cancelled request ends the wait", func(t *testing.T) {
		returned := make(chan error, 1)
		e.server.AddReceivingMiddleware(func(next mcp.MethodHandler) mcp.MethodHandler {
			return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
				res, err := next(ctx, method, req)
				if method == "tools/call" {
					returned <- err
				}
				return res, err
			}
		})
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(200*time.Millisecond, cancel)
		_, err := e.client.CallTool(ctx, &mcp.CallToolParams{Name: "flapjack_list_code_session_events",
			Arguments: map[string]any{"codeSessionId": sid, "since": 1 << 40, "waitSeconds": 25}})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("client: err = %v, want context.Canceled", err)
		}
		select {
		case err := <-returned:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("server handler: err = %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("server handler still waiting 10 s after the request was cancelled")
		}
	})
}

// TestExplicitNullMeansOmitted: null on any optional argument is taken as
// if it were not there, on every kind of field.
func TestExplicitNullMeansOmitted(t *testing.T) {
	e := newEnv(t)
	agent := callOK[core.CodeAgent](e, "flapjack_create_code_agent", map[string]any{
		"name": nil, "defaultRepoUrl": "https://github.com/acme/app", "modelParams": nil, "autoCreatePR": nil, "preamble": nil,
	})
	plain := e.createAgent(nil)
	if diff := cmp.Diff(plain, agent, cmpopts.IgnoreFields(core.CodeAgent{}, "ID", "CreatedAt", "UpdatedAt")); diff != "" {
		t.Errorf("agent from nulls differs from one without them (-without +with):\n%s", diff)
	}
	sid := e.startSession(agent.ID, core.StatusFinished, false)
	list := callOK[sessionList](e, "flapjack_list_code_sessions", map[string]any{"codeAgentId": nil, "status": nil, "archived": nil, "limit": nil})
	if len(list.CodeSessions) != 1 || list.CodeSessions[0].ID != sid {
		t.Errorf("list with nulls: %+v", list.CodeSessions)
	}
	events := callOK[struct {
		Events []core.Event `json:"events"`
	}](e, "flapjack_list_code_session_events", map[string]any{"codeSessionId": sid, "since": nil, "limit": nil, "waitSeconds": nil})
	if len(events.Events) == 0 {
		t.Error("events with nulls: none")
	}
}

// TestListToolsPage: the list tools answer at most limit items (50 by
// default) with a next_cursor until the last page; following it returns
// every item once, newest first; a bad limit or cursor is a tool error.
func TestListToolsPage(t *testing.T) {
	e := newEnv(t)
	ag := e.createAgent(nil)
	for range 57 {
		e.startSession(ag.ID, core.StatusPending, false)
	}
	first := callOK[sessionList](e, "flapjack_list_code_sessions", map[string]any{})
	if len(first.CodeSessions) != core.DefaultPageLimit || first.NextCursor == "" {
		t.Fatalf("default page: %d sessions, next_cursor %q; want 50 and a cursor", len(first.CodeSessions), first.NextCursor)
	}
	rest := callOK[sessionList](e, "flapjack_list_code_sessions", map[string]any{"cursor": first.NextCursor, "limit": 500})
	if len(rest.CodeSessions) != 7 || rest.NextCursor != "" {
		t.Fatalf("second page: %d sessions, next_cursor %q; want 7 and none", len(rest.CodeSessions), rest.NextCursor)
	}
	seen := map[string]bool{}
	for _, s := range append(first.CodeSessions, rest.CodeSessions...) {
		if seen[s.ID] {
			t.Fatalf("session %s on two pages", s.ID)
		}
		seen[s.ID] = true
	}
	e.createAgent(nil)
	agents := callOK[agentList](e, "flapjack_list_code_agents", map[string]any{"limit": 1})
	if len(agents.CodeAgents) != 1 || agents.NextCursor == "" {
		t.Fatalf("templates, limit 1 of 2: %d, next_cursor %q", len(agents.CodeAgents), agents.NextCursor)
	}
	more := callOK[agentList](e, "flapjack_list_code_agents", map[string]any{"limit": 1, "cursor": agents.NextCursor})
	if len(more.CodeAgents) != 1 || more.NextCursor != "" || more.CodeAgents[0].ID != ag.ID {
		t.Fatalf("templates, second page: %+v; want the first template and no cursor", more)
	}
	for _, args := range []map[string]any{{"limit": 0}, {"cursor": "nope"}} {
		if res := e.call("flapjack_list_code_sessions", args); !res.IsError {
			t.Errorf("list with %v succeeded; want a tool error", args)
		}
	}
}
