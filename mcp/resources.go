package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/flapjack-dev/flapjack/core"
)

// Sessions are resources: flapjack://sessions/{id} is the session with its
// messages (JSON), flapjack://sessions/{id}/events its latest events as text.
const (
	sessionURIPrefix = "flapjack://sessions/"
	eventsSuffix     = "/events"
	// resourcePage is how many sessions one resources/list page holds.
	resourcePage = 50
	// eventsInResource is how many of the latest events the events resource shows.
	eventsInResource = 200
	// eventLineMax caps one event's line in the events resource.
	eventLineMax = 500
)

// Defaults of the subscription watch.
const (
	// DefaultWatchInterval is how often subscribed sessions are re-read: the
	// database is the source of truth, so a session run by another process
	// (a detached runner) is seen too.
	DefaultWatchInterval = 250 * time.Millisecond
	// eventsUpdateEvery bounds updates of an events resource while events arrive.
	eventsUpdateEvery = time.Second
)

// sessionURI and eventsURI are the resource URIs of a session.
func sessionURI(id string) string { return sessionURIPrefix + id }
func eventsURI(id string) string  { return sessionURIPrefix + id + eventsSuffix }

// parseURI returns the session id of a resource URI and whether it is the
// events resource.
func parseURI(uri string) (id string, events bool, ok bool) {
	rest, ok := strings.CutPrefix(uri, sessionURIPrefix)
	if !ok {
		return "", false, false
	}
	if id, ok := strings.CutSuffix(rest, eventsSuffix); ok {
		rest, events = id, true
	}
	if rest == "" || strings.ContainsAny(rest, "/?#") {
		return "", false, false
	}
	return rest, events, true
}

// resources serves the session resources of one server (one actor) and
// notifies subscribers of changes.
type resources struct {
	svc      *core.Service
	actor    core.Actor
	log      *slog.Logger
	interval time.Duration
	server   *mcp.Server

	mu   sync.Mutex
	subs map[*mcp.ServerSession]map[string]bool // session → subscribed URIs
	// seen is what was last notified per session id.
	seen    map[string]seenState
	running bool
}

type seenState struct {
	status   core.Status
	archived bool
	lastSeq  int64
	notified time.Time // last events update sent
	pending  bool      // events arrived since then
}

// addResources registers the session resources and their subscriptions on s.
func addResources(s *mcp.Server, r *resources) {
	r.server = s
	s.AddResourceTemplate(&mcp.ResourceTemplate{
		Name: "code-session", Title: "Code session",
		Description: "A code session with its messages, as the flapjack_get_code_session tool returns it.",
		URITemplate: sessionURIPrefix + "{id}", MIMEType: "application/json",
	}, r.read)
	s.AddResourceTemplate(&mcp.ResourceTemplate{
		Name: "code-session-events", Title: "Code session events",
		Description: fmt.Sprintf("The latest %d events of a code session as text, one line each (seq, time, type, payload), newest last.", eventsInResource),
		URITemplate: sessionURIPrefix + "{id}" + eventsSuffix, MIMEType: "text/plain",
	}, r.read)
	s.AddReceivingMiddleware(func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			if method == "resources/list" {
				lr, _ := req.(*mcp.ListResourcesRequest)
				return r.list(ctx, lr)
			}
			return next(ctx, method, req)
		}
	})
}

// list pages the actor's sessions, most recent first, with the Service's
// keyset cursor: a page costs the same however many sessions there are.
func (r *resources) list(ctx context.Context, req *mcp.ListResourcesRequest) (*mcp.ListResourcesResult, error) {
	cursor := ""
	if req != nil && req.Params != nil {
		cursor = req.Params.Cursor
	}
	limit := resourcePage
	page, err := r.svc.ListSessions(ctx, r.actor, core.ListSessionsInput{Limit: &limit, Cursor: cursor})
	if err != nil {
		return nil, err
	}
	out := &mcp.ListResourcesResult{Resources: []*mcp.Resource{}, NextCursor: page.NextCursor}
	for _, s := range page.Sessions {
		out.Resources = append(out.Resources, &mcp.Resource{
			URI: sessionURI(s.ID), Name: s.ID, MIMEType: "application/json",
			Title:       fmt.Sprintf("%s session %s (%s)", s.Status, s.ID, s.RepoURL),
			Description: fmt.Sprintf("Code session %s on %s, %s; its events are %s", s.ID, s.RepoURL, s.Status, eventsURI(s.ID)),
		})
	}
	return out, nil
}

