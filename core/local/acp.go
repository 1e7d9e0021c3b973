package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	acp "github.com/coder/acp-go-sdk"

	"github.com/flapjack-dev/flapjack/core"
)

// AgentACP runs any Agent Client Protocol agent: flapjack is the ACP client
// over the agent's stdio, and FLAPJACK_LOCAL_AGENT_COMMAND is the agent's
// command line. The presets fill the command line in for known agents.
const (
	AgentACP       = "acp"
	AgentGemini    = "gemini"
	AgentCursorACP = "cursor-acp"
	AgentClaudeACP = "claude-acp"
	AgentCodexACP  = "codex-acp"
)

// acpPreset is the command line of a named ACP agent.
func acpPreset(name string) ([]string, bool) {
	switch name {
	case AgentGemini:
		return []string{"gemini", "--experimental-acp"}, true
	case AgentCursorACP:
		return []string{"agent", "acp"}, true
	case AgentClaudeACP:
		return []string{"claude-code-acp"}, true
	case AgentCodexACP:
		return []string{"codex-acp"}, true
	}
	return nil, false
}

// ACP permission policies: FLAPJACK_ACP_PERMISSIONS or a template's
// modelParams.permissions.
const (
	// PermissionsWorkspace allows what stays inside the workspace and refuses
	// what reaches outside it (the default).
	PermissionsWorkspace = "workspace"
	// PermissionsAllowAll allows every request.
	PermissionsAllowAll = "allow-all"
	// PermissionsReadOnly allows reading and searching inside the workspace only.
	PermissionsReadOnly = "read-only"
)

// ValidPermissions checks a permission policy name.
func ValidPermissions(p string) error {
	switch p {
	case PermissionsWorkspace, PermissionsAllowAll, PermissionsReadOnly:
		return nil
	}
	return fmt.Errorf("unknown ACP permission policy %q; use %s, %s or %s", p, PermissionsWorkspace, PermissionsAllowAll, PermissionsReadOnly)
}

// permissionsOf is the ACP permission policy of a session: its
// modelParams.permissions, else the runtime's default.
func (r *Runtime) permissionsOf(s core.Session) (string, error) {
	v, ok := s.ModelParams["permissions"]
	if !ok || v == nil || v == "" {
		return r.acpPolicy, nil
	}
	p, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("modelParams.permissions must be a string: %s, %s or %s", PermissionsWorkspace, PermissionsAllowAll, PermissionsReadOnly)
	}
	if err := ValidPermissions(p); err != nil {
		return "", fmt.Errorf("modelParams.permissions: %w", err)
	}
	return p, nil
}

// acpFlushBytes bounds coalesced message text before it is logged anyway.
const acpFlushBytes = 256 << 10

// acpRun is one run of an ACP agent: the client side of the connection, the
// mapping of its updates onto events, and how the turn ended.
type acpRun struct {
	r      *Runtime
	spec   core.RunSpec
	ws     string // the workspace, symlinks resolved
	em     *emitter
	name   string // agent name, recorded with its session id
	policy string
	// resume is the agent's session id to load, "" for a new session.
	resume string

	mu        sync.Mutex
	assistant strings.Builder // coalesced message chunks
	thinking  strings.Builder // coalesced thought chunks
	tools     map[acp.ToolCallId]string
	session   acp.SessionId
	cancel    func() // sends session/cancel once the session exists
	stop      acp.StopReason
	failure   string // why the turn did not complete
	agentInfo *acp.Implementation
	hint      string // a known cause seen on stderr
}

// stderrLine looks for known causes of failures that the agent reports
// badly over the protocol (Zed's Claude adapter says "Query closed").
func (a *acpRun) stderrLine(line string) {
	if strings.Contains(line, "cannot be used with root") {
		a.mu.Lock()
		a.hint = "the agent refuses to run as root (" + strings.TrimSpace(line) + "); on a machine that is a sandbox, set IS_SANDBOX=1 and pass it to agents with FLAPJACK_AGENT_ENV=IS_SANDBOX, or run flapjack as another user"
		a.mu.Unlock()
	}
}

