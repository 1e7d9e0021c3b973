package mcp

import "github.com/modelcontextprotocol/go-sdk/mcp"

// Tool names, as in the spec.
const (
	toolListCodeAgents         = "flapjack_list_code_agents"
	toolGetCodeAgent           = "flapjack_get_code_agent"
	toolCreateCodeAgent        = "flapjack_create_code_agent"
	toolUpdateCodeAgent        = "flapjack_update_code_agent"
	toolDeleteCodeAgent        = "flapjack_delete_code_agent"
	toolListCodeSessions       = "flapjack_list_code_sessions"
	toolGetCodeSession         = "flapjack_get_code_session"
	toolStartCodeSession       = "flapjack_start_code_session"
	toolUpdateCodeSession      = "flapjack_update_code_session"
	toolSendCodeSessionMessage = "flapjack_send_code_session_message"
	toolListCodeSessionEvents  = "flapjack_list_code_session_events"
	toolCancelCodeSession      = "flapjack_cancel_code_session"
	toolArchiveCodeSession     = "flapjack_archive_code_session"
)

// hint says how a tool behaves; every tool states all four hints.
type hint struct {
	readOnly, destructive, idempotent, openWorld bool
}

// readHint is for tools that only read local state.
func readHint() hint { return hint{readOnly: true, idempotent: true} }

func tool(name, title string, h hint, desc string, props map[string]string) toolDef {
	return toolDef{
		tool: &mcp.Tool{
			Name:        name,
			Title:       title,
			Description: desc,
			Annotations: &mcp.ToolAnnotations{
				Title:           title,
				ReadOnlyHint:    h.readOnly,
				DestructiveHint: &h.destructive,
				IdempotentHint:  h.idempotent,
				OpenWorldHint:   &h.openWorld,
			},
		},
		props: props,
	}
}

const (
	descAgentID   = `Id of the code-agent template (ca-...), as returned by flapjack_create_code_agent or flapjack_list_code_agents.`
	descPageLimit = `How many items this page holds at most: 1 to 500, default 50.`
	descCursor    = `next_cursor from the previous page, to get the page after it; omit for the first page.`
	descSessionID = `Id of the code session (cs-...), as returned by flapjack_start_code_session or flapjack_list_code_sessions.`
	descOrgFilter = `Only this org. Omit to cover every org you belong to; you only need it when you belong to several.`
	descRepoForms = `https://host/owner/repo, ssh://git@host/owner/repo or git@host:owner/repo; with the "local" runtime also a file:// URL or an absolute path.`
)

// agentFieldProps describes the template fields for create (with defaults) or
// update (omit = unchanged).
func agentFieldProps(update bool) map[string]string {
	d := func(create, upd string) string {
		if update {
			return upd
		}
		return create
	}
	keep := " Omit to keep the current value."
	return map[string]string{
		"name":        `Display name, 1 to 200 characters.` + d(` Default "New code agent".`, keep),
		"description": `What the template is for, at most 2,000 characters.` + d(` Default empty.`, keep),
		"modelId": `Model the agent uses, at most 200 characters; "auto" lets the runtime choose.` +
			d(` Default "auto".`, keep),
		"modelParams": `Model-specific parameters, a JSON object of at most 16 KiB.` +
			d(` Default none.`, ` Pass {} to clear; omit or null to keep the current value.`),
		"defaultRepoUrl": `Repository that sessions work on unless a start gives repoUrl: ` + descRepoForms +
			d(` Default none: then every start must give repoUrl.`, ` Pass "" to clear.`+keep),
		"defaultStartingRef": `Branch or tag that sessions start from (a valid git ref name, not starting with '-').` +
			d(` Default "main".`, keep),
		"autoCreatePR": `Open a pull request when a run ends with changes.` + d(` Default true.`, keep),
		"workOnCurrentBranch": `Commit directly on the starting branch instead of creating a new branch.` +
			d(` Default false.`, keep),
		"skipReviewerRequest": `Do not request reviewers on the pull requests.` + d(` Default false.`, keep),
		"preamble": `Instructions prepended to the prompt of every message of every session of this template, at most 100,000 characters.` +
			d(` Default empty.`, keep),
		"runtime": `Where sessions run: "cloud" (Cursor's Cloud Agents API; needs a Cursor API key) or "local" (an agent CLI in a git workspace on the server's machine). "" means the server's default runtime.` +
			d(` Default "".`, keep),
	}
}

