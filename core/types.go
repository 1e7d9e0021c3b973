// Package core is flapjack's domain: the types of the Code Agents API, every rule
// about them (validation, the session state machine, the event log), the secrets
// box, and the Runner that drives active sessions. It imports the standard
// library only; storage and runtimes plug in through the Store and Runtime
// interfaces, and the adapters (mcp, restshim, cmd) only translate.
package core

import (
	"encoding/json"
	"time"
)

// Status is a session's execution state.
type Status string

// Session statuses, in lifecycle order.
const (
	StatusPending   Status = "pending"
	StatusCreating  Status = "creating"
	StatusRunning   Status = "running"
	StatusFinished  Status = "finished"
	StatusError     Status = "error"
	StatusCancelled Status = "cancelled"
	StatusExpired   Status = "expired"
)

// AllStatuses lists every session status, in lifecycle order.
func AllStatuses() []Status {
	return []Status{StatusPending, StatusCreating, StatusRunning, StatusFinished, StatusError, StatusCancelled, StatusExpired}
}

// Active reports whether a session in this status may still do work.
func (s Status) Active() bool {
	return s == StatusPending || s == StatusCreating || s == StatusRunning
}

// Terminal reports whether the session has stopped (finished, error, cancelled or expired).
func (s Status) Terminal() bool {
	return s == StatusFinished || s == StatusError || s == StatusCancelled || s == StatusExpired
}

// MessageStatus is the state of one prompt's run.
type MessageStatus string

// Message statuses. Messages run one at a time, oldest first.
const (
	MessageQueued    MessageStatus = "queued"
	MessageRunning   MessageStatus = "running"
	MessageFinished  MessageStatus = "finished"
	MessageError     MessageStatus = "error"
	MessageCancelled MessageStatus = "cancelled"
)

// EventType names the kind of an Event.
type EventType string

// Event types of the session log.
const (
	EventStatus      EventType = "status"
	EventUserMessage EventType = "user_message"
	EventAssistant   EventType = "assistant"
	EventThinking    EventType = "thinking"
	EventToolCall    EventType = "tool_call"
	EventFileEdit    EventType = "file_edit"
	EventStdout      EventType = "stdout"
	EventStderr      EventType = "stderr"
	EventResult      EventType = "result"
	EventError       EventType = "error"
	EventPR          EventType = "pr"
	EventWebhook     EventType = "webhook"
	// EventStalled marks a run that logged nothing for its stall timeout.
	EventStalled EventType = "stalled"
	// EventAgent is the first event of a local run: the agent CLI that runs
	// it, its path and version.
	EventAgent EventType = "agent"
	// EventPlan is an ACP agent's plan: its entries with their status.
	EventPlan EventType = "plan"
	// EventPermission is a permission request of an ACP agent and how the
	// policy answered it.
	EventPermission EventType = "permission"
)

// Runtime names.
const (
	RuntimeCloud = "cloud"
	RuntimeLocal = "local"
)

