package restshim

import (
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// The request bodies, with the fields the spec names (camelCase). They are
// functions, not package variables, so nothing can change them.
func agentFieldNames() []string {
	return []string{"name", "description", "modelId", "modelParams", "defaultRepoUrl",
		"defaultStartingRef", "autoCreatePR", "workOnCurrentBranch", "skipReviewerRequest", "preamble", "runtime"}
}

func createAgentSpec() bodySpec {
	return bodySpec{fields: append([]string{"orgId"}, agentFieldNames()...), nullable: []string{"modelParams", "defaultRepoUrl"}}
}

func updateAgentSpec() bodySpec {
	return bodySpec{fields: agentFieldNames(), nullable: []string{"modelParams", "defaultRepoUrl"}}
}

func startSessionSpec() bodySpec {
	return bodySpec{fields: []string{"codeAgentId", "prompt", "cursorApiKey", "orgId", "repoUrl", "startingRef",
		"autoCreatePR", "workOnCurrentBranch", "skipReviewerRequest", "modelId", "modelParams", "webhookUrl"},
		nullable: []string{"modelParams", "webhookUrl"}}
}

func updateSessionSpec() bodySpec {
	return bodySpec{fields: []string{"webhookUrl"}, nullable: []string{"webhookUrl"}}
}

func sendMessageSpec() bodySpec { return bodySpec{fields: []string{"prompt"}} }

// updateSessionBody is the body of PATCH /api/code-sessions/{id}.
type updateSessionBody struct {
	WebhookURL *string `json:"webhookUrl"`
}

// sendMessageBody is the body of POST /api/code-sessions/{id}/messages.
type sendMessageBody struct {
	Prompt string `json:"prompt"`
}

// emptyBody is the body of operations that take none.
type emptyBody struct{}

// emptySpec is for operations without a body: nothing, or {}.
func emptySpec() bodySpec { return bodySpec{} }

// readJSON reads and strictly decodes the request body into dst.
func readJSON(w http.ResponseWriter, r *http.Request, spec bodySpec, dst any) (bodyKeys, error) {
	b, err := readBody(w, r)
	if err != nil {
		return bodyKeys{}, err
	}
	return decodeBody(b, spec, dst)
}

// noBody accepts an empty body or {} and nothing else, so a client that
// thinks it is passing options learns that it is not.
func noBody(w http.ResponseWriter, r *http.Request) error {
	var v emptyBody
	_, err := readJSON(w, r, emptySpec(), &v)
	return err
}

// ---- Code agents ----

func (h *Handler) listAgents(w http.ResponseWriter, r *http.Request, a core.Actor) (int, any, error) {
	q, err := query(r, "orgId", "limit", "cursor")
	if err != nil {
		return 0, nil, err
	}
	limit, lerr := pageLimitParam(q)
	if lerr != nil {
		return 0, nil, lerr
	}
	in := core.ListAgentsInput{OrgID: q.Get("orgId"), Limit: limit, Cursor: q.Get("cursor")}
	fetch := func(in core.ListAgentsInput) ([]core.CodeAgent, string, error) {
		p, err := h.svc.ListAgents(r.Context(), a, in)
		return p.Agents, p.NextCursor, err
	}
	if limit == nil {
		return listAll(in, in.Cursor, func(in *core.ListAgentsInput, l *int, c string) { in.Limit, in.Cursor = l, c }, fetch)
	}
	page, next, serr := fetch(in)
	setNextLink(w, r, next)
	return http.StatusOK, page, serr
}

func (h *Handler) createAgent(w http.ResponseWriter, r *http.Request, a core.Actor) (int, any, error) {
	if _, err := query(r); err != nil {
		return 0, nil, err
	}
	var in core.CreateAgentInput
	if _, err := readJSON(w, r, createAgentSpec(), &in); err != nil {
		return 0, nil, err
	}
	ag, err := h.svc.CreateAgent(r.Context(), a, in)
	if err != nil {
		return 0, nil, err
	}
	w.Header().Set("Location", "/api/code-agents/"+ag.ID)
	return http.StatusCreated, ag, nil
}

func (h *Handler) getAgent(w http.ResponseWriter, r *http.Request, a core.Actor) (int, any, error) {
	if _, err := query(r); err != nil {
		return 0, nil, err
	}
	ag, err := h.svc.GetAgent(r.Context(), a, r.PathValue("codeAgentId"))
	return http.StatusOK, ag, err
}

func (h *Handler) updateAgent(w http.ResponseWriter, r *http.Request, a core.Actor) (int, any, error) {
	if _, err := query(r); err != nil {
		return 0, nil, err
	}
	var in core.AgentFields
	keys, err := readJSON(w, r, updateAgentSpec(), &in)
	if err != nil {
		return 0, nil, err
	}
	// In a PATCH, null clears a nullable field; the Service spells "clear"
	// as an empty value.
	if keys.null["modelParams"] {
		in.ModelParams = map[string]any{}
	}
	if keys.null["defaultRepoUrl"] {
		empty := ""
		in.DefaultRepoURL = &empty
	}
	ag, serr := h.svc.UpdateAgent(r.Context(), a, r.PathValue("codeAgentId"), in)
	return http.StatusOK, ag, serr
}

func (h *Handler) deleteAgent(w http.ResponseWriter, r *http.Request, a core.Actor) (int, any, error) {
	if _, err := query(r); err != nil {
		return 0, nil, err
	}
	if err := noBody(w, r); err != nil {
		return 0, nil, err
	}
	res, err := h.svc.DeleteAgent(r.Context(), a, r.PathValue("codeAgentId"))
	return http.StatusOK, res, err
}

// ---- Code sessions ----

func (h *Handler) listSessions(w http.ResponseWriter, r *http.Request, a core.Actor) (int, any, error) {
	q, err := query(r, "codeAgentId", "status", "archived", "orgId", "limit", "cursor")
	if err != nil {
		return 0, nil, err
	}
	archived, err := boolParam(q, "archived")
	if err != nil {
		return 0, nil, err
	}
	limit, lerr := pageLimitParam(q)
	if lerr != nil {
		return 0, nil, lerr
	}
	in := core.ListSessionsInput{CodeAgentID: q.Get("codeAgentId"), Status: q.Get("status"), Archived: archived,
		OrgID: q.Get("orgId"), Limit: limit, Cursor: q.Get("cursor")}
	fetch := func(in core.ListSessionsInput) ([]core.Session, string, error) {
		p, err := h.svc.ListSessions(r.Context(), a, in)
		return p.Sessions, p.NextCursor, err
	}
	if limit == nil {
		return listAll(in, in.Cursor, func(in *core.ListSessionsInput, l *int, c string) { in.Limit, in.Cursor = l, c }, fetch)
	}
	page, next, serr := fetch(in)
	setNextLink(w, r, next)
	return http.StatusOK, page, serr
}

// pageLimitParam reads ?limit=; absent means the whole list (the spec's
// answer), streamed.
func pageLimitParam(q url.Values) (*int, error) {
	n, err := intParam(q, "limit")
	if err != nil || n == nil {
		return nil, errOrNil(err)
	}
	l := int(min(max(*n, math.MinInt32), math.MaxInt32))
	return &l, nil
}

// errOrNil keeps a nil *core.Error from becoming a non-nil error.
func errOrNil(err *core.Error) error {
	if err == nil {
		return nil
	}
	return err
}

// setNextLink sends Link: <...>; rel="next" (RFC 8288) with the request's
// own URL and the next page's cursor, when there is a next page.
func setNextLink(w http.ResponseWriter, r *http.Request, next string) {
	if next == "" {
		return
	}
	q := r.URL.Query()
	q.Set("cursor", next)
	u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
	w.Header().Set("Link", "<"+u.String()+`>; rel="next"`)
}

// listAll answers a list route without ?limit=: the whole array, as the
// spec has it, read a page of MaxPageLimit at a time and written as it is
// read, so neither the list nor its body is ever whole in memory; with a
// cursor, everything after it. The first page is read before answering, so
// its errors are ordinary error answers.
func listAll[In, T any](in In, cursor string, set func(*In, *int, string), fetch func(In) ([]T, string, error)) (int, any, error) {
	limit := core.MaxPageLimit
	set(&in, &limit, cursor)
	first, next, err := fetch(in)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, streamedArray[T](func(yield func(T) bool) error {
		page := first
		for {
			for _, v := range page {
				if !yield(v) {
					return nil
				}
			}
			if next == "" {
				return nil
			}
			set(&in, &limit, next)
			if page, next, err = fetch(in); err != nil {
				return err
			}
		}
	}), nil
}

func (h *Handler) startSession(w http.ResponseWriter, r *http.Request, a core.Actor) (int, any, error) {
	if _, err := query(r); err != nil {
		return 0, nil, err
	}
	var in core.StartSessionInput
	if _, err := readJSON(w, r, startSessionSpec(), &in); err != nil {
		return 0, nil, err
	}
	res, err := h.svc.StartSession(r.Context(), a, in)
	if err != nil {
		return 0, nil, err
	}
	w.Header().Set("Location", "/api/code-sessions/"+res.SessionID)
	return http.StatusCreated, res, nil
}

func (h *Handler) getSession(w http.ResponseWriter, r *http.Request, a core.Actor) (int, any, error) {
	if _, err := query(r); err != nil {
		return 0, nil, err
	}
	s, err := h.svc.GetSession(r.Context(), a, r.PathValue("codeSessionId"))
	return http.StatusOK, s, err
}

func (h *Handler) updateSession(w http.ResponseWriter, r *http.Request, a core.Actor) (int, any, error) {
	if _, err := query(r); err != nil {
		return 0, nil, err
	}
	var in updateSessionBody
	keys, err := readJSON(w, r, updateSessionSpec(), &in)
	if err != nil {
		return 0, nil, err
	}
	id := r.PathValue("codeSessionId")
	if !keys.present["webhookUrl"] {
		// Nothing to change: answer with the session as it is.
		d, err := h.svc.GetSession(r.Context(), a, id)
		return http.StatusOK, d.Session, err
	}
	// null and "" both clear.
	s, serr := h.svc.UpdateSession(r.Context(), a, id, in.WebhookURL)
	return http.StatusOK, s, serr
}

func (h *Handler) sendMessage(w http.ResponseWriter, r *http.Request, a core.Actor) (int, any, error) {
	if _, err := query(r); err != nil {
		return 0, nil, err
	}
	var in sendMessageBody
	if _, err := readJSON(w, r, sendMessageSpec(), &in); err != nil {
		return 0, nil, err
	}
	res, err := h.svc.SendMessage(r.Context(), a, r.PathValue("codeSessionId"), in.Prompt)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, res, nil
}

func (h *Handler) listEvents(w http.ResponseWriter, r *http.Request, a core.Actor) (int, any, error) {
	q, qerr := query(r, "since", "messageId", "limit", "wait")
	if qerr != nil {
		return 0, nil, qerr
	}
	var in core.EventsInput
	var err error
	if in.Since, err = intParamErr(q, "since"); err != nil {
		return 0, nil, err
	}
	in.MessageID = q.Get("messageId")
	limit, err := intParamErr(q, "limit")
	if err != nil {
		return 0, nil, err
	}
	if limit != nil {
		n := int(max(min(*limit, 1<<30), -1))
		in.Limit = &n
	}
	wait, err := intParamErr(q, "wait")
	if err != nil {
		return 0, nil, err
	}
	if wait != nil {
		n := int(max(min(*wait, 1<<30), -1))
		in.WaitSeconds = &n
		if n > 0 && n <= core.MaxWaitSeconds {
			// A long poll may outlast the server's write timeout.
			http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Duration(n)*time.Second + 15*time.Second))
		}
	}
	// Written as the events are read: a page is the bulk of what readers
	// fetch, and none of it is held as events on the way.
	bp := h.getBuf()
	b, err := h.svc.AppendEventPage(r.Context(), a, r.PathValue("codeSessionId"), in, *bp)
	if err != nil {
		h.putBuf(bp, b)
		return 0, nil, renameField(err, "waitSeconds", "wait")
	}
	return http.StatusOK, pooledJSON{bp, b}, nil
}

