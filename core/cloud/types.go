package cloud

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

// The wire types of the Cloud Agents API v1, as documented. Decoding ignores
// unknown fields, and enum values are plain strings, so a field or status
// Cursor adds never breaks a session.

// Run statuses.
const (
	RunCreating  = "CREATING"
	RunRunning   = "RUNNING"
	RunFinished  = "FINISHED"
	RunError     = "ERROR"
	RunCancelled = "CANCELLED"
	RunExpired   = "EXPIRED"
)

// TerminalRunStatus reports whether a run in this status has ended. Unknown
// values are not terminal: we keep following the run.
func TerminalRunStatus(s string) bool {
	return s == RunFinished || s == RunError || s == RunCancelled || s == RunExpired
}

// Prompt is the text of a run (images are not used by flapjack).
type Prompt struct {
	Text string `json:"text"`
}

// ModelSpec picks a model; omitted, the account's default applies.
type ModelSpec struct {
	ID     string       `json:"id"`
	Params []ModelParam `json:"params,omitempty"`
}

// ModelParam is one model parameter ({"id": "thinking", "value": "high"}).
type ModelParam struct {
	ID    string `json:"id"`
	Value any    `json:"value"`
}

// RepoRef is a repository an agent works on.
type RepoRef struct {
	URL         string `json:"url"`
	StartingRef string `json:"startingRef,omitempty"`
}

// CreateAgentRequest is the body of POST /v1/agents.
type CreateAgentRequest struct {
	Prompt              Prompt     `json:"prompt"`
	Model               *ModelSpec `json:"model,omitempty"`
	Repos               []RepoRef  `json:"repos"`
	BranchName          string     `json:"branchName,omitempty"`
	AutoCreatePR        bool       `json:"autoCreatePR"`
	SkipReviewerRequest bool       `json:"skipReviewerRequest"`
	WorkOnCurrentBranch bool       `json:"workOnCurrentBranch"`
}

// CreateAgentResponse is the 201 answer of POST /v1/agents.
type CreateAgentResponse struct {
	Agent Agent `json:"agent"`
	Run   Run   `json:"run"`
}

// CreateRunRequest is the body of POST /v1/agents/{id}/runs.
type CreateRunRequest struct {
	Prompt Prompt `json:"prompt"`
}

// Agent is a durable Cursor cloud agent; its Status (ACTIVE, ARCHIVED) is not
// execution state.
type Agent struct {
	ID                  string    `json:"id"`
	Name                string    `json:"name"`
	Status              string    `json:"status"`
	URL                 string    `json:"url"`
	CreatedAt           Timestamp `json:"createdAt"`
	UpdatedAt           Timestamp `json:"updatedAt"`
	LatestRunID         string    `json:"latestRunId"`
	Repos               RepoList  `json:"repos"`
	BranchName          string    `json:"branchName"`
	AutoCreatePR        *bool     `json:"autoCreatePR"`
	SkipReviewerRequest *bool     `json:"skipReviewerRequest"`
}

// RepoList is an agent's repositories. The documentation names the field but
// not its shape; one we cannot read is left empty rather than failing the
// whole answer.
type RepoList []RepoRef

// UnmarshalJSON never fails.
func (l *RepoList) UnmarshalJSON(b []byte) error {
	var v []RepoRef
	if json.Unmarshal(b, &v) == nil {
		*l = v
	}
	return nil
}

// AgentPage is one page of GET /v1/agents.
type AgentPage struct {
	Items      []Agent `json:"items"`
	NextCursor string  `json:"nextCursor"`
}

// Run is one prompt's execution. DurationMS, Result, Error and Git are set
// once it is terminal (observed, not documented).
type Run struct {
	ID         string          `json:"id"`
	AgentID    string          `json:"agentId"`
	Status     string          `json:"status"`
	CreatedAt  Timestamp       `json:"createdAt"`
	UpdatedAt  Timestamp       `json:"updatedAt"`
	DurationMS int64           `json:"durationMs"`
	Result     string          `json:"result"`
	Error      json.RawMessage `json:"error"`
	Git        *Git            `json:"git"`
}