// CodeAgent is a reusable template for sessions.
type CodeAgent struct {
	ID                  string         `json:"id"`
	OrgID               string         `json:"org_id"`
	Name                string         `json:"name"`
	Description         string         `json:"description"`
	ModelID             string         `json:"model_id"`
	ModelParams         map[string]any `json:"model_params"`
	DefaultRepoURL      *string        `json:"default_repo_url"`
	DefaultStartingRef  string         `json:"default_starting_ref"`
	AutoCreatePR        bool           `json:"auto_create_pr"`
	WorkOnCurrentBranch bool           `json:"work_on_current_branch"`
	SkipReviewerRequest bool           `json:"skip_reviewer_request"`
	Preamble            string         `json:"preamble"`
	// Runtime is "cloud", "local", or empty for the server's default.
	Runtime   string    `json:"runtime"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// UpstreamCall is the journal entry of a call that creates something
// upstream (a Cursor agent or run) for a session's message. It is saved before
// the call is made and completed with the call's result (AgentID, RunID), so a
// runner that died during the call lets the next one find what it created
// instead of creating it twice. It is removed once the run is recorded.
type UpstreamCall struct {
	SessionID string
	MessageID string
	StartedAt time.Time
	AgentID   string
	RunID     string
}

// Session is one execution of a template against a repository. It snapshots the
// settings it started with, so editing or deleting its template never changes it.
type Session struct {
	ID            string  `json:"id"`
	OrgID         string  `json:"org_id"`
	CodeAgentID   string  `json:"code_agent_id"`
	CursorAgentID *string `json:"cursor_agent_id"`
	RepoURL       string  `json:"repo_url"`
	StartingRef   string  `json:"starting_ref"`
	Status        Status  `json:"status"`
	LatestRunID   *string `json:"latest_run_id"`
	PRURL         *string `json:"pr_url"`
	PRBranch      *string `json:"pr_branch"`
	// Usage sums what the agent reported for the session's runs; null when
	// nothing was reported.
	Usage               *Usage         `json:"usage"`
	Error               *string        `json:"error"`
	Archived            bool           `json:"archived"`
	WebhookURL          *string        `json:"webhook_url"`
	ModelID             string         `json:"model_id"`
	ModelParams         map[string]any `json:"model_params"`
	AutoCreatePR        bool           `json:"auto_create_pr"`
	WorkOnCurrentBranch bool           `json:"work_on_current_branch"`
	SkipReviewerRequest bool           `json:"skip_reviewer_request"`
	Runtime             string         `json:"runtime"`
	LastEventSeq        int64          `json:"last_event_seq"`
	LastEventAt         *time.Time     `json:"last_event_at"`
	CreatedBy           string         `json:"created_by"`
	CreatedAt           time.Time      `json:"created_at"`
	StartedAt           *time.Time     `json:"started_at"`
	CompletedAt         *time.Time     `json:"completed_at"`

	// Preamble is prepended to every prompt of the session; not part of the API object.
	Preamble string `json:"-"`
	// CursorKeyCiphertext is the sealed Cursor API key, nil once wiped. Never serialized.
	CursorKeyCiphertext []byte `json:"-"`
	// RunHandle is the runtime's handle on the active run (the local agent's process
	// group id), so another process can cancel it. Empty when nothing runs.
	RunHandle string `json:"-"`
	// StreamPosition is where the active run's upstream event stream was read
	// up to (Cursor's last SSE event id); set only through EventInput.
	StreamPosition string `json:"-"`
	// ArchivingAt is when an archive began upstream (the Cursor agent is
	// archived before the session); while within ArchiveLease, follow-ups
	// are refused. Nil when no archive is under way.
	ArchivingAt *time.Time `json:"-"`
	// Version is bumped by every Store.Apply; Apply compares it to detect races.
	Version int64 `json:"-"`
}

// SessionDetail is a session with its full message history, as Get returns it.
type SessionDetail struct {
	Session
	Messages []Message `json:"messages"`
}

// Message is one prompt and the run that executes it.
type Message struct {
	ID          string        `json:"id"`
	SessionID   string        `json:"session_id"`
	CursorRunID *string       `json:"cursor_run_id"`
	Role        string        `json:"role"`
	Prompt      string        `json:"prompt"`
	Status      MessageStatus `json:"status"`
	ResultText  *string       `json:"result_text"`
	DurationMS  *int64        `json:"duration_ms"`
	// Usage is what the agent reported for this run; null when it reported nothing.
	Usage       *Usage     `json:"usage"`
	PRURL       *string    `json:"pr_url"`
	Error       *string    `json:"error"`
	StartedAt   *time.Time `json:"started_at"`
	CompletedAt *time.Time `json:"completed_at"`
	CreatedAt   time.Time  `json:"created_at"`
}

// Event is one timestamped record in a session's log. Seq is per session, starts
// at 1 and has no gaps; commit order is seq order.
type Event struct {
	ID          string          `json:"id"`
	SessionID   string          `json:"session_id"`
	MessageID   *string         `json:"message_id"`
	CursorRunID *string         `json:"cursor_run_id"`
	Type        EventType       `json:"event_type"`
	Payload     json.RawMessage `json:"payload"`
	Seq         int64           `json:"seq"`
	CreatedAt   time.Time       `json:"created_at"`
}

// EventPage is one read of a session's log.
type EventPage struct {
	Events []Event `json:"events"`
	// LastSeq is the seq of the last event returned, or the since value when none is.
	LastSeq int64 `json:"last_seq"`
}

// Owner is the org and user a fresh data directory is created with.
type Owner struct {
	OrgID  string
	UserID string
}

// Actor is who calls the Service. The local owner (MCP, CLI) is a member of every org.
type Actor struct {
	UserID string
	// OrgIDs are the orgs the actor belongs to; ignored when AllOrgs is set.
	OrgIDs []string
	// AllOrgs makes the actor a member of every org (the local owner).
	AllOrgs bool
	// DefaultOrgID is used when a create call names no org.
	DefaultOrgID string
}

// memberOf reports whether the actor may see objects of org.
func (a Actor) memberOf(org string) bool {
	if a.AllOrgs {
		return true
	}
	for _, o := range a.OrgIDs {
		if o == org {
			return true
		}
	}
	return false
}

// Usage is what an agent reports about a run's tokens, cost and duration.
// Each field is null when the agent did not report it.
type Usage struct {
	InputTokens  *int64   `json:"input_tokens"`
	OutputTokens *int64   `json:"output_tokens"`
	CostUSD      *float64 `json:"cost_usd"`
	DurationMS   *int64   `json:"duration_ms"`
}

// Empty reports whether nothing is known.
func (u *Usage) Empty() bool {
	return u == nil || u.InputTokens == nil && u.OutputTokens == nil && u.CostUSD == nil && u.DurationMS == nil
}

// Plus sums two usages field by field; a field known in neither stays null.
func (u *Usage) Plus(v *Usage) *Usage {
	if u.Empty() {
		if v.Empty() {
			return nil
		}
		c := *v
		return &c
	}
	if v.Empty() {
		c := *u
		return &c
	}
	return &Usage{
		InputTokens: addPtr(u.InputTokens, v.InputTokens), OutputTokens: addPtr(u.OutputTokens, v.OutputTokens),
		CostUSD: addPtr(u.CostUSD, v.CostUSD), DurationMS: addPtr(u.DurationMS, v.DurationMS),
	}
}

func addPtr[T int64 | float64](a, b *T) *T {
	switch {
	case a == nil && b == nil:
		return nil
	case a == nil:
		v := *b
		return &v
	case b == nil:
		v := *a
		return &v
	}
	v := *a + *b
	return &v
}