// read serves both resources.
func (r *resources) read(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	uri := req.Params.URI
	id, events, ok := parseURI(uri)
	if !ok {
		return nil, mcp.ResourceNotFoundError(uri)
	}
	d, err := r.svc.GetSession(ctx, r.actor, id)
	if core.ErrorCode(err) == core.CodeNotFound {
		return nil, mcp.ResourceNotFoundError(uri)
	}
	if err != nil {
		return nil, fmt.Errorf("%s", core.AsError(err).Error())
	}
	if !events {
		b, err := json.Marshal(d)
		if err != nil {
			return nil, err
		}
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: uri, MIMEType: "application/json", Text: string(b)}}}, nil
	}
	since := max(d.LastEventSeq-eventsInResource, 0)
	var lines []string
	for since < d.LastEventSeq {
		limit := core.MaxEventLimit
		page, err := r.svc.ListEvents(ctx, r.actor, id, core.EventsInput{Since: &since, Limit: &limit})
		if err != nil {
			return nil, fmt.Errorf("%s", core.AsError(err).Error())
		}
		if len(page.Events) == 0 {
			break
		}
		for _, e := range page.Events {
			lines = append(lines, eventLine(e))
		}
		since = page.LastSeq
	}
	text := strings.Join(lines, "\n")
	if text != "" {
		text += "\n"
	}
	return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: uri, MIMEType: "text/plain", Text: text}}}, nil
}

// eventLine is one event as a line: seq, time, type and its payload, with
// control characters escaped so every event stays on one line.
func eventLine(e core.Event) string {
	payload := string(e.Payload)
	if len(payload) > eventLineMax {
		cut := eventLineMax
		for cut > 0 && !utf8RuneStart(payload[cut]) {
			cut--
		}
		payload = payload[:cut] + "…"
	}
	line := fmt.Sprintf("%d %s %s %s", e.Seq, e.CreatedAt.UTC().Format("2006-01-02T15:04:05.000Z"), e.Type, payload)
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '\uFFFD'
		}
		return r
	}, line)
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// subscribe checks the resource exists and is the actor's, then watches it.
func (r *resources) subscribe(ctx context.Context, req *mcp.SubscribeRequest) error {
	id, _, ok := parseURI(req.Params.URI)
	if !ok {
		return mcp.ResourceNotFoundError(req.Params.URI)
	}
	d, err := r.svc.GetSession(ctx, r.actor, id)
	if core.ErrorCode(err) == core.CodeNotFound {
		return mcp.ResourceNotFoundError(req.Params.URI)
	}
	if err != nil {
		return fmt.Errorf("%s", core.AsError(err).Error())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.subs[req.Session] == nil {
		r.subs[req.Session] = map[string]bool{}
	}
	r.subs[req.Session][req.Params.URI] = true
	if _, ok := r.seen[id]; !ok {
		r.seen[id] = seenState{status: d.Status, archived: d.Archived, lastSeq: d.LastEventSeq}
	}
	if !r.running {
		r.running = true
		go r.watch()
	}
	return nil
}

func (r *resources) unsubscribe(_ context.Context, req *mcp.UnsubscribeRequest) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.subs[req.Session], req.Params.URI)
	if len(r.subs[req.Session]) == 0 {
		delete(r.subs, req.Session)
	}
	return nil
}

