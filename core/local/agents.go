package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/platform"
)

// Agent names: FLAPJACK_LOCAL_AGENT and a template's modelParams.agent.
const (
	// AgentCursor is Cursor's CLI, cursor-agent.
	AgentCursor = "cursor-agent"
	// AgentClaude is Anthropic's Claude Code CLI, claude.
	AgentClaude = "claude"
	// AgentCodex is OpenAI's Codex CLI, codex.
	AgentCodex = "codex"
	// AgentExec runs any command: prompt on stdin and in FLAPJACK_PROMPT.
	AgentExec = "exec"
)

// errNoCommand is why exec runs fail when no agent command is configured.
const errNoCommand = "no local agent command is configured; set FLAPJACK_LOCAL_AGENT_COMMAND"

// maxArgPrompt is the largest prompt that goes on a command line: Linux
// refuses a single argument over 128 KiB (MAX_ARG_STRLEN).
const maxArgPrompt = 128<<10 - 1

// AvailableAgents lists the agent names New and modelParams.agent accept.
func AvailableAgents() []string {
	return []string{AgentCursor, AgentClaude, AgentCodex, AgentExec, AgentACP, AgentGemini, AgentCursorACP, AgentClaudeACP, AgentCodexACP}
}

// invocation is what one run of an agent CLI needs on its command line.
type invocation struct {
	// model is the session's model, "" for the CLI's default ("auto").
	model string
	// resume is the CLI's own conversation id to continue, "" for a new one.
	resume string
	prompt string
}

// adapter knows one agent CLI: how to call it and how to read its output.
type adapter struct {
	name string
	// exe is the executable looked up on PATH (none for exec); altExe are
	// other names it installs as, tried in order after exe.
	exe    string
	altExe []string
	// args builds the arguments after the executable; stdin says whether the
	// prompt goes on stdin (else it is the last argument, after "--").
	args func(inv invocation) (args []string, stdin bool)
	// mapper reads one run's stdout; ws relativizes the paths it reports.
	mapper func(ws string) lineMapper
	// cursorKey passes the session's Cursor key as CURSOR_API_KEY.
	cursorKey bool
	// promptEnv passes the prompt in FLAPJACK_PROMPT too (exec).
	promptEnv bool
	// judge fails a run whose own result says it failed, even on exit 0;
	// the exec agent is judged by its exit status alone, as documented.
	judge bool
	// acp speaks the Agent Client Protocol over stdio (acp.go) instead of
	// printing a stream; preset is its fixed command line (none for "acp",
	// whose command is FLAPJACK_LOCAL_AGENT_COMMAND).
	acp    bool
	preset []string
	// envPrefixes are the variable families the CLI documents (its keys and
	// settings), passed to it besides the base environment.
	envPrefixes []string
}

// adapterFor returns the adapter of an agent name.
func adapterFor(name string) (adapter, bool) {
	switch name {
	case AgentCursor:
		// Cursor's CLI installs as "agent" now, and as "cursor-agent" on some installs.
		return adapter{name: name, exe: "agent", altExe: []string{"cursor-agent"}, args: cursorArgs, mapper: newCursorMapper, cursorKey: true, judge: true, envPrefixes: cursorEnv()}, true
	case AgentClaude:
		return adapter{name: name, exe: "claude", args: claudeArgs, mapper: newClaudeMapper, judge: true, envPrefixes: claudeEnv()}, true
	case AgentCodex:
		return adapter{name: name, exe: "codex", args: codexArgs, mapper: newCodexMapper, judge: true, envPrefixes: codexEnv()}, true
	case AgentExec:
		return adapter{name: name, args: func(invocation) ([]string, bool) { return nil, true }, mapper: newExecMapper, cursorKey: true, promptEnv: true}, true
	case AgentACP:
		return adapter{name: name, args: noArgs, mapper: newExecMapper, cursorKey: true, acp: true}, true
	}
	if argv, ok := acpPreset(name); ok {
		// Cursor's ACP agent is Cursor's CLI and takes the session's key.
		ad := adapter{name: name, exe: argv[0], preset: argv[1:], args: noArgs, mapper: newExecMapper, cursorKey: name == AgentCursorACP, acp: true}
		switch name {
		case AgentGemini:
			ad.envPrefixes = []string{"GEMINI_", "GOOGLE_"}
		case AgentCursorACP:
			ad.envPrefixes = cursorEnv()
		case AgentClaudeACP:
			ad.envPrefixes = claudeEnv()
		case AgentCodexACP:
			ad.envPrefixes = codexEnv()
		}
		return ad, true
	}
	return adapter{}, false
}