// newACPRun prepares a run; ws must exist.
func newACPRun(r *Runtime, spec core.RunSpec, ws string, em *emitter, name, policy, resume string) *acpRun {
	if real, err := filepath.EvalSymlinks(ws); err == nil {
		ws = real
	}
	return &acpRun{r: r, spec: spec, ws: ws, em: em, name: name, policy: policy, resume: resume, tools: map[acp.ToolCallId]string{}}
}

// talk drives the protocol over the agent's stdin and stdout until the
// prompt's turn ends, then closes stdin so the agent can exit.
func (a *acpRun) talk(stdin io.WriteCloser, stdout io.Reader) {
	defer stdin.Close()
	// Updates of kinds mapped to nothing typed are kept from the raw lines:
	// the SDK would drop a kind it does not know.
	tee := &lineTee{r: stdout, onLine: a.rawLine}
	conn := acp.NewClientSideConnection(a, stdin, tee)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// The agent went away: nothing pending can be answered any more.
		<-conn.Done()
		cancel()
	}()
	init, err := conn.Initialize(ctx, acp.InitializeRequest{
		ProtocolVersion: acp.ProtocolVersionNumber,
		// Only what is implemented: file reads and writes inside the workspace.
		ClientCapabilities: acp.ClientCapabilities{Fs: acp.FileSystemCapabilities{ReadTextFile: true, WriteTextFile: true}},
		ClientInfo:         &acp.Implementation{Name: "flapjack", Version: a.r.version},
	})
	if err != nil {
		a.fail("initialize", err)
		return
	}
	a.agentInfo = init.AgentInfo
	if info := init.AgentInfo; info != nil {
		a.em.emit(core.EventAgent, agentInfoPayload{Line: "flapjack: the agent is " + info.Name + " " + info.Version + " (ACP)",
			Agent: a.name, Version: strings.TrimSpace(info.Name + " " + info.Version)})
	}
	var sid acp.SessionId
	if a.resume != "" && init.AgentCapabilities.LoadSession {
		if _, err := conn.LoadSession(ctx, acp.LoadSessionRequest{SessionId: acp.SessionId(a.resume), Cwd: a.ws, McpServers: []acp.McpServer{}}); err == nil {
			sid = acp.SessionId(a.resume)
		} else {
			a.em.emit(core.EventStderr, linePayload{Line: "flapjack: the agent could not load its earlier session (" + acpErrText(err) + "); starting a new one in the same workspace"})
		}
	}
	if sid == "" {
		resp, err := conn.NewSession(ctx, acp.NewSessionRequest{Cwd: a.ws, McpServers: []acp.McpServer{}})
		if err != nil {
			a.fail("session/new", err)
			return
		}
		sid = resp.SessionId
	}
	a.mu.Lock()
	a.session = sid
	a.cancel = func() { _ = conn.Cancel(context.Background(), acp.CancelNotification{SessionId: sid}) }
	a.mu.Unlock()
	a.em.mu.Lock()
	onSession := a.em.onSession
	a.em.mu.Unlock()
	if onSession != nil && plainToken(string(sid), 200, "._:-") {
		onSession(string(sid))
	}
	resp, err := conn.Prompt(ctx, acp.PromptRequest{SessionId: sid, Prompt: []acp.ContentBlock{acp.TextBlock(a.spec.Prompt)}})
	a.flush()
	if err != nil {
		a.fail("session/prompt", err)
		return
	}
	a.mu.Lock()
	a.stop = resp.StopReason
	a.mu.Unlock()
	res := resultPayload{Text: a.em.lastText(), Subtype: string(resp.StopReason), IsError: resp.StopReason != acp.StopReasonEndTurn}
	if resp.Usage != nil {
		res.Usage = mustRaw(resp.Usage)
	}
	a.em.mu.Lock()
	a.em.result = &res
	a.em.mu.Unlock()
	a.em.emit(core.EventResult, res)
}

