// Package mcp exposes the Code Agents API as the 13 flapjack_* MCP tools. It is
// a thin adapter over core.Service: handlers decode, call the Service and wrap
// its result; every rule lives in core.
package mcp

import (
	"context"
	"log/slog"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/flapjack-dev/flapjack/core"
)

// Options configure NewServer.
type Options struct {
	// Version is reported as the implementation version.
	Version string
	// Logger receives internal errors; it must not write to stdout. Nil discards.
	Logger *slog.Logger
	// CheckOutput validates every result against its tool's output schema
	// (tests); a mismatch becomes an INTERNAL error.
	CheckOutput bool
	// WatchInterval is how often sessions with resource subscribers are
	// re-read (DefaultWatchInterval).
	WatchInterval time.Duration
}

const instructions = `flapjack runs coding agents on git repositories. A code agent (ca-...) is a template:
repository, starting branch, model, preamble, PR behaviour. A code session (cs-...) runs a template on
a prompt in the background and can open a pull request.

Typical flow: flapjack_list_code_agents or flapjack_create_code_agent, then flapjack_start_code_session
(returns session_id and message_id at once), then poll flapjack_list_code_session_events with
since = last_seq of the previous call and waitSeconds up to 25 instead of sleeping, until a status
event says finished, error, cancelled or expired. Send follow-ups with
flapjack_send_code_session_message. Cancel a running session before archiving it.

Errors are tool errors whose text starts with a code: VALIDATION_ERROR, NOT_FOUND, SESSION_ACTIVE,
SESSION_NOT_ACTIVE, SESSION_ARCHIVED, SESSION_EXPIRED, CANCEL_UNSUPPORTED, cursor_cancel_failed,
archive_failed, INTERNAL.`

// NewServer returns an MCP server named "flapjack" with the 13 tools, acting
// on svc as actor.
func NewServer(svc *core.Service, actor core.Actor, opts Options) *mcp.Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.WatchInterval <= 0 {
		opts.WatchInterval = DefaultWatchInterval
	}
	res := &resources{svc: svc, actor: actor, log: log, interval: opts.WatchInterval,
		subs: map[*mcp.ServerSession]map[string]bool{}, seen: map[string]seenState{}}
	s := mcp.NewServer(&mcp.Implementation{Name: "flapjack", Title: "flapjack", Version: opts.Version},
		&mcp.ServerOptions{Instructions: instructions, Logger: log, SubscribeHandler: res.subscribe, UnsubscribeHandler: res.unsubscribe})
	h := handlers{svc: svc, actor: actor}
	addResources(s, res)

	addTool(s, log, opts.CheckOutput, listAgentsTool(), h.listAgents)
	addTool(s, log, opts.CheckOutput, getAgentTool(), h.getAgent)
	addTool(s, log, opts.CheckOutput, createAgentTool(), h.createAgent)
	addTool(s, log, opts.CheckOutput, updateAgentTool(), h.updateAgent)
	addTool(s, log, opts.CheckOutput, deleteAgentTool(), h.deleteAgent)
	addTool(s, log, opts.CheckOutput, listSessionsTool(), h.listSessions)
	addTool(s, log, opts.CheckOutput, getSessionTool(), h.getSession)
	addTool(s, log, opts.CheckOutput, startSessionTool(), h.startSession)
	addTool(s, log, opts.CheckOutput, updateSessionTool(), h.updateSession)
	addTool(s, log, opts.CheckOutput, sendMessageTool(), h.sendMessage)
	addTool(s, log, opts.CheckOutput, listEventsTool(), h.listEvents)
	addTool(s, log, opts.CheckOutput, cancelSessionTool(), h.cancelSession)
	addTool(s, log, opts.CheckOutput, archiveSessionTool(), h.archiveSession)
	return s
}

// ---- Inputs and outputs ----

type agentIDInput struct {
	CodeAgentID string `json:"codeAgentId"`
}

type sessionIDInput struct {
	CodeSessionID string `json:"codeSessionId"`
}