// The variable families each CLI documents for its credentials and settings.
func cursorEnv() []string { return []string{"CURSOR_"} } // CURSOR_API_KEY is the session's, set by flapjack
func claudeEnv() []string { return []string{"ANTHROPIC_", "CLAUDE_"} }
func codexEnv() []string  { return []string{"OPENAI_", "CODEX_"} }

// noArgs: ACP agents take nothing per run on their command line; the prompt
// goes through the protocol.
func noArgs(invocation) ([]string, bool) { return nil, false }

// cursorArgs: agent -p --output-format stream-json --force --trust
// [--model=M] [--resume=ID] -- PROMPT. Cursor's CLI takes its prompt as an
// argument; after "--" it can never be read as an option. --force lets it
// edit files and run commands without asking, which print mode cannot;
// --trust trusts the workspace, which headless runs need.
func cursorArgs(inv invocation) ([]string, bool) {
	args := []string{"-p", "--output-format", "stream-json", "--force", "--trust"}
	if inv.model != "" {
		args = append(args, "--model="+inv.model)
	}
	if inv.resume != "" {
		args = append(args, "--resume="+inv.resume)
	}
	return append(args, "--", inv.prompt), false
}

// claudeArgs: claude -p --output-format stream-json --verbose
// --permission-mode acceptEdits --allowedTools Bash [--model=M]
// [--resume=ID], prompt on stdin. acceptEdits lets it edit files, and the
// Bash rule lets it run commands, without a prompt nobody would answer.
func claudeArgs(inv invocation) ([]string, bool) {
	args := []string{"-p", "--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits", "--allowedTools", "Bash"}
	if inv.model != "" {
		args = append(args, "--model="+inv.model)
	}
	if inv.resume != "" {
		args = append(args, "--resume="+inv.resume)
	}
	return args, true
}

// codexArgs: codex exec --json --sandbox workspace-write [--model=M]
// [resume ID] -, prompt on stdin ("-"). The workspace-write sandbox lets it
// edit the workspace and run commands there without asking (exec never
// asks); codex 0.147 and later refuse the old --full-auto. exec's options
// come before "resume", which takes none of them.
func codexArgs(inv invocation) ([]string, bool) {
	args := []string{"exec", "--json", "--sandbox", "workspace-write"}
	if inv.model != "" {
		args = append(args, "--model="+inv.model)
	}
	if inv.resume != "" {
		args = append(args, "resume", inv.resume)
	}
	return append(args, "-"), true
}

// plainToken reports whether s is 1..max characters of letters, digits and
// extra, starting with a letter or digit. Ids that came from an agent's output
// go back on its command line, so they must not look like an option or hold
// anything but a plain token. (A loop, not a regexp: a bounded repetition
// compiles into hundreds of states at every start of the binary.)
func plainToken(s string, max int, extra string) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i, r := range s {
		alnum := r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		if !alnum && (i == 0 || !strings.ContainsRune(extra, r)) {
			return false
		}
	}
	return true
}

// agentName is the agent a session runs: its modelParams.agent (snapshotted
// with the session) or the runtime's default.
func (r *Runtime) agentName(s core.Session) (string, error) {
	v, ok := s.ModelParams["agent"]
	if !ok || v == nil || v == "" {
		return r.agent, nil
	}
	name, ok := v.(string)
	if _, known := adapterFor(name); !ok || !known {
		return "", fmt.Errorf("modelParams.agent %v is not a local agent; use one of %s", v, strings.Join(AvailableAgents(), ", "))
	}
	return name, nil
}

// resolvedAgent is an agent ready to start: its adapter and argv[0] (or, for
// exec, the whole configured command).
type resolvedAgent struct {
	adapter
	argv []string
}