// Git is the agent's current branches and pull requests.
type Git struct {
	Branches []Branch `json:"branches"`
}

// Branch is one repository's branch and its PR, if any.
type Branch struct {
	RepoURL string `json:"repoUrl"`
	Branch  string `json:"branch"`
	PRURL   string `json:"prUrl"`
}

// Me describes the API key (GET /v1/me); the fields are those Cursor has
// shown, all optional.
type Me struct {
	APIKeyName string    `json:"apiKeyName"`
	UserEmail  string    `json:"userEmail"`
	CreatedAt  Timestamp `json:"createdAt"`
}

// Model is one model the key may use.
type Model struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// modelList accepts {"items": [...]} or {"models": [...]}, each entry a model
// object or a bare id, since the shape of GET /v1/models is not documented.
type modelList struct {
	Items  []modelEntry `json:"items"`
	Models []modelEntry `json:"models"`
}

func (l modelList) models() []Model {
	out := make([]Model, 0, len(l.Items)+len(l.Models))
	for _, e := range append(l.Items, l.Models...) {
		if e.ID != "" {
			out = append(out, Model(e))
		}
	}
	return out
}

type modelEntry Model

func (e *modelEntry) UnmarshalJSON(b []byte) error {
	var id string
	if json.Unmarshal(b, &id) == nil {
		e.ID = id
		return nil
	}
	var m Model
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*e = modelEntry(m)
	return nil
}

// Timestamp reads an RFC 3339 string or a number of Unix milliseconds; the
// zero value means absent or unreadable.
type Timestamp struct{ time.Time }

// UnmarshalJSON never fails: a timestamp we cannot read is left zero.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	var s string
	if json.Unmarshal(b, &s) == nil {
		if v, err := time.Parse(time.RFC3339Nano, s); err == nil {
			t.Time = v
		} else if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
			t.Time = time.UnixMilli(ms)
		}
		return nil
	}
	if ms, err := strconv.ParseFloat(string(b), 64); err == nil {
		t.Time = time.UnixMilli(int64(ms))
	}
	return nil
}

// MarshalJSON writes RFC 3339, or null when zero.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(t.UTC().Format(time.RFC3339Nano))
}

// runError reads a terminal run's error, which may be a string or
// {"code", "message"}.
func runError(raw json.RawMessage) (code, message string) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return "", s
	}
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(raw, &e)
	return e.Code, e.Message
}

// ---- Stream events ----

// Event is one server-sent event of a run stream. ID is the event's own id,
// empty when it carries none (the status event).
type Event struct {
	ID   string
	Name string
	Data json.RawMessage
	// TooLarge marks an event whose data exceeded the size limit and was dropped.
	TooLarge bool
}

// Stream event names.
const (
	evStatus      = "status"
	evAssistant   = "assistant"
	evThinking    = "thinking"
	evToolCall    = "tool_call"
	evInteraction = "interaction_update"
	evHeartbeat   = "heartbeat"
	evResult      = "result"
	evError       = "error"
	evDone        = "done"
)

type statusData struct {
	RunID  string `json:"runId"`
	Status string `json:"status"`
}

type textData struct {
	Text string `json:"text"`
}

type toolCallData struct {
	CallID    string          `json:"callId"`
	Name      string          `json:"name"`
	Status    string          `json:"status"`
	Args      json.RawMessage `json:"args"`
	Result    json.RawMessage `json:"result"`
	Truncated bool            `json:"truncated"`
}

type resultData struct {
	RunID      string `json:"runId"`
	Status     string `json:"status"`
	Text       string `json:"text"`
	DurationMS int64  `json:"durationMs"`
	Git        *Git   `json:"git"`
}

type errorData struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
