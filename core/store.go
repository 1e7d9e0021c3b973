package core

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Store persists agents, sessions, messages and events. Implementations must make
// every method safe for concurrent use by several processes on one database.
//
// Errors: ErrNotFound for a missing row, ErrConflict for a lost compare-and-set;
// anything else is an internal failure.
type Store interface {
	// EnsureOwner returns the local owner org and user, creating both on first use.
	EnsureOwner(ctx context.Context) (Owner, error)
	// OrgExists reports whether an org id names an org.
	OrgExists(ctx context.Context, orgID string) (bool, error)
	// HasCiphertext reports whether any row holds sealed secrets, so a missing
	// master key is refused instead of silently replaced.
	HasCiphertext(ctx context.Context) (bool, error)

	InsertAgent(ctx context.Context, a CodeAgent) error
	GetAgent(ctx context.Context, id string) (CodeAgent, error)
	// ListAgents returns agents newest first (a page with Limit and After).
	ListAgents(ctx context.Context, f AgentFilter) ([]CodeAgent, error)
	// UpdateAgent overwrites the agent's mutable fields.
	UpdateAgent(ctx context.Context, a CodeAgent) error
	DeleteAgent(ctx context.Context, id string) error

	// CreateSession inserts a session, its first message and its opening events in
	// one transaction, and returns the events with their seq.
	CreateSession(ctx context.Context, s Session, first Message, events []EventInput) ([]Event, error)
	GetSession(ctx context.Context, id string) (Session, error)
	// ListSessions returns sessions matching the filter, newest first (oldest
	// first with OldestFirst).
	ListSessions(ctx context.Context, f SessionFilter) ([]Session, error)
	// ListMessages returns a session's messages in the order they were sent.
	ListMessages(ctx context.Context, sessionID string) ([]Message, error)
	// Apply commits one change to a session atomically (see Change).
	Apply(ctx context.Context, c Change) ([]Event, error)
	// AppendEvents appends events to a session's log in one transaction, assigning
	// consecutive seqs, and returns them. It does not touch the session's Version.
	AppendEvents(ctx context.Context, sessionID string, events []EventInput) ([]Event, error)
	// ListEvents reads a session's log by keyset: seq > Since, ascending, at
	// most Limit events and (past the first) MaxBytes of payload.
	ListEvents(ctx context.Context, q EventQuery) ([]Event, error)
	// StreamEvents calls fn with each event ListEvents would return, in
	// order, until fn returns false, holding none: for a reader that
	// writes them out. *e is reused and its Payload is valid only during
	// the call; its ID is empty where it is the derived EventID.
	StreamEvents(ctx context.Context, q EventQuery, fn func(e *Event) bool) error
	// SetRunHandle records the active run's handle and bumps Version, so a
	// change decided before the handle existed cannot erase it.
	SetRunHandle(ctx context.Context, sessionID, handle string) error
	// Watch returns a channel closed at the next commit that may have changed
	// the session (its row, messages or events), and a function to call once
	// done waiting. Subscribe first, then read: a commit after the read then
	// always closes the channel. Commits in this process close it at once,
	// other processes' within tens of milliseconds.
	Watch(sessionID string) (changed <-chan struct{}, stop func())
	// DataVersion changes whenever another connection commits; the runner polls it
	// to notice new work cheaply.
	DataVersion(ctx context.Context) (int64, error)
	// HasPendingDeliveries reports whether any status webhook still waits to be
	// sent, so a runner neither idles out nor stays away while one does.
	HasPendingDeliveries(ctx context.Context) (bool, error)
	// Scrub makes bytes that committed changes wiped unrecoverable from
	// disk (a WAL checkpoint); it fails while a reader holds the WAL.
	Scrub(ctx context.Context) error
}

// ErrScrubPending is returned by Apply for a Change with Scrub that was
// committed but whose wiped bytes may still be on disk (a reader held the
// WAL): a success for the caller; the runner scrubs again later.
var ErrScrubPending = errors.New("committed; wiped bytes not yet scrubbed from disk")

// SessionFilter selects sessions. Zero fields do not filter.
type SessionFilter struct {
	// OrgIDs limits to these orgs; nil means every org.
	OrgIDs      []string
	CodeAgentID string
	Statuses    []Status
	Archived    *bool
	OldestFirst bool
	// Limit, when positive, returns at most that many; After starts after
	// that position of the newest-first order (not with OldestFirst).
	Limit int
	After *PageKey
}

// AgentFilter selects templates. A nil OrgIDs means every org.
type AgentFilter struct {
	OrgIDs []string
	Limit  int
	After  *PageKey
}

// EventQuery is a keyset read of one session's log.
type EventQuery struct {
	SessionID string
	Since     int64
	MessageID string
	Limit     int
	// MaxBytes, when positive, ends the page once its payloads add up to
	// this many bytes; a page always holds at least one event.
	MaxBytes int
}

// EventInput is an event to append; the store assigns id, session and seq.
type EventInput struct {
	MessageID   string
	CursorRunID string
	Type        EventType
	Payload     json.RawMessage
	CreatedAt   time.Time
	// StreamPosition, when set, is stored as the session's StreamPosition in the
	// same transaction as the event, so a resumed upstream stream continues
	// exactly after the last event logged: none lost, none twice.
	StreamPosition string
}

// Change is one atomic update of a session. The store writes Session's mutable
// fields (everything but id, org, template, snapshot settings, creation data and
// the event counters) only if the stored Version still equals Session.Version,
// then bumps Version; otherwise it returns ErrConflict and writes nothing.
// In the same transaction it upserts Messages and appends Events.
//
// Webhook outbox, also in that transaction (and in CreateSession's): every
// status event gets a Delivery when the session has a webhook URL (body from
// StatusWebhookPayload), and a webhook URL that changes or is cleared cancels
// the deliveries still pending to the old one.
type Change struct {
	Session  Session
	Messages []Message
	Events   []EventInput
	// Scrub asks the store to make deleted bytes unrecoverable from disk after
	// the commit (secure_delete is always on; this adds a WAL checkpoint). Set
	// when a secret was wiped.
	Scrub bool
}