// resolveAgent finds the agent's executable: FLAPJACK_LOCAL_AGENT_BIN for the
// default agent, else its name on the search path. The error says what to do.
func (r *Runtime) resolveAgent(name string) (resolvedAgent, error) {
	ad, ok := adapterFor(name)
	if !ok {
		return resolvedAgent{}, fmt.Errorf("unknown local agent %q; available: %s", name, strings.Join(AvailableAgents(), ", "))
	}
	if name == AgentExec || name == AgentACP {
		if len(r.command) == 0 {
			return resolvedAgent{}, errors.New(errNoCommand)
		}
		return resolvedAgent{adapter: ad, argv: r.command}, nil
	}
	if name == r.agent && r.bin != "" {
		if err := checkExecutable(r.bin); err != nil {
			return resolvedAgent{}, fmt.Errorf("FLAPJACK_LOCAL_AGENT_BIN=%s: %v", r.bin, err)
		}
		return resolvedAgent{adapter: ad, argv: append([]string{r.bin}, ad.preset...)}, nil
	}
	path := r.searchPath
	if path == "" {
		path = os.Getenv("PATH")
	}
	var exe string
	var err error
	for _, name := range append([]string{ad.exe}, ad.altExe...) {
		if exe, err = lookPath(name, path); err == nil {
			break
		}
	}
	if err != nil {
		return resolvedAgent{}, fmt.Errorf("%s not found on PATH; %s", strings.Join(append([]string{ad.exe}, ad.altExe...), " or "), installHint(name))
	}
	return resolvedAgent{adapter: ad, argv: append([]string{exe}, ad.preset...)}, nil
}

// installHint says how to get an agent's CLI.
func installHint(name string) string {
	switch name {
	case AgentCursor, AgentCursorACP:
		return "install Cursor's CLI (curl https://cursor.com/install -fsS | bash)"
	case AgentClaude:
		return "install Claude Code (npm install -g @anthropic-ai/claude-code)"
	case AgentCodex:
		return "install Codex (npm install -g @openai/codex)"
	case AgentGemini:
		return "install Gemini CLI (npm install -g @google/gemini-cli)"
	case AgentClaudeACP:
		return "install Zed's Claude Code adapter (npm install -g @zed-industries/claude-code-acp)"
	case AgentCodexACP:
		return "install Zed's Codex adapter (npm install -g @zed-industries/codex-acp)"
	}
	return "install it, or set FLAPJACK_LOCAL_AGENT_BIN"
}

// lookPath finds an executable file called name in the directories of path,
// as a shell would, without consulting the process environment.
func lookPath(name, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue // the current directory is never searched
		}
		for _, file := range platform.ExecutableNames(name) {
			p := filepath.Join(dir, file)
			if checkExecutable(p) == nil {
				return filepath.Abs(p)
			}
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// checkExecutable fails unless p is a regular file someone may execute.
func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return errors.New("no such file")
	}
	if !platform.IsExecutable(fi) {
		return errors.New("not an executable file")
	}
	return nil
}

// command builds the command line of one run: model unless "auto", the
// CLI's conversation id on follow-ups when one was recorded for this agent.
func (ra resolvedAgent) command(spec core.RunSpec, st sessionState) (argv []string, stdin string, err error) {
	inv := invocation{prompt: spec.Prompt}
	if m := spec.Session.ModelID; m != "" && m != core.DefaultModelID {
		inv.model = m
	}
	if spec.FollowUp && st.Agent == ra.name && plainToken(st.CLISession, 200, "._:-") {
		inv.resume = st.CLISession
	}
	args, onStdin := ra.args(inv)
	argv = append(append([]string(nil), ra.argv...), args...)
	if onStdin {
		return argv, spec.Prompt, nil
	}
	if len(spec.Prompt) > maxArgPrompt {
		return nil, "", fmt.Errorf("the prompt is %d bytes; %s takes it on its command line, where Linux allows at most 128 KiB", len(spec.Prompt), ra.name)
	}
	if strings.ContainsRune(spec.Prompt, 0) {
		argv[len(argv)-1] = strings.ReplaceAll(spec.Prompt, "\x00", "")
	}
	return argv, "", nil
}
