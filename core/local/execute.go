package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/platform"
)

// AdoptedError is the outcome of a run whose agent died with its runner.
const AdoptedError = "the runner stopped while the agent was running; send a follow-up to continue"

// drainTimeout bounds the wait for output after the agent's group was killed;
// only a process that left the group can still hold the pipes.
const drainTimeout = 2 * time.Second

// maxEnvPrompt keeps FLAPJACK_PROMPT under Linux's 128 KiB limit for one
// environment string; the whole prompt is always on stdin.
const maxEnvPrompt = 128<<10 - len("FLAPJACK_PROMPT=") - 1

// Outcome limits.
const (
	stderrTailLines = 5
	stderrTailBytes = 2000
)

// Execute runs the agent for one message in the session's workspace, maps its
// output to events, commits whatever it changed (also when it failed or was
// cancelled, so work is never stranded), then pushes the session branch and
// opens or updates its pull request.
func (r *Runtime) Execute(ctx context.Context, spec core.RunSpec, sink core.RunSink) (core.RunOutcome, error) {
	ws, err := r.workspace(spec.Session.ID)
	if err != nil {
		return core.RunOutcome{}, err
	}
	exists, err := workspaceExists(ws)
	if err != nil {
		return core.RunOutcome{}, fmt.Errorf("workspace of session %s: %w", spec.Session.ID, err)
	}
	em := &emitter{sink: sink, clock: r.clock, messageID: spec.Message.ID, runID: spec.RunID,
		secrets: core.NewRedactor(spec.CursorAPIKey, r.github.token)}
	var rs *runState
	if exists {
		if rs, err = openState(ws); err != nil {
			return core.RunOutcome{}, fmt.Errorf("workspace of session %s: %w", spec.Session.ID, err)
		}
	}
	if spec.Adopted {
		r.stopAdopted(ctx, spec, ws)
		out := core.RunOutcome{Status: core.MessageError, Error: AdoptedError}
		if exists {
			// Keep, and publish, what the dead agent wrote.
			if before, err := r.head(ctx, ws); err == nil {
				_ = r.commitRun(ctx, spec, ws, before, em)
				r.publish(ctx, spec, ws, rs, em, &out)
			}
		}
		return out, nil
	}
	if !exists {
		return core.RunOutcome{}, fmt.Errorf("workspace of session %s is missing", spec.Session.ID)
	}
	name, err := r.agentName(spec.Session)
	if err != nil {
		return core.RunOutcome{Status: core.MessageError, Error: err.Error()}, nil
	}
	agent, err := r.resolveAgent(name)
	if err != nil {
		return core.RunOutcome{Status: core.MessageError, Error: err.Error()}, nil
	}
	r.agentEvent(ctx, em, agent)
	argv, stdin, err := agent.command(spec, rs.get())
	if err != nil {
		return core.RunOutcome{Status: core.MessageError, Error: err.Error()}, nil
	}
	if ctx.Err() != nil {
		return core.RunOutcome{Status: core.MessageError, Error: "cancelled"}, nil
	}
	before, err := r.head(ctx, ws)
	if err != nil {
		return core.RunOutcome{}, fmt.Errorf("workspace of session %s: %w", spec.Session.ID, err)
	}
	em.mapper = agent.mapper(ws)
	em.onSession = func(id string) {
		// Recorded at once, so a follow-up resumes the conversation even if
		// this runner dies before the run ends.
		if err := rs.update(func(st *sessionState) { st.Agent, st.CLISession = agent.name, id }); err != nil {
			r.log.WarnContext(ctx, "recording the agent's conversation id failed", "session", spec.Session.ID, "err", err)
		}
	}
	talk := streamTalk(stdin, em)
	var acpRun *acpRun
	if agent.acp {
		resume := ""
		if spec.FollowUp && rs.get().Agent == agent.name {
			resume = rs.get().CLISession
		}
		policy, err := r.permissionsOf(spec.Session)
		if err != nil {
			return core.RunOutcome{Status: core.MessageError, Error: err.Error()}, nil
		}
		acpRun = newACPRun(r, spec, ws, em, agent.name, policy, resume)
		em.onStderr = acpRun.stderrLine
		talk = agentTalk{run: acpRun.talk, interrupt: acpRun.interrupt, ends: true}
	}
	res, err := r.runAgent(ctx, spec, ws, argv, agentEnv(spec, ws, agent.adapter, r.agentEnv), talk, em, sink)
	commitErr := r.commitRun(ctx, spec, ws, before, em)
	if err != nil {
		return core.RunOutcome{}, err
	}
	var out core.RunOutcome
	if acpRun != nil {
		out = acpRun.outcome(res)
	} else {
		out = em.outcome(res, agent.judge)
	}
	if commitErr != nil && out.Status == core.MessageFinished {
		out.Status = core.MessageError
		out.Error = "the agent finished but its changes could not be committed: " + commitErr.Error()
	}
	r.publish(ctx, spec, ws, rs, em, &out)
	return out, nil
}

