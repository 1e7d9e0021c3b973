package core

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Defaults of the spec.
const (
	DefaultAgentName   = "New code agent"
	DefaultModelID     = "auto"
	DefaultStartingRef = "main"
	MaxModelIDChars    = 200
	MaxKeyChars        = 1_000
	// safetyPoll is how often a long-poll re-reads the log even when the
	// store's Watch did not fire: a safety net, not the way events arrive.
	safetyPoll = 2 * time.Second
	// maxRetries bounds compare-and-set retries after lost races.
	maxRetries = 8
)

// ServiceConfig wires a Service.
type ServiceConfig struct {
	Store Store
	Box   *Box
	Clock Clock
	// Runtimes by name; DefaultRuntime is used when a template names none.
	Runtimes       map[string]Runtime
	DefaultRuntime string
	// DefaultCursorKey is CURSOR_API_KEY from the server's environment, used when
	// a start request carries no key, so a key need not pass through a model.
	DefaultCursorKey string
	// Redactor hides secrets in everything the Service returns or logs; the
	// Service adds each session's key to it while it handles that session.
	Redactor *Redactor
	// Kick is called after work was queued so that a runner picks it up.
	Kick   func()
	Logger *slog.Logger
	// Webhooks decides whether a webhook URL may be set (core/webhook's
	// address policy). Nil checks only the URL's shape (ValidateWebhookURL):
	// every binary wires the policy; nil is for tests that never deliver.
	Webhooks WebhookChecker
	// Step, for tests, is called at each interleaving point (see Step).
	Step func(Step)
}

// Service implements every operation of the Code Agents API. Adapters call it and
// translate; every rule lives here.
type Service struct {
	cfg ServiceConfig
}

