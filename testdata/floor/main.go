// Command floor is the benchmark baseline for flapjack's MCP server: a go-sdk
// server over stdio registering 13 tools with the same input and output types
// that does no work (get_code_agent returns an object from memory). The
// benchmarks in cmd/flapjack compare flapjack's cold start and round trip to it.
package main

import (
	"context"
	"log"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/flapjack-dev/flapjack/core"
)

type (
	orgIn struct {
		OrgID string `json:"orgId,omitempty"`
	}
	agentIn struct {
		CodeAgentID string `json:"codeAgentId"`
	}
	sessionIn struct {
		CodeSessionID string `json:"codeSessionId"`
	}
	updAgent struct {
		CodeAgentID string `json:"codeAgentId"`
		core.AgentFields
	}
	updSession struct {
		CodeSessionID string  `json:"codeSessionId"`
		WebhookURL    *string `json:"webhookUrl"`
	}
	sendIn struct {
		CodeSessionID string `json:"codeSessionId"`
		Prompt        string `json:"prompt"`
	}
	eventsIn struct {
		CodeSessionID string `json:"codeSessionId"`
		core.EventsInput
	}
	agentsOut struct {
		CodeAgents []core.CodeAgent `json:"code_agents"`
	}
	sessionsOut struct {
		CodeSessions []core.Session `json:"code_sessions"`
	}
	eventsOut struct {
		Events  []core.Event `json:"events"`
		LastSeq int64        `json:"last_seq"`
	}
)

func add[In, Out any](s *mcp.Server, name string, out Out) {
	mcp.AddTool(s, &mcp.Tool{Name: name}, func(context.Context, *mcp.CallToolRequest, In) (*mcp.CallToolResult, Out, error) {
		return nil, out, nil
	})
}

func main() {
	repo := "https://github.com/acme/app"
	now := time.Date(2026, 5, 6, 12, 0, 0, 0, time.UTC)
	agent := core.CodeAgent{ID: "ca-floor", OrgID: "org-floor", Name: "Bug Fixer", Description: "Fixes bugs",
		ModelID: "auto", ModelParams: map[string]any{}, DefaultRepoURL: &repo, DefaultStartingRef: "main", AutoCreatePR: true,
		Preamble: "You are a senior engineer.", Runtime: "local", CreatedBy: "user-floor", CreatedAt: now, UpdatedAt: now}
	s := mcp.NewServer(&mcp.Implementation{Name: "floor", Version: "1"}, nil)
	add[orgIn](s, "flapjack_list_code_agents", agentsOut{CodeAgents: []core.CodeAgent{}})
	add[agentIn](s, "flapjack_get_code_agent", agent)
	add[core.CreateAgentInput](s, "flapjack_create_code_agent", agent)
	add[updAgent](s, "flapjack_update_code_agent", agent)
	add[agentIn](s, "flapjack_delete_code_agent", core.OKResult{OK: true})
	add[core.ListSessionsInput](s, "flapjack_list_code_sessions", sessionsOut{CodeSessions: []core.Session{}})
	add[sessionIn](s, "flapjack_get_code_session", core.SessionDetail{Messages: []core.Message{}})
	add[core.StartSessionInput](s, "flapjack_start_code_session", core.StartResult{})
	add[updSession](s, "flapjack_update_code_session", core.Session{})
	add[sendIn](s, "flapjack_send_code_session_message", core.SendResult{})
	add[eventsIn](s, "flapjack_list_code_session_events", eventsOut{Events: []core.Event{}})
	add[sessionIn](s, "flapjack_cancel_code_session", core.CancelResult{})
	add[sessionIn](s, "flapjack_archive_code_session", core.ArchiveResult{})
	if err := s.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		log.Fatal(err)
	}
}