type updateAgentInput struct {
	CodeAgentID string `json:"codeAgentId"`
	core.AgentFields
}

type updateSessionInput struct {
	CodeSessionID string `json:"codeSessionId"`
	// WebhookURL is required; null or "" clears it.
	WebhookURL *string `json:"webhookUrl"`
}

type sendMessageInput struct {
	CodeSessionID string `json:"codeSessionId"`
	Prompt        string `json:"prompt"`
}

type listEventsInput struct {
	CodeSessionID string `json:"codeSessionId"`
	core.EventsInput
}

// agentList and sessionList are one page; next_cursor, when present, is
// the cursor of the next one.
type agentList struct {
	CodeAgents []core.CodeAgent `json:"code_agents"`
	NextCursor string           `json:"next_cursor,omitempty"`
}

type sessionList struct {
	CodeSessions []core.Session `json:"code_sessions"`
	NextCursor   string         `json:"next_cursor,omitempty"`
}

// ---- Handlers ----

type handlers struct {
	svc   *core.Service
	actor core.Actor
}

func (h handlers) listAgents(ctx context.Context, in core.ListAgentsInput) (agentList, error) {
	p, err := h.svc.ListAgents(ctx, h.actor, in)
	return agentList{CodeAgents: p.Agents, NextCursor: p.NextCursor}, err
}

func (h handlers) getAgent(ctx context.Context, in agentIDInput) (core.CodeAgent, error) {
	return h.svc.GetAgent(ctx, h.actor, in.CodeAgentID)
}

func (h handlers) createAgent(ctx context.Context, in core.CreateAgentInput) (core.CodeAgent, error) {
	return h.svc.CreateAgent(ctx, h.actor, in)
}

func (h handlers) updateAgent(ctx context.Context, in updateAgentInput) (core.CodeAgent, error) {
	return h.svc.UpdateAgent(ctx, h.actor, in.CodeAgentID, in.AgentFields)
}

func (h handlers) deleteAgent(ctx context.Context, in agentIDInput) (core.OKResult, error) {
	return h.svc.DeleteAgent(ctx, h.actor, in.CodeAgentID)
}

func (h handlers) listSessions(ctx context.Context, in core.ListSessionsInput) (sessionList, error) {
	p, err := h.svc.ListSessions(ctx, h.actor, in)
	return sessionList{CodeSessions: p.Sessions, NextCursor: p.NextCursor}, err
}

func (h handlers) getSession(ctx context.Context, in sessionIDInput) (core.SessionDetail, error) {
	return h.svc.GetSession(ctx, h.actor, in.CodeSessionID)
}

func (h handlers) startSession(ctx context.Context, in core.StartSessionInput) (core.StartResult, error) {
	return h.svc.StartSession(ctx, h.actor, in)
}

func (h handlers) updateSession(ctx context.Context, in updateSessionInput) (core.Session, error) {
	return h.svc.UpdateSession(ctx, h.actor, in.CodeSessionID, in.WebhookURL)
}

func (h handlers) sendMessage(ctx context.Context, in sendMessageInput) (core.SendResult, error) {
	return h.svc.SendMessage(ctx, h.actor, in.CodeSessionID, in.Prompt)
}

func (h handlers) listEvents(ctx context.Context, in listEventsInput) (core.EventPage, error) {
	if req := callFrom(ctx); req != nil && req.Session != nil {
		return h.listEventsWithProgress(ctx, req, in)
	}
	return h.svc.ListEvents(ctx, h.actor, in.CodeSessionID, in.EventsInput)
}

func (h handlers) cancelSession(ctx context.Context, in sessionIDInput) (core.CancelResult, error) {
	return h.svc.Cancel(ctx, h.actor, in.CodeSessionID)
}

func (h handlers) archiveSession(ctx context.Context, in sessionIDInput) (core.ArchiveResult, error) {
	return h.svc.Archive(ctx, h.actor, in.CodeSessionID)
}