// NewService returns a Service; nil Clock, Kick and Logger get harmless defaults.
func NewService(cfg ServiceConfig) *Service {
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Kick == nil {
		cfg.Kick = func() {}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Redactor == nil {
		cfg.Redactor = NewRedactor()
	}
	cfg.Logger = slog.New(RedactHandler(cfg.Logger.Handler(), cfg.Redactor))
	return &Service{cfg: cfg}
}

// holdKey makes the session's Cursor key known to the redactor while an
// operation on the session runs, so nothing it returns or logs carries it in
// any form (an upstream that echoes the Authorization header, say).
func (s *Service) holdKey(ss Session) (release func()) {
	if ss.CursorKeyCiphertext == nil || s.cfg.Box == nil {
		return func() {}
	}
	key, err := s.cfg.Box.Open(ss.CursorKeyCiphertext, PurposeCursorKey, ss.OrgID, ss.ID)
	if err != nil {
		return func() {}
	}
	return s.cfg.Redactor.Add(string(key))
}

// RuntimeNames lists the configured runtimes, sorted.
func (s *Service) RuntimeNames() []string {
	names := make([]string, 0, len(s.cfg.Runtimes))
	for n := range s.cfg.Runtimes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// internal logs an unexpected failure and returns the client-safe error for it.
func (s *Service) internal(ctx context.Context, op string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	s.cfg.Logger.ErrorContext(ctx, "operation failed", "op", op, "err", err)
	return Internal(err)
}

// orgScope returns the org ids the actor may see, nil for every org, after
// checking an explicit orgId.
func (s *Service) orgScope(ctx context.Context, a Actor, orgID string) ([]string, error) {
	if orgID == "" {
		if a.AllOrgs {
			return nil, nil
		}
		// Without orgId a read covers every org of the caller.
		return a.OrgIDs, nil
	}
	if err := s.checkOrg(ctx, a, orgID); err != nil {
		return nil, err
	}
	return []string{orgID}, nil
}

// checkOrg fails with NOT_FOUND unless orgID names an org the actor belongs to.
func (s *Service) checkOrg(ctx context.Context, a Actor, orgID string) error {
	if !a.memberOf(orgID) {
		return notFound("org", orgID)
	}
	ok, err := s.cfg.Store.OrgExists(ctx, orgID)
	if err != nil {
		return s.internal(ctx, "org", err)
	}
	if !ok {
		return notFound("org", orgID)
	}
	return nil
}

// createOrg picks the org a new object belongs to.
func (s *Service) createOrg(ctx context.Context, a Actor, orgID string) (string, error) {
	if orgID == "" {
		switch {
		case a.DefaultOrgID != "":
			orgID = a.DefaultOrgID
		case !a.AllOrgs && len(a.OrgIDs) == 0:
			return "", invalid("orgId", "you belong to no org yet, so there is nowhere to create this; an admin adds you with: flapjack org add-member ORG USER")
		default:
			return "", invalid("orgId", "is required to create: you belong to %d orgs (%s); name the one this belongs to", len(a.OrgIDs), strings.Join(a.OrgIDs, ", "))
		}
	}
	return orgID, s.checkOrg(ctx, a, orgID)
}

// ---- Code agents ----

// ListAgents returns a page of the templates the actor can see, newest
// first.
func (s *Service) ListAgents(ctx context.Context, a Actor, in ListAgentsInput) (AgentPage, error) {
	limit, err := pageLimit(in.Limit)
	if err != nil {
		return AgentPage{}, err
	}
	after, err := decodeCursor("cursor", in.Cursor)
	if err != nil {
		return AgentPage{}, err
	}
	orgs, err := s.orgScope(ctx, a, in.OrgID)
	if err != nil {
		return AgentPage{}, err
	}
	// One more than the page says whether there is a next one.
	agents, err := s.cfg.Store.ListAgents(ctx, AgentFilter{OrgIDs: orgs, Limit: limit + 1, After: after})
	if err != nil {
		return AgentPage{}, s.internal(ctx, "list agents", err)
	}
	page := AgentPage{}
	page.Agents, page.NextCursor = pageOf(agents, limit, func(a CodeAgent) PageKey { return PageKey{a.CreatedAt, a.ID} })
	return page, nil
}

// GetAgent returns one template.
func (s *Service) GetAgent(ctx context.Context, a Actor, id string) (CodeAgent, error) {
	if id == "" {
		return CodeAgent{}, invalid("codeAgentId", "is required")
	}
	ag, err := s.cfg.Store.GetAgent(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && !a.memberOf(ag.OrgID)) {
		return CodeAgent{}, notFound("code agent", id)
	}
	if err != nil {
		return CodeAgent{}, s.internal(ctx, "get agent", err)
	}
	return ag, nil
}

// CreateAgent creates a template with the spec's defaults for missing fields.
func (s *Service) CreateAgent(ctx context.Context, a Actor, in CreateAgentInput) (CodeAgent, error) {
	now := s.cfg.Clock.Now()
	ag := CodeAgent{
		ID:                 NewID(PrefixAgent),
		Name:               DefaultAgentName,
		ModelID:            DefaultModelID,
		DefaultStartingRef: DefaultStartingRef,
		AutoCreatePR:       true,
		CreatedBy:          a.UserID,
		CreatedAt:          now,
		UpdatedAt:          now,
	}
	if err := s.applyAgentFields(&ag, in.AgentFields); err != nil {
		return CodeAgent{}, err
	}
	if err := s.checkTemplateParams(ag); err != nil {
		return CodeAgent{}, err
	}
	org, err := s.createOrg(ctx, a, in.OrgID)
	if err != nil {
		return CodeAgent{}, err
	}
	ag.OrgID = org
	if err := s.cfg.Store.InsertAgent(ctx, ag); err != nil {
		return CodeAgent{}, s.internal(ctx, "create agent", err)
	}
	return ag, nil
}

// UpdateAgent changes only the fields given (false and "" included).
func (s *Service) UpdateAgent(ctx context.Context, a Actor, id string, f AgentFields) (CodeAgent, error) {
	ag, err := s.GetAgent(ctx, a, id)
	if err != nil {
		return CodeAgent{}, err
	}
	if err := s.applyAgentFields(&ag, f); err != nil {
		return CodeAgent{}, err
	}
	if f.ModelParams != nil || f.Runtime != nil {
		if err := s.checkTemplateParams(ag); err != nil {
			return CodeAgent{}, err
		}
	}
	ag.UpdatedAt = s.cfg.Clock.Now()
	if err := s.cfg.Store.UpdateAgent(ctx, ag); errors.Is(err, ErrNotFound) {
		return CodeAgent{}, notFound("code agent", id)
	} else if err != nil {
		return CodeAgent{}, s.internal(ctx, "update agent", err)
	}
	return ag, nil
}

// DeleteAgent deletes a template; its sessions keep their snapshot and go on.
func (s *Service) DeleteAgent(ctx context.Context, a Actor, id string) (OKResult, error) {
	if _, err := s.GetAgent(ctx, a, id); err != nil {
		return OKResult{}, err
	}
	if err := s.cfg.Store.DeleteAgent(ctx, id); errors.Is(err, ErrNotFound) {
		return OKResult{}, notFound("code agent", id)
	} else if err != nil {
		return OKResult{}, s.internal(ctx, "delete agent", err)
	}
	return OKResult{OK: true}, nil
}

// applyAgentFields validates the given fields and copies them onto ag.
func (s *Service) applyAgentFields(ag *CodeAgent, f AgentFields) error {
	if f.Name != nil {
		if strings.TrimSpace(*f.Name) == "" {
			return invalid("name", "must not be blank")
		}
		if err := checkLen("name", *f.Name, MaxNameChars); err != nil {
			return err
		}
		if err := ValidateText("name", *f.Name, false); err != nil {
			return err
		}
		ag.Name = *f.Name
	}
	if f.Description != nil {
		if err := checkLen("description", *f.Description, MaxDescriptionChars); err != nil {
			return err
		}
		if err := ValidateText("description", *f.Description, true); err != nil {
			return err
		}
		ag.Description = *f.Description
	}
	if f.ModelID != nil {
		if err := validateModelID("modelId", *f.ModelID); err != nil {
			return err
		}
		ag.ModelID = *f.ModelID
	}
	if f.ModelParams != nil {
		if err := validateModelParams(f.ModelParams); err != nil {
			return err
		}
		ag.ModelParams = f.ModelParams
		if len(f.ModelParams) == 0 {
			ag.ModelParams = nil
		}
	}
	if f.Runtime != nil {
		if *f.Runtime != "" {
			if err := ValidateRuntime("runtime", *f.Runtime, s.RuntimeNames()); err != nil {
				return err
			}
		}
		ag.Runtime = *f.Runtime
	}
	if f.DefaultRepoURL != nil {
		if *f.DefaultRepoURL == "" {
			ag.DefaultRepoURL = nil
		} else {
			rt := s.runtimeFor(ag.Runtime)
			allowLocal := rt != nil && rt.AllowsLocalRepos()
			if err := ValidateRepoURL("defaultRepoUrl", *f.DefaultRepoURL, allowLocal); err != nil {
				return err
			}
			v := *f.DefaultRepoURL
			ag.DefaultRepoURL = &v
		}
	}
	if f.DefaultStartingRef != nil {
		if err := ValidateRef("defaultStartingRef", *f.DefaultStartingRef); err != nil {
			return err
		}
		ag.DefaultStartingRef = *f.DefaultStartingRef
	}
	if f.AutoCreatePR != nil {
		ag.AutoCreatePR = *f.AutoCreatePR
	}
	if f.WorkOnCurrentBranch != nil {
		ag.WorkOnCurrentBranch = *f.WorkOnCurrentBranch
	}
	if f.SkipReviewerRequest != nil {
		ag.SkipReviewerRequest = *f.SkipReviewerRequest
	}
	if f.Preamble != nil {
		if err := checkLen("preamble", *f.Preamble, MaxPreambleChars); err != nil {
			return err
		}
		ag.Preamble = *f.Preamble
	}
	return nil
}

func validateModelID(field, m string) error {
	if strings.TrimSpace(m) == "" {
		return invalid(field, "must not be blank")
	}
	if strings.HasPrefix(m, "-") {
		return invalid(field, "must not start with '-'")
	}
	for _, r := range m {
		if r < 0x20 || r == 0x7f {
			return invalid(field, "must not contain control characters")
		}
	}
	return checkLen(field, m, MaxModelIDChars)
}

func validateModelParams(p map[string]any) error {
	b, err := json.Marshal(p)
	if err != nil {
		return invalid("modelParams", "must be a JSON object")
	}
	if len(b) > 16<<10 {
		return invalid("modelParams", "must be at most 16 KiB of JSON")
	}
	return nil
}

// runtimeFor returns the runtime a template or session names, or the default.
func (s *Service) runtimeFor(name string) Runtime {
	if name == "" {
		name = s.cfg.DefaultRuntime
	}
	return s.cfg.Runtimes[name]
}

// ---- Sessions ----

// ListSessions returns a page of the sessions the actor can see, newest
// first.
func (s *Service) ListSessions(ctx context.Context, a Actor, in ListSessionsInput) (SessionPage, error) {
	limit, err := pageLimit(in.Limit)
	if err != nil {
		return SessionPage{}, err
	}
	after, err := decodeCursor("cursor", in.Cursor)
	if err != nil {
		return SessionPage{}, err
	}
	orgs, err := s.orgScope(ctx, a, in.OrgID)
	if err != nil {
		return SessionPage{}, err
	}
	f := SessionFilter{OrgIDs: orgs, CodeAgentID: in.CodeAgentID, Archived: in.Archived, Limit: limit + 1, After: after}
	if in.Status != "" {
		st := Status(in.Status)
		if !slices.Contains(AllStatuses(), st) {
			return SessionPage{}, invalid("status", "must be one of pending, creating, running, finished, error, cancelled, expired")
		}
		f.Statuses = []Status{st}
	}
	list, err := s.cfg.Store.ListSessions(ctx, f)
	if err != nil {
		return SessionPage{}, s.internal(ctx, "list sessions", err)
	}
	page := SessionPage{}
	page.Sessions, page.NextCursor = pageOf(list, limit, func(s Session) PageKey { return PageKey{s.CreatedAt, s.ID} })
	return page, nil
}

// session loads a session the actor may see.
func (s *Service) session(ctx context.Context, a Actor, id string) (Session, error) {
	if id == "" {
		return Session{}, invalid("codeSessionId", "is required")
	}
	ss, err := s.cfg.Store.GetSession(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && !a.memberOf(ss.OrgID)) {
		return Session{}, notFound("code session", id)
	}
	if err != nil {
		return Session{}, s.internal(ctx, "get session", err)
	}
	return ss, nil
}

// GetSession returns a session with its full message history.
func (s *Service) GetSession(ctx context.Context, a Actor, id string) (SessionDetail, error) {
	ss, err := s.session(ctx, a, id)
	if err != nil {
		return SessionDetail{}, err
	}
	msgs, err := s.cfg.Store.ListMessages(ctx, id)
	if err != nil {
		return SessionDetail{}, s.internal(ctx, "list messages", err)
	}
	if msgs == nil {
		msgs = []Message{}
	}
	return SessionDetail{Session: ss, Messages: msgs}, nil
}

// StartSession creates a session from a template and queues its first message.
func (s *Service) StartSession(ctx context.Context, a Actor, in StartSessionInput) (StartResult, error) {
	if in.CodeAgentID == "" {
		return StartResult{}, invalid("codeAgentId", "is required")
	}
	if err := ValidatePrompt(in.Prompt); err != nil {
		return StartResult{}, err
	}
	if in.OrgID != "" {
		if err := s.checkOrg(ctx, a, in.OrgID); err != nil {
			return StartResult{}, err
		}
	}
	ag, err := s.GetAgent(ctx, a, in.CodeAgentID)
	if err != nil {
		return StartResult{}, err
	}
	if in.OrgID != "" && in.OrgID != ag.OrgID {
		return StartResult{}, notFound("code agent", in.CodeAgentID)
	}
	runtimeName := ag.Runtime
	if runtimeName == "" {
		runtimeName = s.cfg.DefaultRuntime
	}
	rt := s.cfg.Runtimes[runtimeName]
	if rt == nil {
		return StartResult{}, invalid("runtime", "code agent %s uses runtime %q, which this server does not have; available: %s",
			ag.ID, runtimeName, strings.Join(s.RuntimeNames(), ", "))
	}

	if _, checks := rt.(ModelParamsChecker); !checks {
		if err := rt.Ready(); err != nil {
			return StartResult{}, notReady(rt, err)
		}
	}
	var repo string
	switch {
	case in.RepoURL != nil && *in.RepoURL != "":
		repo = *in.RepoURL
	case ag.DefaultRepoURL != nil:
		repo = *ag.DefaultRepoURL
	default:
		return StartResult{}, invalid("repoUrl", "is required because code agent %s has no default_repo_url", ag.ID)
	}
	if err := ValidateRepoURL("repoUrl", repo, rt.AllowsLocalRepos()); err != nil {
		return StartResult{}, err
	}
	ref := ag.DefaultStartingRef
	if in.StartingRef != nil {
		ref = *in.StartingRef
	}
	if err := ValidateRef("startingRef", ref); err != nil {
		return StartResult{}, err
	}
	model := ag.ModelID
	if in.ModelID != nil {
		if err := validateModelID("modelId", *in.ModelID); err != nil {
			return StartResult{}, err
		}
		model = *in.ModelID
	}
	params := ag.ModelParams
	if in.ModelParams != nil {
		if err := validateModelParams(in.ModelParams); err != nil {
			return StartResult{}, err
		}
		params = in.ModelParams
	}
	if err := checkModelParams(rt, params); err != nil {
		return StartResult{}, err
	}
	var webhook *string
	if in.WebhookURL != nil && *in.WebhookURL != "" {
		if err := s.checkWebhookURL(ctx, *in.WebhookURL); err != nil {
			return StartResult{}, err
		}
		webhook = in.WebhookURL
	}
	key := in.CursorAPIKey
	if key == "" {
		key = s.cfg.DefaultCursorKey
	}
	if err := validateKey(key, in.CursorAPIKey == ""); err != nil {
		return StartResult{}, err
	}
	defer s.cfg.Redactor.Add(key)()
	if key == "" && rt.NeedsCursorKey() {
		return StartResult{}, invalid("cursorApiKey", "is required for the %s runtime: pass cursorApiKey, or set CURSOR_API_KEY in the environment of the flapjack server", rt.Name())
	}

	now := s.cfg.Clock.Now()
	ss := Session{
		ID:                  NewID(PrefixSession),
		OrgID:               ag.OrgID,
		CodeAgentID:         ag.ID,
		RepoURL:             repo,
		StartingRef:         ref,
		WebhookURL:          webhook,
		ModelID:             model,
		ModelParams:         params,
		AutoCreatePR:        pick(in.AutoCreatePR, ag.AutoCreatePR),
		WorkOnCurrentBranch: pick(in.WorkOnCurrentBranch, ag.WorkOnCurrentBranch),
		SkipReviewerRequest: pick(in.SkipReviewerRequest, ag.SkipReviewerRequest),
		Runtime:             runtimeName,
		Preamble:            ag.Preamble,
		CreatedBy:           a.UserID,
		CreatedAt:           now,
	}
	if key != "" {
		if s.cfg.Box == nil {
			return StartResult{}, s.internal(ctx, "start session", errors.New("no secrets box configured"))
		}
		ss.CursorKeyCiphertext = s.cfg.Box.Seal([]byte(key), PurposeCursorKey, ss.OrgID, ss.ID)
	}
	msg := Message{
		ID:        NewID(PrefixMessage),
		SessionID: ss.ID,
		Role:      "user",
		Prompt:    in.Prompt,
		CreatedAt: now,
	}
	newSessionState(&ss, &msg)
	events := []EventInput{
		statusEvent(now, "", ss.Status, "session created"),
		userMessageEvent(now, msg, false),
	}
	if _, err := s.cfg.Store.CreateSession(ctx, ss, msg, events); err != nil {
		return StartResult{}, s.internal(ctx, "start session", err)
	}
	s.cfg.Kick()
	return StartResult{SessionID: ss.ID, MessageID: msg.ID}, nil
}

// checkTemplateParams refuses a template whose modelParams name what its
// runtime cannot run (an unknown or missing agent). A template that names
// none is not checked: the server's default agent may be installed after
// templates are made; starts check it.
func (s *Service) checkTemplateParams(ag CodeAgent) error {
	if len(ag.ModelParams) == 0 {
		return nil
	}
	return checkModelParams(s.runtimeFor(ag.Runtime), ag.ModelParams)
}

// checkModelParams asks a runtime that depends on them whether it can run
// with these modelParams.
func checkModelParams(rt Runtime, params map[string]any) error {
	c, ok := rt.(ModelParamsChecker)
	if !ok || rt == nil {
		return nil
	}
	if err := c.CheckModelParams(params); err != nil {
		return invalid("modelParams", "%v (on the flapjack server)", err)
	}
	return nil
}

// notReady is the VALIDATION_ERROR for a runtime that cannot run sessions.
func notReady(rt Runtime, err error) error {
	return invalid("runtime", "the %s runtime cannot run sessions: %v (in the environment of the flapjack server)", rt.Name(), err)
}

func pick(override *bool, def bool) bool {
	if override != nil {
		return *override
	}
	return def
}

// validateKey checks a Cursor key's shape without ever quoting it. fromEnv
// says the key is the server's CURSOR_API_KEY, so the message can say where
// to fix it.
func validateKey(k string, fromEnv bool) error {
	if k == "" {
		return nil
	}
	what := "must"
	if fromEnv {
		what = "comes from CURSOR_API_KEY in the environment of the flapjack server, and it must"
	}
	if len(k) > MaxKeyChars {
		return invalid("cursorApiKey", "%s be at most %d characters", what, MaxKeyChars)
	}
	for _, r := range k {
		if r <= 0x20 || r == 0x7f {
			return invalid("cursorApiKey", "%s not contain spaces or control characters", what)
		}
	}
	if utf8.RuneCountInString(k) < MinCursorKeyLen {
		return invalid("cursorApiKey", "%s be at least %d characters long; it is not a Cursor API key", what, MinCursorKeyLen)
	}
	return nil
}

// UpdateSession sets or (with nil or "") clears the session's webhook URL.
func (s *Service) UpdateSession(ctx context.Context, a Actor, id string, webhookURL *string) (Session, error) {
	if webhookURL != nil && *webhookURL == "" {
		webhookURL = nil
	}
	if webhookURL != nil {
		if err := s.checkWebhookURL(ctx, *webhookURL); err != nil {
			return Session{}, err
		}
	}
	var out Session
	err := s.update(ctx, a, id, func(ss Session, _ []Message) (Change, error) {
		if err := CheckOperation(OpUpdate, ss.Status, ss.Archived); err != nil {
			return Change{}, err
		}
		ss.WebhookURL = webhookURL
		out = ss
		return Change{Session: ss}, nil
	})
	if err != nil {
		return Session{}, err
	}
	return out, nil
}

// checkWebhookURL applies the webhook address policy when a URL is set: a
// refused URL is a VALIDATION_ERROR naming webhookUrl, and nothing is stored.
func (s *Service) checkWebhookURL(ctx context.Context, raw string) error {
	if s.cfg.Webhooks == nil {
		return ValidateWebhookURL(raw)
	}
	err := s.cfg.Webhooks.CheckWebhookURL(ctx, raw)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return invalid("webhookUrl", "%v", err)
}

// kickForWebhook makes sure a runner will send the webhook of a status change
// made outside the runner (cancel, archive): without active sessions none may
// be running.
func (s *Service) kickForWebhook(ss Session) {
	if ss.WebhookURL != nil {
		s.cfg.Kick()
	}
}

// SendMessage queues a follow-up. On an active session it waits its turn; on a
// finished, failed or cancelled one it starts a new run (status → creating).
func (s *Service) SendMessage(ctx context.Context, a Actor, id, prompt string) (SendResult, error) {
	if err := ValidatePrompt(prompt); err != nil {
		return SendResult{}, err
	}
	msgID := NewID(PrefixMessage)
	err := s.update(ctx, a, id, func(ss Session, _ []Message) (Change, error) {
		if err := CheckOperation(OpSend, ss.Status, ss.Archived); err != nil {
			return Change{}, err
		}
		if rt := s.cfg.Runtimes[ss.Runtime]; rt != nil {
			if _, checks := rt.(ModelParamsChecker); checks {
				if err := checkModelParams(rt, ss.ModelParams); err != nil {
					return Change{}, err
				}
			} else if err := rt.Ready(); err != nil {
				return Change{}, notReady(rt, err)
			}
		}
		now := s.cfg.Clock.Now()
		return decideFollowUp(ss, Message{ID: msgID, SessionID: ss.ID, Role: "user", Prompt: prompt, CreatedAt: now}, now)
	})
	if err != nil {
		return SendResult{}, err
	}
	s.cfg.Kick()
	return SendResult{MessageID: msgID}, nil
}

// ListEvents reads the session's log after Since; with WaitSeconds it long-polls
// until an event exists, the wait ends, or ctx is cancelled.
func (s *Service) ListEvents(ctx context.Context, a Actor, id string, in EventsInput) (EventPage, error) {
	var page EventPage
	err := s.readEvents(ctx, a, id, in, func(q EventQuery) (bool, error) {
		evs, err := s.cfg.Store.ListEvents(ctx, q)
		if err != nil {
			return false, err
		}
		page = EventPage{Events: evs, LastSeq: q.Since}
		if len(evs) > 0 {
			page.LastSeq = evs[len(evs)-1].Seq
		} else {
			page.Events = []Event{}
		}
		return len(evs) > 0, nil
	})
	if err != nil {
		return EventPage{}, err
	}
	return page, nil
}

// AppendEventPage is ListEvents written onto b as the page's JSON (the
// bytes of EventPage.AppendJSON), each event going from the store into b
// as it is read, none held: a page of 200 then makes a fraction of the
// garbage. On an error b is returned as it came.
func (s *Service) AppendEventPage(ctx context.Context, a Actor, id string, in EventsInput, b []byte) ([]byte, error) {
	start := len(b)
	err := s.readEvents(ctx, a, id, in, func(q EventQuery) (bool, error) {
		w := eventPageWriter{b: append(b[:start], eventPageStart...), enc: eventEncoder{deriveIDs: true}}
		err := s.cfg.Store.StreamEvents(ctx, q, func(e *Event) bool {
			w.add(e)
			return true
		})
		if err != nil {
			return false, err
		}
		last := q.Since
		if w.n > 0 {
			last = w.last
		}
		b = w.end(last)
		return w.n > 0, nil
	})
	if err != nil {
		return b[:start], err
	}
	return b, nil
}

// readEvents checks in and the actor's access to the session, then calls
// read with the query until it finds events, or, with WaitSeconds, until
// the wait ends or ctx is cancelled.
func (s *Service) readEvents(ctx context.Context, a Actor, id string, in EventsInput, read func(EventQuery) (found bool, err error)) error {
	since := int64(0)
	if in.Since != nil {
		if *in.Since < 0 {
			return invalid("since", "must be >= 0")
		}
		since = *in.Since
	}
	limit := DefaultEventLimit
	if in.Limit != nil {
		if *in.Limit < 1 {
			return invalid("limit", "must be at least 1")
		}
		// Above the maximum is served as the maximum, as the spec says.
		limit = min(*in.Limit, MaxEventLimit)
	}
	wait := 0
	if in.WaitSeconds != nil {
		if *in.WaitSeconds < 0 || *in.WaitSeconds > MaxWaitSeconds {
			return invalid("waitSeconds", "must be between 0 and %d", MaxWaitSeconds)
		}
		wait = *in.WaitSeconds
	}
	if _, err := s.session(ctx, a, id); err != nil {
		return err
	}
	q := EventQuery{SessionID: id, Since: since, MessageID: in.MessageID, Limit: limit, MaxBytes: MaxEventPageBytes}
	deadline := time.Now().Add(time.Duration(wait) * time.Second)
	for {
		// Subscribe before reading, so an event committed after the read
		// wakes this wait at once.
		var changed <-chan struct{}
		stop := func() {}
		if wait > 0 {
			changed, stop = s.cfg.Store.Watch(id)
		}
		found, err := read(q)
		if err != nil {
			stop()
			return s.internal(ctx, "list events", err)
		}
		if found || wait == 0 || !time.Now().Before(deadline) {
			stop()
			return nil
		}
		t := time.NewTimer(min(safetyPoll, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			stop()
			return ctx.Err()
		case <-changed:
		case <-t.C:
		}
		t.Stop()
		stop()
	}
}

// WatchSession returns a channel closed at the next commit that may have
// changed the session, for a reader that follows it (an event stream); stop
// releases it. Subscribe before reading. The caller has checked access.
func (s *Service) WatchSession(id string) (changed <-chan struct{}, stop func()) {
	return s.cfg.Store.Watch(id)
}

// MaxEventPageBytes bounds the payloads of one events page: a page ends
// early rather than pass it (with at least one event), and last_seq says
// where to go on, so a poller loses nothing and no reader can make the
// server hold gigabytes.
const MaxEventPageBytes = 4 << 20

// Cancel stops an active session: the run is stopped through its runtime and
// queued messages are cancelled. It answers once the run has stopped.
func (s *Service) Cancel(ctx context.Context, a Actor, id string) (CancelResult, error) {
	ss, err := s.session(ctx, a, id)
	if err != nil {
		return CancelResult{}, err
	}
	if err := CheckOperation(OpCancel, ss.Status, ss.Archived); err != nil {
		return CancelResult{}, err
	}
	defer s.holdKey(ss)()
	rt := s.cfg.Runtimes[ss.Runtime]
	mark := func(ctx context.Context) error {
		return s.update(ctx, a, id, func(cur Session, msgs []Message) (Change, error) {
			return decideCancel(cur, msgs, s.cfg.Clock.Now())
		})
	}
	if rt == nil {
		err = mark(ctx)
	} else {
		err = rt.Cancel(ctx, ss, mark)
	}
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return CancelResult{}, s.cfg.Redactor.Error(e)
		}
		return CancelResult{}, s.cfg.Redactor.Error(s.internal(ctx, "cancel", err))
	}
	s.kickForWebhook(ss)
	return CancelResult{OK: true, Status: StatusCancelled}, nil
}

// Archive archives a terminal session: the runtime releases what it holds, then
// the stored Cursor key is wiped for good. Archiving twice is a no-op.
func (s *Service) Archive(ctx context.Context, a Actor, id string) (ArchiveResult, error) {
	ss, err := s.session(ctx, a, id)
	if err != nil {
		return ArchiveResult{}, err
	}
	if ss.Archived {
		return ArchiveResult{OK: true, Archived: true}, nil
	}
	if err := CheckOperation(OpArchive, ss.Status, ss.Archived); err != nil {
		return ArchiveResult{}, err
	}
	defer s.holdKey(ss)()
	rt := s.cfg.Runtimes[ss.Runtime]
	if _, local := rt.(WorkspaceHolder); local {
		return s.archiveThenRelease(ctx, a, id, rt)
	}
	if rt == nil {
		return s.commitArchive(ctx, a, id, ss)
	}
	// Mark, archive upstream, then commit: a failed upstream archive leaves
	// the session as it was (the mark removed, the key kept), and no
	// follow-up lands between the upstream archive and the commit. Once the
	// upstream archive began, the request's end no longer stops the rest.
	var mark time.Time
	err = s.update(ctx, a, id, func(cur Session, _ []Message) (Change, error) {
		ch, err := decideArchiveMark(cur, s.cfg.Clock.Now())
		if err == nil {
			mark = *ch.Session.ArchivingAt
		}
		return ch, err
	})
	if errors.Is(err, errNoChange) {
		return ArchiveResult{OK: true, Archived: true}, nil
	}
	if err != nil {
		return ArchiveResult{}, err
	}
	at(s.cfg.Step, StepArchiveMarked)
	ctx = context.WithoutCancel(ctx)
	if err := rt.Archive(ctx, ss); err != nil {
		uerr := s.update(ctx, a, id, func(cur Session, _ []Message) (Change, error) {
			return decideArchiveUnmark(cur, mark)
		})
		if uerr != nil && !errors.Is(uerr, errNoChange) {
			s.cfg.Logger.WarnContext(ctx, "archive: removing the archive mark failed; it lapses by itself", "session", id, "err", uerr)
		}
		var e *Error
		if errors.As(err, &e) {
			return ArchiveResult{}, s.cfg.Redactor.Error(e)
		}
		s.cfg.Logger.WarnContext(ctx, "archive failed", "session", id, "err", err)
		return ArchiveResult{}, Errorf(CodeArchiveFailed, "archiving the session's %s resources failed; retry", ss.Runtime)
	}
	at(s.cfg.Step, StepArchivedUpstream)
	return s.commitArchive(ctx, a, id, ss)
}

// commitArchive records the session archived and its key wiped. Committed
// is success, whatever a checkpoint after it says.
func (s *Service) commitArchive(ctx context.Context, a Actor, id string, ss Session) (ArchiveResult, error) {
	err := s.update(ctx, a, id, func(cur Session, _ []Message) (Change, error) {
		return decideArchive(cur, s.cfg.Clock.Now())
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return ArchiveResult{}, err
	}
	if err == nil {
		at(s.cfg.Step, StepArchiveCommitted)
		s.kickForWebhook(ss)
	}
	return ArchiveResult{OK: true, Archived: true}, nil
}

// archiveThenRelease archives a session whose runtime keeps a workspace:
// the archive is committed first, so no follow-up can land between the
// release and the record and find its workspace gone; then the workspace
// goes. A release that fails is logged (the workspace then stays on disk;
// nothing retries it yet).
func (s *Service) archiveThenRelease(ctx context.Context, a Actor, id string, rt Runtime) (ArchiveResult, error) {
	err := s.update(ctx, a, id, func(cur Session, _ []Message) (Change, error) {
		return decideArchive(cur, s.cfg.Clock.Now())
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return ArchiveResult{}, err
	}
	if err == nil {
		at(s.cfg.Step, StepArchiveCommitted)
	}
	ctx = context.WithoutCancel(ctx) // committed: the release happens whatever the caller does
	ss, rerr := s.cfg.Store.GetSession(ctx, id)
	if rerr == nil {
		if aerr := rt.Archive(ctx, ss); aerr != nil {
			s.cfg.Logger.WarnContext(ctx, "releasing an archived session's workspace failed; it stays on disk", "session", id, "err", aerr)
		}
	}
	if err == nil {
		s.kickForWebhook(ss)
	}
	return ArchiveResult{OK: true, Archived: true}, nil
}

// update applies a decision under compare-and-set (applyDecision), reading
// the session as the actor sees it.
func (s *Service) update(ctx context.Context, a Actor, id string, fn func(Session, []Message) (Change, error)) error {
	read := func(ctx context.Context) (Session, []Message, error) {
		ss, err := s.session(ctx, a, id)
		if err != nil {
			return Session{}, nil, err
		}
		msgs, err := s.cfg.Store.ListMessages(ctx, id)
		if err != nil {
			return Session{}, nil, s.internal(ctx, "list messages", err)
		}
		return ss, msgs, nil
	}
	_, err := applyDecision(ctx, s.cfg.Store, s.cfg.Step, read, fn)
	var e *Error
	if err != nil && !errors.As(err, &e) && !errors.Is(err, errNoChange) {
		return s.internal(ctx, "apply", err)
	}
	return err
}

// statusEvent records a status change. from is empty for the first status.
func statusEvent(at time.Time, from, to Status, reason string) EventInput {
	p := map[string]any{"status": to}
	if from != "" {
		p["previous_status"] = from
	}
	if reason != "" {
		p["reason"] = reason
	}
	return EventInput{Type: EventStatus, Payload: mustJSON(p), CreatedAt: at}
}

func userMessageEvent(at time.Time, m Message, queued bool) EventInput {
	p := map[string]any{"message_id": m.ID, "prompt": m.Prompt}
	if queued {
		p["queued"] = true
	}
	return EventInput{MessageID: m.ID, Type: EventUserMessage, Payload: mustJSON(p), CreatedAt: at}
}

// mustJSON marshals values built from plain maps and strings, which cannot fail.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