// stopAdopted kills what is left of a run whose runner died, if its handle
// still names processes of this session.
func (r *Runtime) stopAdopted(ctx context.Context, spec core.RunSpec, ws string) {
	h, ok := parseHandle(spec.Session.RunHandle)
	if !ok || !platform.SafeGroup(h.PID) || !platform.GroupAlive(h.PID) {
		// The runner may have died after starting the agent but before
		// recording its group: find the group by the session's marker.
		if h = (platform.Proc{PID: markedGroup(spec.Session.ID)}); h.PID == 0 {
			return
		}
	}
	if ownsGroup(h, spec.Session.ID, ws) {
		pgid := h.PID
		r.log.InfoContext(ctx, "stopping the agent of a dead runner", "session", spec.Session.ID, "pgid", pgid)
		_ = r.stopGroup(ctx, pgid, func() bool { return !platform.GroupAlive(pgid) })
	}
}

// agentResult is how the agent process ended.
type agentResult struct {
	startErr  error
	state     *os.ProcessState
	cancelled bool
	elapsed   time.Duration
}

// agentTalk is how flapjack talks to a started agent over its stdio.
type agentTalk struct {
	// run talks until the agent's output ends (or, with ends, until the
	// conversation is over); it closes stdin when it has nothing more to say.
	run func(stdin io.WriteCloser, stdout io.Reader)
	// interrupt, if set, asks the agent to stop on its own before it is
	// signalled (ACP's session/cancel); it reports whether it could ask.
	interrupt func() bool
	// ends means the conversation can be over while the agent still runs
	// (an ACP agent serves until its stdin closes): it is then given the
	// kill grace to exit, and stopped.
	ends bool
}

// streamTalk writes the prompt (and closes stdin, so the agent never waits
// for input) and maps each line the agent prints.
func streamTalk(prompt string, em *emitter) agentTalk {
	return agentTalk{run: func(stdin io.WriteCloser, stdout io.Reader) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = io.WriteString(stdin, prompt) // fails harmlessly if the agent never reads
			_ = stdin.Close()
		}()
		_ = readLines(stdout, em.stdoutLine)
		<-done
	}}
}

