package local

import (
	"encoding/json"
	"path/filepath"
	"strings"

	"github.com/flapjack-dev/flapjack/core"
)

// lineMapper turns one agent CLI's stdout lines into events. A line it does
// not understand becomes a stdout event with the line as it came, never an
// error: the CLIs add event types and fields without notice.
type lineMapper interface {
	// line maps one stdout line to zero or more events.
	line(s string) []event
	// session is the CLI's own conversation id once its output named it, the
	// id a follow-up resumes.
	session() string
}

// errorPayload is an error the agent reported in its stream.
type errorPayload struct {
	Message string `json:"message"`
	// Fatal marks an error that ended the agent's turn.
	Fatal bool `json:"fatal,omitempty"`
	// failsRun makes it the run's error unless a successful result follows
	// (codex reports reconnects as stream errors, then carries on).
	failsRun bool
}

// agentEdit is a file_edit the agent reported as it worked, before the
// commit: it has the tool call instead of a commit and branch.
type agentEdit struct {
	CallID string       `json:"call_id,omitempty"`
	Files  []fileChange `json:"files"`
}

// plainEvent is the stdout event for a line kept as it came.
func plainEvent(line string) event { return event{core.EventStdout, linePayload{Line: line}} }

// relPath makes an absolute path inside the workspace relative to it, as git
// reports paths; anything else is kept.
func relPath(ws, p string) string {
	if ws == "" || !filepath.IsAbs(p) {
		return p
	}
	for _, base := range []string{ws, evalOr(ws)} {
		if rel, err := filepath.Rel(base, p); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return rel
		}
	}
	return p
}

// evalOr resolves symlinks in p, or returns p.
func evalOr(p string) string {
	if real, err := filepath.EvalSymlinks(p); err == nil {
		return real
	}
	return p
}

// ---- exec ----

// execMapper reads cursor-agent stream-json and plain lines from any command,
// exactly as the exec agent always has.
type execMapper struct{}

func newExecMapper(string) lineMapper { return execMapper{} }

func (execMapper) line(s string) []event {
	if ev := mapStdout(s); ev.payload != nil {
		return []event{ev}
	}
	return nil
}

func (execMapper) session() string { return "" }

// ---- cursor-agent ----

// cursorMapper reads cursor-agent's stream-json: the exec mapping, plus the
// chat id (session_id) and a file_edit for each completed edit, write or
// delete tool call.
type cursorMapper struct {
	ws      string
	chatID  string
	editing map[string]string // tool key → file_edit status
}

func newCursorMapper(ws string) lineMapper {
	return &cursorMapper{ws: ws, editing: map[string]string{
		"editToolCall": "modified", "writeToolCall": "modified", "deleteToolCall": "deleted",
	}}
}

func (m *cursorMapper) session() string { return m.chatID }

func (m *cursorMapper) line(s string) []event {
	ev := mapStdout(s)
	var sl streamLine
	if strings.HasPrefix(strings.TrimSpace(s), "{") && json.Unmarshal([]byte(strings.TrimSpace(s)), &sl) == nil {
		if m.chatID == "" && sl.SessionID != "" {
			m.chatID = sl.SessionID
		}
	}
	if ev.payload == nil {
		return nil
	}
	out := []event{ev}
	if tc, ok := ev.payload.(toolCallPayload); ok && sl.Subtype == "completed" {
		if e, ok := m.edit(tc, sl); ok {
			out = append(out, e)
		}
	}
	return out
}

// edit is the file_edit of a completed edit tool call that succeeded.
func (m *cursorMapper) edit(tc toolCallPayload, sl streamLine) (event, bool) {
	status := ""
	for key, st := range m.editing {
		if _, ok := sl.ToolCall[key]; ok {
			status = st
		}
	}
	if status == "" {
		return event{}, false
	}
	var args struct {
		Path string `json:"path"`
	}
	var res map[string]json.RawMessage
	if json.Unmarshal(tc.Args, &args) != nil || args.Path == "" || json.Unmarshal(tc.Result, &res) != nil {
		return event{}, false
	}
	if _, ok := res["success"]; !ok {
		return event{}, false
	}
	return event{core.EventFileEdit, agentEdit{CallID: tc.CallID, Files: []fileChange{{Path: relPath(m.ws, args.Path), Status: status}}}}, true
}

// ---- Claude Code ----

// claudeMapper reads claude -p --output-format stream-json --verbose: system,
// assistant and user messages (tool uses in the first, their results in the
// second) and a final result.
type claudeMapper struct {
	ws        string
	sessionID string
	tools     map[string]claudeTool // tool_use id → the call
}

type claudeTool struct {
	name  string
	input json.RawMessage
}

func newClaudeMapper(ws string) lineMapper {
	return &claudeMapper{ws: ws, tools: map[string]claudeTool{}}
}

func (m *claudeMapper) session() string { return m.sessionID }