// intParamErr is intParam with a plain error result.
func intParamErr(q map[string][]string, name string) (*int64, error) {
	v, err := intParam(q, name)
	if err != nil {
		return nil, err
	}
	return v, nil
}

// renameField rewrites the Service's name for a field (its MCP spelling) into
// the REST parameter's, so the message names what the client sent.
func renameField(err error, from, to string) error {
	e, ok := err.(*core.Error)
	if !ok || e.Code != core.CodeValidation || e.Field != from {
		return err
	}
	c := *e
	c.Field = to
	c.Message = to + strings.TrimPrefix(e.Message, from)
	return &c
}

func (h *Handler) cancel(w http.ResponseWriter, r *http.Request, a core.Actor) (int, any, error) {
	if _, err := query(r); err != nil {
		return 0, nil, err
	}
	if err := noBody(w, r); err != nil {
		return 0, nil, err
	}
	res, err := h.svc.Cancel(r.Context(), a, r.PathValue("codeSessionId"))
	return http.StatusOK, res, err
}

func (h *Handler) archive(w http.ResponseWriter, r *http.Request, a core.Actor) (int, any, error) {
	if _, err := query(r); err != nil {
		return 0, nil, err
	}
	if err := noBody(w, r); err != nil {
		return 0, nil, err
	}
	res, err := h.svc.Archive(r.Context(), a, r.PathValue("codeSessionId"))
	return http.StatusOK, res, err
}