// runAgent starts the agent in its own session and process group, talks to
// it, reads its output until it exits and the pipes are drained, and stops
// the whole group when ctx ends. An error means the run could not be
// tracked (its handle not recorded); the agent is stopped then.
func (r *Runtime) runAgent(ctx context.Context, spec core.RunSpec, ws string, argv, env []string, talk agentTalk, em *emitter, sink core.RunSink) (agentResult, error) {
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			_ = f.Close()
		}
	}
	pipe := func() (*os.File, *os.File, error) {
		pr, pw, err := os.Pipe()
		if err == nil {
			files = append(files, pr, pw)
		}
		return pr, pw, err
	}
	stdinR, stdinW, err1 := pipe()
	outR, outW, err2 := pipe()
	errR, errW, err3 := pipe()
	if err := errors.Join(err1, err2, err3); err != nil {
		closeAll()
		return agentResult{}, fmt.Errorf("create pipes: %w", err)
	}
	defer closeAll()

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = ws
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, outW, errW
	// A new process group (pgid = pid) that Cancel can stop as a whole.
	platform.NewGroup(cmd)
	start := time.Now()
	err := cmd.Start()
	_, _, _ = stdinR.Close(), outW.Close(), errW.Close()
	if err != nil {
		return agentResult{startErr: err}, nil
	}
	pgid := cmd.Process.Pid
	r.log.InfoContext(ctx, "agent started", "session", spec.Session.ID, "message", spec.Message.ID, "pgid", pgid)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	talked := make(chan struct{})
	go func() { defer wg.Done(); defer close(talked); talk.run(stdinW, outR) }()
	go func() { defer wg.Done(); _ = readLines(errR, em.stderrLine) }()
	var handleErr error
	// The handle names the leader with its start time, so no later process
	// that reuses the pid is ever taken for the agent.
	leader, ok := platform.Identify(pgid)
	if !ok {
		leader = platform.Proc{PID: pgid}
	}
	if err := sink.SetHandle(ctx, leader.String()); err != nil {
		// Nobody could cancel an untracked run: stop it. A cancelled ctx
		// fails SetHandle too, and is just a cancellation.
		if ctx.Err() == nil {
			handleErr = fmt.Errorf("record the agent's process group: %w", err)
		}
		stop()
	}

	exited := make(chan struct{})
	watched := make(chan struct{})
	var signalled atomic.Bool
	go func() {
		defer close(watched)
		var over <-chan struct{}
		if talk.ends {
			over = talked
		}
		select {
		case <-exited:
			return
		case <-runCtx.Done():
			// Ask first, where the agent can be asked, then signal.
			if talk.interrupt != nil && talk.interrupt() {
				select {
				case <-exited:
					return
				case <-talked:
				case <-time.After(r.killGrace):
				}
			}
		case <-over:
			// The conversation is over: the agent has the grace to exit.
			select {
			case <-exited:
				return
			case <-time.After(r.killGrace):
			}
			_ = platform.StopGroup(pgid, false)
			select {
			case <-exited:
			case <-time.After(r.killGrace):
				_ = platform.StopGroup(pgid, true)
			}
			return
		}
		signalled.Store(true)
		_ = platform.StopGroup(pgid, false)
		t := time.NewTimer(r.killGrace)
		defer t.Stop()
		select {
		case <-exited:
		case <-t.C:
			_ = platform.StopGroup(pgid, true)
		}
	}()

	_ = cmd.Wait() // the exit status is in cmd.ProcessState
	elapsed := time.Since(start)
	close(exited)
	<-watched
	// The run is over: whatever the agent left behind in its group goes too,
	// and so lets go of the pipes.
	_ = platform.StopGroup(pgid, true)

	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainTimeout):
		r.log.WarnContext(ctx, "a process outside the agent's group holds its output; closing", "session", spec.Session.ID)
		closeAll()
		<-drained
	}
	r.log.InfoContext(ctx, "agent exited", "session", spec.Session.ID, "message", spec.Message.ID, "state", cmd.ProcessState.String(), "elapsed", elapsed)
	res := agentResult{state: cmd.ProcessState, cancelled: signalled.Load() && ctx.Err() != nil, elapsed: elapsed}
	return res, handleErr
}