// claudeLine is one line of claude's stream-json; unknown fields are ignored.
type claudeLine struct {
	Type      string `json:"type"`
	Subtype   string `json:"subtype"`
	SessionID string `json:"session_id"`
	Message   *struct {
		Content json.RawMessage `json:"content"`
	} `json:"message"`
	ToolUseResult json.RawMessage `json:"tool_use_result"`
	// result
	IsError      bool            `json:"is_error"`
	DurationMS   float64         `json:"duration_ms"`
	NumTurns     int             `json:"num_turns"`
	Result       json.RawMessage `json:"result"`
	TotalCostUSD *float64        `json:"total_cost_usd"`
	Usage        json.RawMessage `json:"usage"`
}

// claudePart is one content block of a message.
type claudePart struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	Thinking  string          `json:"thinking"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
	IsError   bool            `json:"is_error"`
}

// claudeEditTools are the tools that write files, and where their path is.
func claudeEditTools() map[string]string {
	return map[string]string{"Write": "file_path", "Edit": "file_path", "MultiEdit": "file_path", "NotebookEdit": "notebook_path"}
}

func (m *claudeMapper) line(s string) []event {
	raw := strings.TrimSpace(s)
	var cl claudeLine
	if !strings.HasPrefix(raw, "{") || json.Unmarshal([]byte(raw), &cl) != nil {
		return []event{plainEvent(s)}
	}
	if m.sessionID == "" && cl.SessionID != "" {
		m.sessionID = cl.SessionID
	}
	switch cl.Type {
	case "system":
		if cl.Subtype == "init" {
			return nil
		}
	case "assistant", "user":
		var parts []claudePart
		if cl.Message == nil || json.Unmarshal(cl.Message.Content, &parts) != nil {
			if cl.Type == "user" {
				return nil // the prompt, as a plain string: already logged
			}
			break
		}
		return m.parts(cl, parts)
	case "result":
		p := resultPayload{DurationMS: int64(cl.DurationMS), IsError: cl.IsError, Subtype: cl.Subtype,
			NumTurns: cl.NumTurns, CostUSD: cl.TotalCostUSD, Usage: cl.Usage}
		if json.Unmarshal(cl.Result, &p.Text) != nil && len(cl.Result) > 0 {
			break
		}
		return []event{{core.EventResult, p}}
	}
	return []event{plainEvent(s)}
}

// parts maps the content blocks of a message: text, thinking and tool uses
// of the assistant; tool results in user messages.
func (m *claudeMapper) parts(cl claudeLine, parts []claudePart) []event {
	var out []event
	for _, p := range parts {
		switch {
		case cl.Type == "assistant" && p.Type == "text" && p.Text != "":
			out = append(out, event{core.EventAssistant, textPayload{Text: p.Text}})
		case cl.Type == "assistant" && p.Type == "thinking" && p.Thinking != "":
			out = append(out, event{core.EventThinking, textPayload{Text: p.Thinking}})
		case cl.Type == "assistant" && p.Type == "tool_use":
			m.tools[p.ID] = claudeTool{name: p.Name, input: p.Input}
			out = append(out, event{core.EventToolCall, toolCallPayload{CallID: p.ID, Name: p.Name, Status: "started", Args: p.Input}})
		case cl.Type == "user" && p.Type == "tool_result":
			tool := m.tools[p.ToolUseID]
			delete(m.tools, p.ToolUseID)
			status := "completed"
			if p.IsError {
				status = "failed"
			}
			out = append(out, event{core.EventToolCall, toolCallPayload{CallID: p.ToolUseID, Name: tool.name, Status: status, Args: tool.input, Result: p.Content}})
			if !p.IsError {
				if e, ok := m.edit(p.ToolUseID, tool, cl.ToolUseResult); ok {
					out = append(out, e)
				}
			}
		}
	}
	return out
}

// edit is the file_edit of a successful Write, Edit, MultiEdit or
// NotebookEdit; Write says in tool_use_result whether it created the file.
func (m *claudeMapper) edit(id string, tool claudeTool, result json.RawMessage) (event, bool) {
	key, ok := claudeEditTools()[tool.name]
	if !ok {
		return event{}, false
	}
	var input map[string]json.RawMessage
	var path string
	if json.Unmarshal(tool.input, &input) != nil || json.Unmarshal(input[key], &path) != nil || path == "" {
		return event{}, false
	}
	status := "modified"
	var res struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(result, &res) == nil && res.Type == "create" {
		status = "added"
	}
	return event{core.EventFileEdit, agentEdit{CallID: id, Files: []fileChange{{Path: relPath(m.ws, path), Status: status}}}}, true
}

// ---- Codex ----

// codexMapper reads codex exec --json: thread and turn events, and items
// (agent messages, reasoning, commands, file changes, MCP tool calls, errors)
// as they start and complete.
type codexMapper struct {
	ws       string
	threadID string
	// last is the latest agent message: Codex's turn has no result text.
	last string
}

func newCodexMapper(ws string) lineMapper { return &codexMapper{ws: ws} }

func (m *codexMapper) session() string { return m.threadID }

// codexLine is one line of codex exec --json; unknown fields are ignored.
type codexLine struct {
	Type     string          `json:"type"`
	ThreadID string          `json:"thread_id"`
	Item     *codexItem      `json:"item"`
	Usage    json.RawMessage `json:"usage"`
	Error    *struct {
		Message string `json:"message"`
	} `json:"error"`
	Message string `json:"message"`
}

type codexItem struct {
	ID               string          `json:"id"`
	Type             string          `json:"type"`
	Text             string          `json:"text"`
	Command          string          `json:"command"`
	AggregatedOutput string          `json:"aggregated_output"`
	ExitCode         *int            `json:"exit_code"`
	Status           string          `json:"status"`
	Changes          []codexChange   `json:"changes"`
	Server           string          `json:"server"`
	Tool             string          `json:"tool"`
	Arguments        json.RawMessage `json:"arguments"`
	Result           json.RawMessage `json:"result"`
	Error            json.RawMessage `json:"error"`
	Message          string          `json:"message"`
	Query            string          `json:"query"`
}

type codexChange struct {
	Path string `json:"path"`
	Kind string `json:"kind"`
}

func (m *codexMapper) line(s string) []event {
	raw := strings.TrimSpace(s)
	var cl codexLine
	if !strings.HasPrefix(raw, "{") || json.Unmarshal([]byte(raw), &cl) != nil {
		return []event{plainEvent(s)}
	}
	switch cl.Type {
	case "thread.started":
		if m.threadID == "" {
			m.threadID = cl.ThreadID
		}
		return nil
	case "turn.started":
		return nil
	case "turn.completed":
		return []event{{core.EventResult, resultPayload{Text: m.last, Subtype: "success", Usage: cl.Usage}}}
	case "turn.failed":
		msg := "the turn failed"
		if cl.Error != nil && cl.Error.Message != "" {
			msg = cl.Error.Message
		}
		return []event{{core.EventError, errorPayload{Message: msg, Fatal: true, failsRun: true}}}
	case "error":
		if cl.Message != "" {
			return []event{{core.EventError, errorPayload{Message: cl.Message, failsRun: true}}}
		}
	case "item.started", "item.updated", "item.completed":
		if cl.Item != nil {
			if evs, ok := m.item(cl.Type, *cl.Item); ok {
				return evs
			}
		}
	}
	return []event{plainEvent(s)}
}

// item maps one item event; ok is false for an item type it does not know.
// Updates only repeat what the completion will say, so they are dropped.
func (m *codexMapper) item(typ string, it codexItem) ([]event, bool) {
	done := typ == "item.completed"
	status := "started"
	if done {
		status = "completed"
		if it.Status == "failed" || it.Status == "declined" {
			status = it.Status
		}
	}
	switch it.Type {
	case "agent_message", "reasoning":
		if !done || it.Text == "" {
			return nil, true
		}
		if it.Type == "reasoning" {
			return []event{{core.EventThinking, textPayload{Text: it.Text}}}, true
		}
		m.last = it.Text
		return []event{{core.EventAssistant, textPayload{Text: it.Text}}}, true
	case "command_execution":
		if typ == "item.updated" {
			return nil, true
		}
		p := toolCallPayload{CallID: it.ID, Name: "shell", Status: status, Args: mustRaw(map[string]string{"command": it.Command})}
		if done {
			p.Result = mustRaw(map[string]any{"exit_code": it.ExitCode, "output": it.AggregatedOutput})
		}
		return []event{{core.EventToolCall, p}}, true
	case "mcp_tool_call":
		if typ == "item.updated" {
			return nil, true
		}
		p := toolCallPayload{CallID: it.ID, Name: "mcp__" + it.Server + "__" + it.Tool, Status: status, Args: it.Arguments}
		if done {
			p.Result = it.Result
			if len(it.Error) > 0 && string(it.Error) != "null" {
				p.Result = mustRaw(map[string]json.RawMessage{"error": it.Error})
			}
		}
		return []event{{core.EventToolCall, p}}, true
	case "web_search":
		if typ == "item.updated" {
			return nil, true
		}
		return []event{{core.EventToolCall, toolCallPayload{CallID: it.ID, Name: "web_search", Status: status, Args: mustRaw(map[string]string{"query": it.Query})}}}, true
	case "file_change":
		if !done {
			return nil, true
		}
		if it.Status == "failed" {
			return []event{{core.EventError, errorPayload{Message: "a file change failed to apply"}}}, true
		}
		files := make([]fileChange, 0, len(it.Changes))
		for _, c := range it.Changes {
			st := map[string]string{"add": "added", "delete": "deleted", "update": "modified"}[c.Kind]
			if st == "" {
				st = "modified"
			}
			files = append(files, fileChange{Path: relPath(m.ws, c.Path), Status: st})
		}
		return []event{{core.EventFileEdit, agentEdit{CallID: it.ID, Files: files}}}, true
	case "error":
		if !done {
			return nil, true
		}
		return []event{{core.EventError, errorPayload{Message: it.Message}}}, true
	}
	return nil, false
}

// mustRaw marshals values built from plain maps, which cannot fail.
func mustRaw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
