package core

// AgentFields are the settable fields of a code agent, in the API's camelCase.
// A nil field is "not given": create uses the default, update leaves it alone.
type AgentFields struct {
	Name                *string        `json:"name,omitempty"`
	Description         *string        `json:"description,omitempty"`
	ModelID             *string        `json:"modelId,omitempty"`
	ModelParams         map[string]any `json:"modelParams,omitempty"`
	DefaultRepoURL      *string        `json:"defaultRepoUrl,omitempty"`
	DefaultStartingRef  *string        `json:"defaultStartingRef,omitempty"`
	AutoCreatePR        *bool          `json:"autoCreatePR,omitempty"`
	WorkOnCurrentBranch *bool          `json:"workOnCurrentBranch,omitempty"`
	SkipReviewerRequest *bool          `json:"skipReviewerRequest,omitempty"`
	Preamble            *string        `json:"preamble,omitempty"`
	Runtime             *string        `json:"runtime,omitempty"`
}

// CreateAgentInput is the body of create code agent.
type CreateAgentInput struct {
	OrgID string `json:"orgId,omitempty"`
	AgentFields
}

// ListSessionsInput filters list code sessions.
type ListSessionsInput struct {
	CodeAgentID string `json:"codeAgentId,omitempty"`
	Status      string `json:"status,omitempty"`
	Archived    *bool  `json:"archived,omitempty"`
	OrgID       string `json:"orgId,omitempty"`
	// Limit is the page size (DefaultPageLimit when absent, at most
	// MaxPageLimit); Cursor is a previous page's NextCursor.
	Limit  *int   `json:"limit,omitempty"`
	Cursor string `json:"cursor,omitempty"`
}

// ListAgentsInput filters list code agents; paged as ListSessionsInput.
type ListAgentsInput struct {
	OrgID  string `json:"orgId,omitempty"`
	Limit  *int   `json:"limit,omitempty"`
	Cursor string `json:"cursor,omitempty"`
}

// SessionPage is one page of sessions, newest first. NextCursor, when not
// empty, asks for the page after it.
type SessionPage struct {
	Sessions   []Session
	NextCursor string
}

// AgentPage is one page of templates, newest first.
type AgentPage struct {
	Agents     []CodeAgent
	NextCursor string
}

// StartSessionInput is the body of start code session.
type StartSessionInput struct {
	CodeAgentID         string         `json:"codeAgentId"`
	Prompt              string         `json:"prompt"`
	CursorAPIKey        string         `json:"cursorApiKey,omitempty"`
	OrgID               string         `json:"orgId,omitempty"`
	RepoURL             *string        `json:"repoUrl,omitempty"`
	StartingRef         *string        `json:"startingRef,omitempty"`
	AutoCreatePR        *bool          `json:"autoCreatePR,omitempty"`
	WorkOnCurrentBranch *bool          `json:"workOnCurrentBranch,omitempty"`
	SkipReviewerRequest *bool          `json:"skipReviewerRequest,omitempty"`
	ModelID             *string        `json:"modelId,omitempty"`
	ModelParams         map[string]any `json:"modelParams,omitempty"`
	WebhookURL          *string        `json:"webhookUrl,omitempty"`
}

// StartResult answers start code session.
type StartResult struct {
	SessionID string `json:"session_id"`
	MessageID string `json:"message_id"`
}

// SendResult answers send follow-up message.
type SendResult struct {
	MessageID string `json:"message_id"`
}

// EventsInput is a read of a session's event log.
type EventsInput struct {
	Since     *int64 `json:"since,omitempty"`
	MessageID string `json:"messageId,omitempty"`
	Limit     *int   `json:"limit,omitempty"`
	// WaitSeconds long-polls: return as soon as an event past Since exists, or
	// empty after this many seconds.
	WaitSeconds *int `json:"waitSeconds,omitempty"`
}

// OKResult answers delete.
type OKResult struct {
	OK bool `json:"ok"`
}

// CancelResult answers cancel.
type CancelResult struct {
	OK     bool   `json:"ok"`
	Status Status `json:"status"`
}

// ArchiveResult answers archive.
type ArchiveResult struct {
	OK       bool `json:"ok"`
	Archived bool `json:"archived"`
}