// agentEnv is the agent's environment: the runner's variables its policy
// allows (base, git, its CLI's own families, FLAPJACK_AGENT_ENV; never a
// flapjack setting or the runner's Cursor key), plus the run's variables.
// Only agents that use it get the session's Cursor key; claude and codex use
// the credentials they find (ANTHROPIC_API_KEY, OPENAI_API_KEY, their own
// login). FLAPJACK_SESSION_ID marks every process of the run, so a later
// runner can tell them apart from others.
func agentEnv(spec core.RunSpec, ws string, ad adapter, extra []string) []string {
	out := agentPolicy(ad, extra).filter(os.Environ())
	if spec.CursorAPIKey != "" && ad.cursorKey {
		out = append(out, "CURSOR_API_KEY="+envValue(spec.CursorAPIKey))
	}
	out = append(out,
		"PWD="+ws,
		"GIT_TERMINAL_PROMPT=0",
		sessionEnv+"="+spec.Session.ID,
		"FLAPJACK_MESSAGE_ID="+envValue(spec.Message.ID),
		"FLAPJACK_MODEL="+envValue(spec.Session.ModelID),
	)
	if ad.promptEnv {
		prompt := envValue(spec.Prompt)
		if len(prompt) > maxEnvPrompt {
			prompt = truncateRunes(prompt, maxEnvPrompt)
		}
		out = append(out, "FLAPJACK_PROMPT="+prompt)
		// The message alone, without the template's preamble.
		user := envValue(spec.Message.Prompt)
		if len(user) > maxEnvPrompt {
			user = truncateRunes(user, maxEnvPrompt)
		}
		out = append(out, "FLAPJACK_USER_PROMPT="+user)
	}
	return out
}

// envValue drops NUL bytes, which an environment string cannot hold.
func envValue(s string) string { return strings.ReplaceAll(s, "\x00", "") }

// commitRun commits the workspace after a run and, if HEAD moved since the run
// began (the agent may commit too), logs a file_edit event. It runs on its own
// deadline so that a cancelled run still keeps its work.
func (r *Runtime) commitRun(ctx context.Context, spec core.RunSpec, ws, before string, em *emitter) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if _, err := r.commitAll(ctx, ws, spec); err != nil {
		r.log.WarnContext(ctx, "commit failed", "session", spec.Session.ID, "err", err)
		return err
	}
	after, err := r.head(ctx, ws)
	if err != nil || after == before {
		return err
	}
	files, err := r.changes(ctx, ws, before, after)
	if err != nil {
		return err
	}
	branch := r.currentBranch(ctx, ws)
	if st, err := openState(ws); err == nil && st.get().PushBranch != "" {
		branch = st.get().PushBranch // where the work goes (the starting branch with workOnCurrentBranch)
	}
	em.mu.Lock()
	em.committed = append(em.committed, files...)
	em.mu.Unlock()
	em.emit(core.EventFileEdit, fileEdit{Commit: after, Branch: branch, Files: files})
	return nil
}

// outcome turns how the agent ended into the run's outcome. judge fails a run
// that exited 0 while its own result says it failed (claude's
// error_max_turns, codex's turn.failed).
func (e *emitter) outcome(res agentResult, judge bool) core.RunOutcome {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := core.RunOutcome{ResultText: e.lastAssistant, DurationMS: res.elapsed.Milliseconds(), Usage: reportedUsage(e.result)}
	if e.result != nil {
		if e.result.Text != "" {
			out.ResultText = e.result.Text
		}
		if e.result.DurationMS > 0 {
			out.DurationMS = e.result.DurationMS
		}
	}
	reported := e.reportedFailure()
	switch {
	case res.startErr != nil:
		out.Status = core.MessageError
		out.Error = e.redact("could not start the agent: " + res.startErr.Error())
	case res.cancelled:
		out.Status = core.MessageError
		out.Error = "cancelled"
	case res.state != nil && res.state.Success() && (!judge || reported == ""):
		out.Status = core.MessageFinished
	case res.state != nil && res.state.Success():
		out.Status = core.MessageError
		out.Error = "the agent reported a failure: " + reported
	default:
		out.Status = core.MessageError
		out.Error = exitText(res.state)
		detail := reported
		if detail == "" {
			detail = e.stderrTail()
		}
		if detail != "" {
			out.Error += ":\n" + detail
		}
	}
	return out
}

// reportedFailure is why the agent's own output says the run failed: a fatal
// error event, or an error result. e.mu is held.
func (e *emitter) reportedFailure() string {
	if e.agentErr != "" {
		return e.agentErr
	}
	if e.result != nil && e.result.IsError {
		msg := e.result.Subtype
		if msg == "success" {
			msg = "" // claude reports an invalid key as a "success" that is an error
		}
		if e.result.Text != "" {
			if msg != "" {
				msg += ": "
			}
			msg += e.result.Text
		}
		if msg == "" {
			msg = "error result"
		}
		return truncateRunes(msg, stderrTailBytes)
	}
	return ""
}