// interrupt asks the agent to end its turn (session/cancel); the turn then
// ends with the stop reason "cancelled". It reports whether it could ask.
func (a *acpRun) interrupt() bool {
	a.mu.Lock()
	cancel := a.cancel
	a.mu.Unlock()
	if cancel == nil {
		return false
	}
	cancel()
	return true
}

// fail records why the turn could not complete.
func (a *acpRun) fail(step string, err error) {
	msg := step + " failed: " + acpErrText(err)
	a.mu.Lock()
	if a.failure == "" {
		a.failure = msg
	}
	a.mu.Unlock()
	a.em.emit(core.EventError, errorPayload{Message: msg, Fatal: true})
}

// acpErrText is an ACP error's message and data, as the agent sent them.
func acpErrText(err error) string {
	var re *acp.RequestError
	if errors.As(err, &re) {
		msg := re.Message
		if re.Data != nil {
			if b, err := json.Marshal(re.Data); err == nil && string(b) != "null" && string(b) != "{}" {
				msg += " " + truncateRunes(string(b), 500)
			}
		}
		return msg
	}
	return err.Error()
}

// outcome is how the run ended: the stop reason decides, not how the agent
// process exited after its turn (flapjack ends it then).
func (a *acpRun) outcome(res agentResult) core.RunOutcome {
	a.mu.Lock()
	stop, failure, hint := a.stop, a.failure, a.hint
	a.mu.Unlock()
	a.em.mu.Lock()
	stderr := a.em.stderrTail()
	a.em.mu.Unlock()
	a.em.mu.Lock()
	usage := reportedUsage(a.em.result)
	a.em.mu.Unlock()
	out := core.RunOutcome{ResultText: a.em.lastText(), DurationMS: res.elapsed.Milliseconds(), Usage: usage}
	switch {
	case res.startErr != nil:
		out.Status, out.Error = core.MessageError, a.em.redact("could not start the agent: "+res.startErr.Error())
	case res.cancelled || stop == acp.StopReasonCancelled:
		out.Status, out.Error = core.MessageError, "cancelled"
	case stop == acp.StopReasonEndTurn:
		out.Status = core.MessageFinished
	case stop != "":
		out.Status, out.Error = core.MessageError, "the agent stopped before finishing its turn: "+string(stop)
	default:
		// A protocol error says what went wrong; without one, the agent's
		// last stderr lines may.
		out.Status = core.MessageError
		out.Error = failure
		if out.Error == "" {
			out.Error = "the agent ended the connection before its turn was over (" + exitText(res.state) + ")"
			if stderr != "" {
				out.Error += ":\n" + stderr
			}
		}
		if hint != "" {
			out.Error = hint + " [" + out.Error + "]"
		}
	}
	return out
}

// lastText is the last assistant text logged.
func (e *emitter) lastText() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastAssistant
}

// flush logs coalesced message and thought text.
func (a *acpRun) flush() {
	a.mu.Lock()
	text, thought := a.assistant.String(), a.thinking.String()
	a.assistant.Reset()
	a.thinking.Reset()
	a.mu.Unlock()
	if thought != "" {
		a.em.emit(core.EventThinking, textPayload{Text: thought})
	}
	if text != "" {
		a.em.mu.Lock()
		a.em.lastAssistant = a.em.redact(text)
		a.em.mu.Unlock()
		a.em.emit(core.EventAssistant, textPayload{Text: text})
	}
}

// sdkKinds are the session/update kinds the ACP library decodes; SessionUpdate
// sees them in order. A kind it does not know never reaches SessionUpdate, so
// rawLine keeps it from the agent's raw output.
func sdkKinds() map[string]bool {
	return map[string]bool{"user_message_chunk": true, "agent_message_chunk": true, "agent_thought_chunk": true,
		"tool_call": true, "tool_call_update": true, "plan": true, "available_commands_update": true,
		"current_mode_update": true, "config_option_update": true, "session_info_update": true, "usage_update": true}
}

