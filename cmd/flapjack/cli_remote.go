package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// unreachableError means the server could not be reached (exit status 4).
type unreachableError struct{ err error }

func (e unreachableError) Error() string { return "cannot reach the server: " + e.err.Error() }
func (e unreachableError) Unwrap() error { return e.err }

// remoteAPI calls a flapjack serve over its REST API.
type remoteAPI struct {
	base   *url.URL
	token  string
	client *http.Client
	agent  string
}

func newRemoteAPI(server, token, version string) (*remoteAPI, error) {
	u, err := url.Parse(strings.TrimRight(server, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageError{fmt.Errorf("--server %q: want an http:// or https:// URL", server)}
	}
	// No overall timeout: long polls take up to 25 s; each request is bounded
	// by its context and the wait it asks for.
	return &remoteAPI{base: u, token: token, client: &http.Client{}, agent: "flapjack-cli/" + version}, nil
}

func (r *remoteAPI) Close() error { r.client.CloseIdleConnections(); return nil }

// do sends one request and decodes a 2xx body into out; an error body becomes
// the *core.Error it carries, so codes match the local mode.
func (r *remoteAPI) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	_, err := r.doHeader(ctx, method, path, query, body, out)
	return err
}

// doHeader is do, also returning the answer's headers (a page's Link).
func (r *remoteAPI) doHeader(ctx context.Context, method, path string, query url.Values, body, out any) (http.Header, error) {
	u := *r.base
	u.Path += path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", r.agent)
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, unreachableError{err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, unreachableError{err}
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error.Code != "" {
			return nil, core.Errorf(core.Code(e.Error.Code), "%s", strings.TrimPrefix(e.Error.Message, e.Error.Code+": "))
		}
		return nil, fmt.Errorf("server answered %s", resp.Status)
	}
	if out == nil {
		return resp.Header, nil
	}
	return resp.Header, json.Unmarshal(raw, out)
}

func orgQuery(orgID string) url.Values {
	q := url.Values{}
	if orgID != "" {
		q.Set("orgId", orgID)
	}
	return q
}

func (r *remoteAPI) ListAgents(ctx context.Context, in core.ListAgentsInput) (core.AgentPage, error) {
	var out []core.CodeAgent
	hdr, err := r.doHeader(ctx, http.MethodGet, "/api/code-agents", pageQuery(orgQuery(in.OrgID), in.Limit, in.Cursor), nil, &out)
	return core.AgentPage{Agents: out, NextCursor: nextCursor(hdr)}, err
}

// pageQuery adds a page's limit and cursor to q.
func pageQuery(q url.Values, limit *int, cursor string) url.Values {
	if limit != nil {
		q.Set("limit", strconv.Itoa(*limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	return q
}

// nextCursor reads the cursor of a Link: <...>; rel="next" header.
func nextCursor(h http.Header) string {
	for _, link := range h.Values("Link") {
		for _, part := range strings.Split(link, ",") {
			target, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.Contains(params, `rel="next"`) || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
				continue
			}
			if u, err := url.Parse(target[1 : len(target)-1]); err == nil {
				return u.Query().Get("cursor")
			}
		}
	}
	return ""
}

func (r *remoteAPI) GetAgent(ctx context.Context, id string) (out core.CodeAgent, err error) {
	return out, r.do(ctx, http.MethodGet, "/api/code-agents/"+url.PathEscape(id), nil, nil, &out)
}

func (r *remoteAPI) CreateAgent(ctx context.Context, in core.CreateAgentInput) (out core.CodeAgent, err error) {
	return out, r.do(ctx, http.MethodPost, "/api/code-agents", nil, in, &out)
}

func (r *remoteAPI) UpdateAgent(ctx context.Context, id string, f core.AgentFields) (out core.CodeAgent, err error) {
	return out, r.do(ctx, http.MethodPatch, "/api/code-agents/"+url.PathEscape(id), nil, f, &out)
}

func (r *remoteAPI) DeleteAgent(ctx context.Context, id string) (out core.OKResult, err error) {
	return out, r.do(ctx, http.MethodDelete, "/api/code-agents/"+url.PathEscape(id), nil, nil, &out)
}

func (r *remoteAPI) ListSessions(ctx context.Context, in core.ListSessionsInput) (core.SessionPage, error) {
	q := pageQuery(orgQuery(in.OrgID), in.Limit, in.Cursor)
	if in.CodeAgentID != "" {
		q.Set("codeAgentId", in.CodeAgentID)
	}
	if in.Status != "" {
		q.Set("status", in.Status)
	}
	if in.Archived != nil {
		q.Set("archived", strconv.FormatBool(*in.Archived))
	}
	var out []core.Session
	hdr, err := r.doHeader(ctx, http.MethodGet, "/api/code-sessions", q, nil, &out)
	return core.SessionPage{Sessions: out, NextCursor: nextCursor(hdr)}, err
}

func (r *remoteAPI) GetSession(ctx context.Context, id string) (out core.SessionDetail, err error) {
	return out, r.do(ctx, http.MethodGet, "/api/code-sessions/"+url.PathEscape(id), nil, nil, &out)
}

func (r *remoteAPI) StartSession(ctx context.Context, in core.StartSessionInput) (out core.StartResult, err error) {
	return out, r.do(ctx, http.MethodPost, "/api/code-sessions", nil, in, &out)
}

func (r *remoteAPI) UpdateSession(ctx context.Context, id string, webhookURL *string) (out core.Session, err error) {
	body := map[string]*string{"webhookUrl": webhookURL}
	return out, r.do(ctx, http.MethodPatch, "/api/code-sessions/"+url.PathEscape(id), nil, body, &out)
}

func (r *remoteAPI) SendMessage(ctx context.Context, id, prompt string) (out core.SendResult, err error) {
	body := map[string]string{"prompt": prompt}
	return out, r.do(ctx, http.MethodPost, "/api/code-sessions/"+url.PathEscape(id)+"/messages", nil, body, &out)
}

func (r *remoteAPI) ListEvents(ctx context.Context, id string, in core.EventsInput) (out core.EventPage, err error) {
	q := url.Values{}
	if in.Since != nil {
		q.Set("since", strconv.FormatInt(*in.Since, 10))
	}
	if in.MessageID != "" {
		q.Set("messageId", in.MessageID)
	}
	if in.Limit != nil {
		q.Set("limit", strconv.Itoa(*in.Limit))
	}
	if in.WaitSeconds != nil {
		q.Set("wait", strconv.Itoa(*in.WaitSeconds))
		// Bound the request by its own wait, so a silently dropped connection
		// is noticed and retried instead of hanging.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*in.WaitSeconds)*time.Second+15*time.Second)
		defer cancel()
	}
	err = r.do(ctx, http.MethodGet, "/api/code-sessions/"+url.PathEscape(id)+"/events", q, nil, &out)
	if errors.Is(err, context.DeadlineExceeded) {
		err = unreachableError{err}
	}
	return out, err
}

func (r *remoteAPI) Cancel(ctx context.Context, id string) (out core.CancelResult, err error) {
	return out, r.do(ctx, http.MethodPost, "/api/code-sessions/"+url.PathEscape(id)+"/cancel", nil, nil, &out)
}

func (r *remoteAPI) Archive(ctx context.Context, id string) (out core.ArchiveResult, err error) {
	return out, r.do(ctx, http.MethodPost, "/api/code-sessions/"+url.PathEscape(id)+"/archive", nil, nil, &out)
}