// exitText says how the agent process ended.
func exitText(st *os.ProcessState) string {
	if st == nil {
		return "agent did not run"
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "agent was killed by signal " + strconv.Itoa(int(ws.Signal())) + " (" + ws.Signal().String() + ")"
	}
	return "agent exited with status " + strconv.Itoa(st.ExitCode())
}

// emitter writes a run's events in order and remembers what the outcome
// needs. Both output readers call it, so it serializes them.
type emitter struct {
	sink      core.RunSink
	clock     core.Clock
	messageID string
	runID     string
	// secrets never reach an event (the session's Cursor key, the GitHub token).
	secrets *core.Redactor
	// mapper reads stdout; nil reads it as the exec agent's.
	mapper lineMapper
	// onSession is told the CLI's conversation id whenever a new one shows up.
	onSession func(id string)
	// onStderr, if set, sees every stderr line (redacted) as it comes.
	onStderr func(line string)

	mu            sync.Mutex
	lastAssistant string
	result        *resultPayload
	agentErr      string       // the last fatal error the agent reported
	stderr        []string     // the last stderrTailLines non-blank lines
	session       string       // the conversation id last passed to onSession
	committed     []fileChange // what this run's commit changed
}

// redact hides the run's secrets should the agent print them.
func (e *emitter) redact(s string) string { return e.secrets.String(s) }

func (e *emitter) stdoutLine(line string) {
	line = e.redact(line)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mapper == nil {
		e.mapper = execMapper{}
	}
	evs := e.mapper.line(line)
	if id := e.mapper.session(); id != "" && id != e.session {
		e.session = id
		if e.onSession != nil {
			e.onSession(id)
		}
	}
	for _, ev := range evs {
		switch p := ev.payload.(type) {
		case textPayload:
			if ev.typ == core.EventAssistant {
				e.lastAssistant = p.Text
			}
		case resultPayload:
			e.result = &p
			if !p.IsError {
				e.agentErr = "" // an error it recovered from (codex's reconnects)
			}
		case errorPayload:
			if p.failsRun {
				e.agentErr = truncateRunes(p.Message, stderrTailBytes)
			}
		}
		e.emitLocked(ev.typ, ev.payload)
	}
}

func (e *emitter) stderrLine(line string) {
	line = e.redact(line)
	if e.onStderr != nil {
		e.onStderr(line)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if t := strings.TrimSpace(line); t != "" {
		e.stderr = append(e.stderr, t)
		if len(e.stderr) > stderrTailLines {
			e.stderr = e.stderr[1:]
		}
	}
	e.emitLocked(core.EventStderr, linePayload{Line: line})
}

// stderrTail is the last stderr lines, at most stderrTailBytes, keeping the end.
func (e *emitter) stderrTail() string {
	tail := strings.Join(e.stderr, "\n")
	if len(tail) <= stderrTailBytes {
		return tail
	}
	cut := len(tail) - stderrTailBytes
	for cut < len(tail) && !utf8.RuneStart(tail[cut]) {
		cut++
	}
	return tail[cut:]
}

func (e *emitter) emit(typ core.EventType, payload any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.emitLocked(typ, payload)
}

func (e *emitter) emitLocked(typ core.EventType, payload any) {
	if p, ok := payload.(toolCallPayload); ok {
		p.Tool, p.Path = p.Name, core.ToolPath(p.Args)
		payload = p
	}
	b, err := json.Marshal(payload)
	if err != nil {
		b, _ = json.Marshal(linePayload{Line: "flapjack: unencodable event: " + err.Error()})
		typ = core.EventStdout
	}
	b = []byte(e.redact(string(b)))
	e.sink.Emit(core.EventInput{MessageID: e.messageID, CursorRunID: e.runID, Type: typ, Payload: b, CreatedAt: e.clock.Now()})
}