// rawLine sees every line the agent writes as it is read, before the
// library decodes it, and keeps session updates of kinds the library does
// not know as stdout events. (Logged as read: a later known update still
// queued for SessionUpdate can come after it.)
func (a *acpRun) rawLine(line []byte) {
	if !bytes.Contains(line, []byte(`"session/update"`)) {
		return
	}
	var msg struct {
		Method string `json:"method"`
		Params struct {
			Update json.RawMessage `json:"update"`
		} `json:"params"`
	}
	if json.Unmarshal(line, &msg) != nil || msg.Method != "session/update" {
		return
	}
	var kind struct {
		SessionUpdate string `json:"sessionUpdate"`
	}
	_ = json.Unmarshal(msg.Params.Update, &kind)
	if sdkKinds()[kind.SessionUpdate] {
		return
	}
	a.em.emit(core.EventStdout, acpUpdatePayload{Update: kind.SessionUpdate, Raw: msg.Params.Update})
}

// acpUpdatePayload keeps a session update flapjack has no event type for.
type acpUpdatePayload struct {
	Update string          `json:"acp_update"`
	Raw    json.RawMessage `json:"update"`
}

// SessionUpdate maps the agent's updates onto events (acp.Client).
func (a *acpRun) SessionUpdate(_ context.Context, n acp.SessionNotification) error {
	u := n.Update
	switch {
	case u.AgentMessageChunk != nil:
		a.addText(&a.assistant, u.AgentMessageChunk.Content)
	case u.AgentThoughtChunk != nil:
		a.addText(&a.thinking, u.AgentThoughtChunk.Content)
	case u.ToolCall != nil:
		a.flush()
		tc := u.ToolCall
		a.mu.Lock()
		a.tools[tc.ToolCallId] = tc.Title
		a.mu.Unlock()
		a.toolEvent(tc.ToolCallId, tc.Title, string(tc.Kind), string(tc.Status), tc.RawInput, tc.RawOutput, tc.Content, tc.Locations)
	case u.ToolCallUpdate != nil:
		a.flush()
		tu := u.ToolCallUpdate
		a.mu.Lock()
		title := a.tools[tu.ToolCallId]
		if tu.Title != nil {
			title = *tu.Title
			a.tools[tu.ToolCallId] = title
		}
		a.mu.Unlock()
		kind, status := "", ""
		if tu.Kind != nil {
			kind = string(*tu.Kind)
		}
		if tu.Status != nil {
			status = string(*tu.Status)
		}
		a.toolEvent(tu.ToolCallId, title, kind, status, tu.RawInput, tu.RawOutput, tu.Content, tu.Locations)
	case u.Plan != nil:
		a.flush()
		entries := make([]planEntry, 0, len(u.Plan.Entries))
		for _, e := range u.Plan.Entries {
			entries = append(entries, planEntry{Content: e.Content, Priority: string(e.Priority), Status: string(e.Status)})
		}
		a.em.emit(core.EventPlan, planPayload{Entries: entries})
	case u.UserMessageChunk != nil:
		// The prompt is logged already, as the user_message event.
	default:
		// Known to the protocol but with no event of its own (commands,
		// modes, session info, usage): kept as it came, in order.
		a.flush()
		raw := mustRaw(u)
		var kind struct {
			SessionUpdate string `json:"sessionUpdate"`
		}
		_ = json.Unmarshal(raw, &kind)
		a.em.emit(core.EventStdout, acpUpdatePayload{Update: kind.SessionUpdate, Raw: raw})
	}
	return nil
}

// addText coalesces a chunk's text; a chunk of another content kind is kept
// as a stdout event.
func (a *acpRun) addText(b *strings.Builder, c acp.ContentBlock) {
	if c.Text == nil {
		a.flush()
		a.em.emit(core.EventStdout, acpUpdatePayload{Update: "content", Raw: mustRaw(c)})
		return
	}
	a.mu.Lock()
	b.WriteString(c.Text.Text)
	full := b.Len() >= acpFlushBytes
	a.mu.Unlock()
	if full {
		a.flush()
	}
}

type planEntry struct {
	Content  string `json:"content"`
	Priority string `json:"priority,omitempty"`
	Status   string `json:"status,omitempty"`
}

