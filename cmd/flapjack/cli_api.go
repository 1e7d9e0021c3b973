package main

import (
	"context"

	"github.com/flapjack-dev/flapjack/core"
)

// api is what the scripting commands need: the 13 operations of the Code
// Agents API, on the local data directory or on a flapjack serve. Both give
// the same objects and the same error codes, so output is identical.
type api interface {
	ListAgents(ctx context.Context, in core.ListAgentsInput) (core.AgentPage, error)
	GetAgent(ctx context.Context, id string) (core.CodeAgent, error)
	CreateAgent(ctx context.Context, in core.CreateAgentInput) (core.CodeAgent, error)
	UpdateAgent(ctx context.Context, id string, f core.AgentFields) (core.CodeAgent, error)
	DeleteAgent(ctx context.Context, id string) (core.OKResult, error)
	ListSessions(ctx context.Context, in core.ListSessionsInput) (core.SessionPage, error)
	GetSession(ctx context.Context, id string) (core.SessionDetail, error)
	StartSession(ctx context.Context, in core.StartSessionInput) (core.StartResult, error)
	UpdateSession(ctx context.Context, id string, webhookURL *string) (core.Session, error)
	SendMessage(ctx context.Context, id, prompt string) (core.SendResult, error)
	ListEvents(ctx context.Context, id string, in core.EventsInput) (core.EventPage, error)
	Cancel(ctx context.Context, id string) (core.CancelResult, error)
	Archive(ctx context.Context, id string) (core.ArchiveResult, error)
	Close() error
}

// localAPI runs the operations on the local data directory as its owner, with
// the runner started on demand as for MCP.
type localAPI struct {
	app   *app
	actor core.Actor
	// watch replaces a runner that died while this command waits.
	watch *runnerWatch
}

func (l *localAPI) ListAgents(ctx context.Context, in core.ListAgentsInput) (core.AgentPage, error) {
	return l.app.svc.ListAgents(ctx, l.actor, in)
}

func (l *localAPI) GetAgent(ctx context.Context, id string) (core.CodeAgent, error) {
	return l.app.svc.GetAgent(ctx, l.actor, id)
}

func (l *localAPI) CreateAgent(ctx context.Context, in core.CreateAgentInput) (core.CodeAgent, error) {
	return l.app.svc.CreateAgent(ctx, l.actor, in)
}

func (l *localAPI) UpdateAgent(ctx context.Context, id string, f core.AgentFields) (core.CodeAgent, error) {
	return l.app.svc.UpdateAgent(ctx, l.actor, id, f)
}

func (l *localAPI) DeleteAgent(ctx context.Context, id string) (core.OKResult, error) {
	return l.app.svc.DeleteAgent(ctx, l.actor, id)
}

func (l *localAPI) ListSessions(ctx context.Context, in core.ListSessionsInput) (core.SessionPage, error) {
	return l.app.svc.ListSessions(ctx, l.actor, in)
}

func (l *localAPI) GetSession(ctx context.Context, id string) (core.SessionDetail, error) {
	l.watch.check(ctx)
	return l.app.svc.GetSession(ctx, l.actor, id)
}

func (l *localAPI) StartSession(ctx context.Context, in core.StartSessionInput) (core.StartResult, error) {
	return l.app.svc.StartSession(ctx, l.actor, in)
}

func (l *localAPI) UpdateSession(ctx context.Context, id string, webhookURL *string) (core.Session, error) {
	return l.app.svc.UpdateSession(ctx, l.actor, id, webhookURL)
}

func (l *localAPI) SendMessage(ctx context.Context, id, prompt string) (core.SendResult, error) {
	return l.app.svc.SendMessage(ctx, l.actor, id, prompt)
}

func (l *localAPI) ListEvents(ctx context.Context, id string, in core.EventsInput) (core.EventPage, error) {
	l.watch.check(ctx)
	if in.WaitSeconds != nil && *in.WaitSeconds > 0 {
		// Keep watching through a long poll, too.
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		go l.watch.watchAlways(wctx)
	}
	return l.app.svc.ListEvents(ctx, l.actor, id, in)
}

func (l *localAPI) Cancel(ctx context.Context, id string) (core.CancelResult, error) {
	return l.app.svc.Cancel(ctx, l.actor, id)
}

func (l *localAPI) Archive(ctx context.Context, id string) (core.ArchiveResult, error) {
	return l.app.svc.Archive(ctx, l.actor, id)
}

func (l *localAPI) Close() error { return l.app.Close() }