func listAgentsTool() toolDef {
	return tool(toolListCodeAgents, "List code agents", readHint(),
		`List the code-agent templates you can see, newest first, one page at a time. A template holds the settings a session starts with: repository, starting branch, model, preamble and pull-request behaviour. Returns {"code_agents": [...], "next_cursor": "..."}; next_cursor is absent on the last page. Pass an id as codeAgentId to flapjack_start_code_session.`,
		map[string]string{"orgId": descOrgFilter, "limit": descPageLimit, "cursor": descCursor})
}

func getAgentTool() toolDef {
	return tool(toolGetCodeAgent, "Get code agent", readHint(),
		`Get one code-agent template by id. NOT_FOUND if it does not exist or was deleted.`,
		map[string]string{"codeAgentId": descAgentID})
}

func createAgentTool() toolDef {
	props := agentFieldProps(false)
	props["orgId"] = `Org the template belongs to. Omit to use your default org; required only when you belong to several orgs.`
	return tool(toolCreateCodeAgent, "Create code agent", hint{},
		`Create a code-agent template: the defaults flapjack_start_code_session uses. Every field is optional; without defaultRepoUrl every start must give repoUrl. Returns the created template; its id is the codeAgentId for starting sessions.`,
		props)
}

func updateAgentTool() toolDef {
	props := agentFieldProps(true)
	props["codeAgentId"] = descAgentID
	return tool(toolUpdateCodeAgent, "Update code agent", hint{destructive: true, idempotent: true},
		`Change fields of a code-agent template. Only the fields you pass change (false and "" are values too); omitted fields keep their value. Sessions already started keep the settings they started with. Returns the updated template.`,
		props)
}

func deleteAgentTool() toolDef {
	return tool(toolDeleteCodeAgent, "Delete code agent", hint{destructive: true, idempotent: true},
		`Delete a code-agent template. Its sessions are not affected: they keep a snapshot of the settings they started with and go on. Returns {"ok": true}.`,
		map[string]string{"codeAgentId": descAgentID})
}

func listSessionsTool() toolDef {
	return tool(toolListCodeSessions, "List code sessions", readHint(),
		`List code sessions, newest first, one page at a time, optionally filtered by template, status or archived flag. Returns {"code_sessions": [...], "next_cursor": "..."} without messages; next_cursor is absent on the last page. Use flapjack_get_code_session for a session's messages and flapjack_list_code_session_events for its activity.`,
		map[string]string{
			"codeAgentId": `Only sessions started from this template (ca-...).`,
			"status":      `Only sessions in this status: pending, creating, running (active), or finished, error, cancelled, expired (ended).`,
			"archived":    `true for archived sessions only, false for unarchived only; omit for both.`,
			"orgId":       descOrgFilter,
			"limit":       descPageLimit,
			"cursor":      descCursor,
		})
}

func getSessionTool() toolDef {
	return tool(toolGetCodeSession, "Get code session", readHint(),
		`Get a code session with its full message history: status (pending → creating → running → finished | error | cancelled | expired), error, pr_url and pr_branch, last_event_seq, and for each message its status (queued, running, finished, error, cancelled), result_text and pr_url.`,
		map[string]string{"codeSessionId": descSessionID})
}

func startSessionTool() toolDef {
	props := map[string]string{
		"codeAgentId":         `Template to run (ca-...). Its settings apply unless overridden below.`,
		"prompt":              `The task for the agent, 1 to 100,000 characters. The template's preamble is prepended.`,
		"cursorApiKey":        `Cursor API key for this session: encrypted at rest, never returned, wiped on archive. Omit it when the flapjack server has CURSOR_API_KEY in its environment (preferred: the key then never passes through this conversation). Not needed by the "local" runtime with an agent that needs no key.`,
		"orgId":               `Org of the template; only needed when you belong to several orgs.`,
		"repoUrl":             `Repository to work on, overriding the template's defaultRepoUrl; required when the template has none. ` + descRepoForms,
		"startingRef":         `Branch or tag to start from, overriding the template's defaultStartingRef (a valid git ref name, not starting with '-').`,
		"autoCreatePR":        `Override the template's autoCreatePR: open a pull request when a run ends with changes.`,
		"workOnCurrentBranch": `Override the template's workOnCurrentBranch: commit directly on the starting branch instead of a new branch.`,
		"skipReviewerRequest": `Override the template's skipReviewerRequest: do not request reviewers on the pull request.`,
		"modelId":             `Override the template's model, at most 200 characters.`,
		"modelParams":         `Override the template's model parameters: a JSON object of at most 16 KiB.`,
		"webhookUrl":          `Public https:// URL that receives a signed POST on every status change of the session. Default none.`,
	}
	return tool(toolStartCodeSession, "Start code session", hint{openWorld: true},
		`Start a code session: a coding agent clones the repository, works on the prompt, commits, and with autoCreatePR opens a pull request. Returns at once with {"session_id", "message_id"}; the work runs in the background and goes on after this client disconnects. Follow it with flapjack_list_code_session_events: since=0 first, then since=last_seq of the previous call, with waitSeconds up to 25 instead of sleeping between calls; it is done when a status event (or flapjack_get_code_session) shows finished, error, cancelled or expired. cursorApiKey may be omitted when the server has CURSOR_API_KEY.`,
		props)
}