type planPayload struct {
	Entries []planEntry `json:"entries"`
}

// acpToolPayload is a tool_call event of an ACP agent: the common fields
// (call_id, name, status, args, result) plus what ACP adds.
type acpToolPayload struct {
	CallID string          `json:"call_id"`
	Name   string          `json:"name"`
	Tool   string          `json:"tool"`
	Kind   string          `json:"kind,omitempty"`
	Status string          `json:"status,omitempty"`
	Args   json.RawMessage `json:"args,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	// Content is the tool call's content as the agent sent it (text, diffs).
	Content   json.RawMessage `json:"content,omitempty"`
	Locations []string        `json:"locations,omitempty"`
	Path      string          `json:"path,omitempty"`
}

// acpDiff is one diff of a file_edit event reported by an ACP agent.
type acpDiff struct {
	Path    string  `json:"path"`
	OldText *string `json:"old_text,omitempty"`
	NewText string  `json:"new_text"`
}

// acpEdit is the file_edit payload of a diff an ACP agent reported.
type acpEdit struct {
	CallID string       `json:"call_id"`
	Files  []fileChange `json:"files"`
	Diffs  []acpDiff    `json:"diffs"`
}

func (a *acpRun) toolEvent(id acp.ToolCallId, title, kind, status string, in, out any, content []acp.ToolCallContent, locs []acp.ToolCallLocation) {
	p := acpToolPayload{CallID: string(id), Name: title, Tool: title, Kind: kind, Status: status}
	if in != nil {
		p.Args = mustRaw(in)
	}
	if out != nil {
		p.Result = mustRaw(out)
	}
	if len(content) > 0 {
		p.Content = mustRaw(content)
	}
	for _, l := range locs {
		p.Locations = append(p.Locations, relPath(a.ws, l.Path))
	}
	if len(p.Locations) == 1 {
		p.Path = p.Locations[0]
	}
	a.em.emit(core.EventToolCall, p)
	var edit acpEdit
	for _, c := range content {
		if c.Diff == nil {
			continue
		}
		rel := relPath(a.ws, c.Diff.Path)
		st := "modified"
		if c.Diff.OldText == nil {
			st = "added"
		}
		edit.Files = append(edit.Files, fileChange{Path: rel, Status: st})
		edit.Diffs = append(edit.Diffs, acpDiff{Path: rel, OldText: c.Diff.OldText, NewText: c.Diff.NewText})
	}
	if len(edit.Files) > 0 {
		edit.CallID = string(id)
		a.em.emit(core.EventFileEdit, edit)
	}
}

// permissionPayload is a permission event: what was asked and decided.
type permissionPayload struct {
	CallID   string   `json:"call_id"`
	Tool     string   `json:"tool"`
	Kind     string   `json:"kind,omitempty"`
	Paths    []string `json:"paths,omitempty"`
	Decision string   `json:"decision"` // allow or reject
	OptionID string   `json:"option_id,omitempty"`
	Option   string   `json:"option,omitempty"`
	Policy   string   `json:"policy"`
	Reason   string   `json:"reason"`
}

// RequestPermission answers by the run's policy and logs the decision
// (acp.Client).
func (a *acpRun) RequestPermission(_ context.Context, p acp.RequestPermissionRequest) (acp.RequestPermissionResponse, error) {
	// No flush: a request is handled as it arrives and may overtake
	// notifications still queued, whose chunks would then be split.
	tc := p.ToolCall
	title := ""
	if tc.Title != nil {
		title = *tc.Title
	} else {
		a.mu.Lock()
		title = a.tools[tc.ToolCallId]
		a.mu.Unlock()
	}
	kind := ""
	if tc.Kind != nil {
		kind = string(*tc.Kind)
	}
	paths := make([]string, 0, len(tc.Locations))
	outside := ""
	for _, l := range tc.Locations {
		paths = append(paths, l.Path)
		if _, err := a.inside(l.Path); err != nil && outside == "" {
			outside = l.Path
		}
	}
	for _, c := range tc.Content {
		if c.Diff != nil {
			paths = append(paths, c.Diff.Path)
			if _, err := a.inside(c.Diff.Path); err != nil && outside == "" {
				outside = c.Diff.Path
			}
		}
	}
	allow, reason := a.decide(kind, outside)
	choice := pickOption(p.Options, allow)
	ev := permissionPayload{CallID: string(tc.ToolCallId), Tool: title, Kind: kind, Policy: a.policy, Reason: reason, Decision: "reject"}
	for _, pth := range paths {
		ev.Paths = append(ev.Paths, relPath(a.ws, pth))
	}
	if allow {
		ev.Decision = "allow"
	}
	if choice == nil {
		ev.Reason += "; the agent offered no option for that, so the request was cancelled"
		a.em.emit(core.EventPermission, ev)
		return acp.RequestPermissionResponse{Outcome: acp.RequestPermissionOutcome{Cancelled: &acp.RequestPermissionOutcomeCancelled{}}}, nil
	}
	ev.OptionID, ev.Option = string(choice.OptionId), string(choice.Kind)
	a.em.emit(core.EventPermission, ev)
	return acp.RequestPermissionResponse{Outcome: acp.RequestPermissionOutcome{Selected: &acp.RequestPermissionOutcomeSelected{OptionId: choice.OptionId}}}, nil
}

// decide applies the policy to a request of this tool kind; outside is a
// path of it outside the workspace ("" when none).
func (a *acpRun) decide(kind, outside string) (bool, string) {
	switch a.policy {
	case PermissionsAllowAll:
		return true, "the allow-all policy allows every request"
	case PermissionsReadOnly:
		if outside != "" {
			return false, "read-only policy: " + outside + " is outside the workspace"
		}
		switch acp.ToolKind(kind) {
		case acp.ToolKindRead, acp.ToolKindSearch, acp.ToolKindThink:
			return true, "read-only policy: reading inside the workspace"
		}
		return false, "read-only policy: a " + orUnknown(kind) + " tool may change something"
	default:
		if outside != "" {
			return false, "workspace policy: " + outside + " is outside the workspace"
		}
		return true, "workspace policy: everything it names is inside the workspace"
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "kind-less"
	}
	return s
}

// pickOption chooses the agent's option for the decision: once rather than
// always, so no standing permission outlives the run.
func pickOption(opts []acp.PermissionOption, allow bool) *acp.PermissionOption {
	kinds := []acp.PermissionOptionKind{acp.PermissionOptionKindRejectOnce, acp.PermissionOptionKindRejectAlways}
	if allow {
		kinds = []acp.PermissionOptionKind{acp.PermissionOptionKindAllowOnce, acp.PermissionOptionKindAllowAlways}
	}
	for _, k := range kinds {
		for i := range opts {
			if opts[i].Kind == k {
				return &opts[i]
			}
		}
	}
	return nil
}

// inside resolves p, an absolute path the agent named, and fails unless it
// is in the workspace once symlinks are resolved (as far as the path exists).
func (a *acpRun) inside(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("path %q is not absolute", p)
	}
	clean := filepath.Clean(p)
	// Resolve the longest existing prefix, so a symlink in it cannot lead out.
	rest := ""
	cur := clean
	for {
		real, err := filepath.EvalSymlinks(cur)
		if err == nil {
			clean = filepath.Join(real, rest)
			break
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			break
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
	rel, err := filepath.Rel(a.ws, clean)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("path %q is outside the session's workspace", p)
	}
	if rel == ".git" || strings.HasPrefix(rel, ".git"+string(filepath.Separator)) {
		return "", fmt.Errorf("path %q is inside the workspace's git metadata", p)
	}
	return clean, nil
}

// refuse logs an fs request refused and returns the error the agent gets.
func (a *acpRun) refuse(method string, err error) error {
	a.em.emit(core.EventError, errorPayload{Message: method + " refused: " + err.Error()})
	return acp.NewInvalidParams(map[string]any{"error": err.Error()})
}

// ReadTextFile serves a file inside the workspace (acp.Client).
func (a *acpRun) ReadTextFile(_ context.Context, p acp.ReadTextFileRequest) (acp.ReadTextFileResponse, error) {
	path, err := a.inside(p.Path)
	if err != nil {
		return acp.ReadTextFileResponse{}, a.refuse("fs/read_text_file", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return acp.ReadTextFileResponse{}, a.refuse("fs/read_text_file", errors.New(relPath(a.ws, path)+": "+errors.Unwrap(err).Error()))
	}
	content := string(b)
	if p.Line != nil || p.Limit != nil {
		lines := strings.SplitAfter(content, "\n")
		start := 0
		if p.Line != nil && *p.Line > 1 {
			start = min(*p.Line-1, len(lines))
		}
		end := len(lines)
		if p.Limit != nil && *p.Limit >= 0 {
			end = min(start+*p.Limit, end)
		}
		content = strings.Join(lines[start:end], "")
	}
	return acp.ReadTextFileResponse{Content: content}, nil
}

// WriteTextFile writes a file inside the workspace (acp.Client).
func (a *acpRun) WriteTextFile(_ context.Context, p acp.WriteTextFileRequest) (acp.WriteTextFileResponse, error) {
	path, err := a.inside(p.Path)
	if err != nil {
		return acp.WriteTextFileResponse{}, a.refuse("fs/write_text_file", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return acp.WriteTextFileResponse{}, a.refuse("fs/write_text_file", err)
	}
	if err := os.WriteFile(path, []byte(p.Content), 0o644); err != nil {
		return acp.WriteTextFileResponse{}, a.refuse("fs/write_text_file", err)
	}
	return acp.WriteTextFileResponse{}, nil
}

// errNoTerminal answers terminal requests: the capability is not advertised.
func errNoTerminal() error { return acp.NewMethodNotFound("terminal/*") }

// CreateTerminal is not offered (acp.Client).
func (a *acpRun) CreateTerminal(context.Context, acp.CreateTerminalRequest) (acp.CreateTerminalResponse, error) {
	return acp.CreateTerminalResponse{}, errNoTerminal()
}

// KillTerminal is not offered (acp.Client).
func (a *acpRun) KillTerminal(context.Context, acp.KillTerminalRequest) (acp.KillTerminalResponse, error) {
	return acp.KillTerminalResponse{}, errNoTerminal()
}

// TerminalOutput is not offered (acp.Client).
func (a *acpRun) TerminalOutput(context.Context, acp.TerminalOutputRequest) (acp.TerminalOutputResponse, error) {
	return acp.TerminalOutputResponse{}, errNoTerminal()
}

// ReleaseTerminal is not offered (acp.Client).
func (a *acpRun) ReleaseTerminal(context.Context, acp.ReleaseTerminalRequest) (acp.ReleaseTerminalResponse, error) {
	return acp.ReleaseTerminalResponse{}, errNoTerminal()
}

// WaitForTerminalExit is not offered (acp.Client).
func (a *acpRun) WaitForTerminalExit(context.Context, acp.WaitForTerminalExitRequest) (acp.WaitForTerminalExitResponse, error) {
	return acp.WaitForTerminalExitResponse{}, errNoTerminal()
}

// lineTee passes a reader through and shows each complete line to onLine
// first. Lines are held only up to maxTeeLine; a longer one is passed on but
// not shown.
type lineTee struct {
	r      io.Reader
	onLine func([]byte)
	buf    []byte
	skip   bool
}

const maxTeeLine = 16 << 20

func (t *lineTee) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	chunk := p[:n]
	for len(chunk) > 0 {
		i := bytes.IndexByte(chunk, '\n')
		if i < 0 {
			if !t.skip {
				t.buf = append(t.buf, chunk...)
				if len(t.buf) > maxTeeLine {
					t.buf, t.skip = nil, true
				}
			}
			break
		}
		if !t.skip {
			t.onLine(append(t.buf, chunk[:i]...))
		}
		t.buf, t.skip = t.buf[:0], false
		chunk = chunk[i+1:]
	}
	return n, err
}

var _ acp.Client = (*acpRun)(nil)