// watched returns the session ids with subscribers, pruning subscribers that
// disconnected; it reports false (and marks the watch stopped) when none is
// left.
func (r *resources) watched() (map[string]bool, bool) {
	live := map[*mcp.ServerSession]bool{}
	for ss := range r.server.Sessions() {
		live[ss] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := map[string]bool{}
	for ss, uris := range r.subs {
		if !live[ss] {
			delete(r.subs, ss)
			continue
		}
		for uri := range uris {
			if id, _, ok := parseURI(uri); ok {
				ids[id] = true
			}
		}
	}
	for id := range r.seen {
		if !ids[id] {
			delete(r.seen, id)
		}
	}
	if len(ids) == 0 {
		r.running = false
		return nil, false
	}
	return ids, true
}

// watch re-reads the subscribed sessions while any has a subscriber and
// sends resources/updated: for the session once per status change (counted
// from its status events, so changes closer together than the interval are
// each reported), for its events at most once a second while events arrive.
func (r *resources) watch() {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for range t.C {
		ids, ok := r.watched()
		if !ok {
			return
		}
		ctx := context.Background()
		for id := range ids {
			d, err := r.svc.GetSession(ctx, r.actor, id)
			if err != nil {
				continue // gone or no longer the actor's: nothing to report
			}
			r.mu.Lock()
			st := r.seen[id]
			r.mu.Unlock()
			changes := 0
			if d.LastEventSeq != st.lastSeq {
				changes = r.statusChanges(ctx, id, st.lastSeq, d.LastEventSeq)
			}
			if changes == 0 && (d.Status != st.status || d.Archived != st.archived) {
				changes = 1
			}
			now := time.Now()
			if d.LastEventSeq != st.lastSeq {
				st.pending = true
			}
			sendEvents := st.pending && now.Sub(st.notified) >= eventsUpdateEvery
			st.status, st.archived, st.lastSeq = d.Status, d.Archived, d.LastEventSeq
			if sendEvents {
				st.pending, st.notified = false, now
			}
			r.mu.Lock()
			if _, still := r.seen[id]; still {
				r.seen[id] = st
			}
			r.mu.Unlock()
			for range changes {
				r.notify(ctx, sessionURI(id))
			}
			if sendEvents {
				r.notify(ctx, eventsURI(id))
			}
		}
	}
}

// maxStatusScan bounds the events read per session and tick to count status
// changes; past it, a change is reported once.
const maxStatusScan = 2000

// statusChanges counts the status events in (since, last].
func (r *resources) statusChanges(ctx context.Context, id string, since, last int64) int {
	n, read := 0, 0
	for since < last && read < maxStatusScan {
		limit := core.MaxEventLimit
		page, err := r.svc.ListEvents(ctx, r.actor, id, core.EventsInput{Since: &since, Limit: &limit})
		if err != nil || len(page.Events) == 0 {
			break
		}
		for _, e := range page.Events {
			if e.Type == core.EventStatus {
				n++
			}
		}
		read += len(page.Events)
		since = page.LastSeq
	}
	return n
}

func (r *resources) notify(ctx context.Context, uri string) {
	if err := r.server.ResourceUpdated(ctx, &mcp.ResourceUpdatedNotificationParams{URI: uri}); err != nil {
		r.log.Warn("sending resources/updated", "uri", uri, "err", err)
	}
}

// progressEvery is the longest a waiting events call goes without a
// progress notification when the client asked for progress.
const progressEvery = 4 * time.Second

// listEventsWithProgress waits for events in slices of at most progressEvery,
// sending notifications/progress with the session's status before each
// slice, so a client with a short request timeout keeps the call alive.
func (h handlers) listEventsWithProgress(ctx context.Context, req *mcp.CallToolRequest, in listEventsInput) (core.EventPage, error) {
	token := req.Params.GetProgressToken()
	if token == nil || in.WaitSeconds == nil || *in.WaitSeconds <= 0 {
		return h.svc.ListEvents(ctx, h.actor, in.CodeSessionID, in.EventsInput)
	}
	total := *in.WaitSeconds
	if total > core.MaxWaitSeconds {
		// Let the Service refuse it with its own message.
		return h.svc.ListEvents(ctx, h.actor, in.CodeSessionID, in.EventsInput)
	}
	deadline := time.Now().Add(time.Duration(total) * time.Second)
	step := 0
	for {
		remaining := time.Until(deadline)
		slice := min(int(progressEvery/time.Second), int((remaining+time.Second-1)/time.Second))
		if slice < 0 {
			slice = 0
		}
		d, err := h.svc.GetSession(ctx, h.actor, in.CodeSessionID)
		if err != nil {
			return core.EventPage{}, err
		}
		step++
		_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
			ProgressToken: token, Progress: float64(step),
			Message: "waiting for events of " + in.CodeSessionID + " (" + string(d.Status) + ", last seq " + strconv.FormatInt(d.LastEventSeq, 10) + ")",
		})
		part := in.EventsInput
		part.WaitSeconds = &slice
		page, err := h.svc.ListEvents(ctx, h.actor, in.CodeSessionID, part)
		if err != nil || len(page.Events) > 0 || slice == 0 || !time.Now().Before(deadline) {
			return page, err
		}
	}
}