func updateSessionTool() toolDef {
	return tool(toolUpdateCodeSession, "Update code session", hint{destructive: true, idempotent: true},
		`Set or clear a session's status webhook. webhookUrl is required: a public https:// URL sets it, null or "" clears it. Archived sessions cannot be changed (SESSION_ARCHIVED). Returns the updated session.`,
		map[string]string{
			"codeSessionId": descSessionID,
			"webhookUrl":    `Public https:// URL that receives a signed POST on every status change, or null or "" to remove the webhook. Required.`,
		})
}

func sendMessageTool() toolDef {
	return tool(toolSendCodeSessionMessage, "Send follow-up message", hint{openWorld: true},
		`Send a follow-up prompt to a session; it runs in the same workspace and branch. On an active session (pending, creating, running) the message is queued and runs when the current one ends; on a finished, error or cancelled session it starts a new run. Archived and expired sessions refuse follow-ups (SESSION_ARCHIVED, SESSION_EXPIRED): start a new session instead. Returns {"message_id"}; follow it with flapjack_list_code_session_events (messageId filters to this message).`,
		map[string]string{
			"codeSessionId": descSessionID,
			"prompt":        `The follow-up task, 1 to 100,000 characters. The template's preamble is prepended.`,
		})
}

func listEventsTool() toolDef {
	return tool(toolListCodeSessionEvents, "List code session events", readHint(),
		`Read a session's event timeline in order: status changes, user messages, assistant text, thinking, tool calls, file edits, stdout/stderr, results, errors, pull requests, webhook deliveries. Poll with since=0 first, then pass the last_seq of the previous call as since. Set waitSeconds (up to 25) rather than sleeping between calls: the call returns as soon as a new event is written, or with no events and last_seq unchanged when the wait ends. The session is done when a status event shows finished, error, cancelled or expired. Returns {"events": [...], "last_seq": N}.`,
		map[string]string{
			"codeSessionId": descSessionID,
			"since":         `Return only events with seq greater than this. Default 0 (from the start). Pass the last_seq of the previous call to get only new events.`,
			"messageId":     `Only events of this message (msg-...), as returned by start or send.`,
			"limit":         `At most this many events, 1 to 500. Default 200. When a call returns exactly limit events, call again with since=last_seq for the rest.`,
			"waitSeconds":   `Long-poll: wait up to this many seconds (0 to 25) for an event after since, returning as soon as one is written; with none, return an empty list and last_seq equal to since. Default 0 (answer at once).`,
		})
}

func cancelSessionTool() toolDef {
	return tool(toolCancelCodeSession, "Cancel code session", hint{destructive: true, idempotent: true, openWorld: true},
		`Cancel an active session (pending, creating or running): stops the current run and cancels queued messages. Returns {"ok": true, "status": "cancelled"} once the run has stopped. Errors: SESSION_NOT_ACTIVE when it has already ended; CANCEL_UNSUPPORTED when the upstream run cannot be cancelled (wait for it to end); cursor_cancel_failed when the upstream call failed (retry).`,
		map[string]string{"codeSessionId": descSessionID})
}

func archiveSessionTool() toolDef {
	return tool(toolArchiveCodeSession, "Archive code session", hint{destructive: true, idempotent: true, openWorld: true},
		`Archive a session that has ended (finished, error, cancelled or expired): releases its workspace or upstream agent and permanently wipes its stored Cursor API key. An active session must be cancelled first (SESSION_ACTIVE otherwise). An archived session takes no more messages. archive_failed means the upstream archive failed; retry. Archiving again is harmless. Returns {"ok": true, "archived": true}.`,
		map[string]string{"codeSessionId": descSessionID})
}
