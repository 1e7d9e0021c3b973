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
// output to events, and commits whatever it changed, also when it failed or
// was cancelled, so work is never stranded.
func (r *Runtime) Execute(ctx context.Context, spec core.RunSpec, sink core.RunSink) (core.RunOutcome, error) {
	ws, err := r.workspace(spec.Session.ID)
	if err != nil {
		return core.RunOutcome{}, err
	}
	exists, err := workspaceExists(ws)
	if err != nil {
		return core.RunOutcome{}, fmt.Errorf("workspace of session %s: %w", spec.Session.ID, err)
	}
	em := &emitter{sink: sink, clock: r.clock, messageID: spec.Message.ID, runID: spec.RunID, secret: spec.CursorAPIKey}
	if spec.Adopted {
		r.stopAdopted(ctx, spec, ws)
		if exists {
			// Keep what the dead agent wrote.
			if before, err := r.head(ctx, ws); err == nil {
				_ = r.commitRun(ctx, spec, ws, before, em)
			}
		}
		return core.RunOutcome{Status: core.MessageError, Error: AdoptedError}, nil
	}
	if !exists {
		return core.RunOutcome{}, fmt.Errorf("workspace of session %s is missing", spec.Session.ID)
	}
	if len(r.command) == 0 {
		return core.RunOutcome{Status: core.MessageError, Error: errNoCommand}, nil
	}
	if ctx.Err() != nil {
		return core.RunOutcome{Status: core.MessageError, Error: "cancelled"}, nil
	}
	before, err := r.head(ctx, ws)
	if err != nil {
		return core.RunOutcome{}, fmt.Errorf("workspace of session %s: %w", spec.Session.ID, err)
	}
	res, err := r.runAgent(ctx, spec, ws, em, sink)
	commitErr := r.commitRun(ctx, spec, ws, before, em)
	if err != nil {
		return core.RunOutcome{}, err
	}
	out := em.outcome(res)
	if commitErr != nil && out.Status == core.MessageFinished {
		out.Status = core.MessageError
		out.Error = "the agent finished but its changes could not be committed: " + commitErr.Error()
	}
	return out, nil
}

// stopAdopted kills what is left of a run whose runner died, if its handle
// still names processes of this session.
func (r *Runtime) stopAdopted(ctx context.Context, spec core.RunSpec, ws string) {
	pgid, ok := parseHandle(spec.Session.RunHandle)
	if !ok || !safeGroup(pgid) {
		return
	}
	gone := func() bool { return len(groupMembers(pgid)) == 0 }
	for _, pid := range groupMembers(pgid) {
		if ownedBy(pid, spec.Session.ID, ws) {
			r.log.InfoContext(ctx, "stopping the agent of a dead runner", "session", spec.Session.ID, "pgid", pgid)
			_ = r.stopGroup(ctx, pgid, gone)
			return
		}
	}
}

// agentResult is how the agent process ended.
type agentResult struct {
	startErr  error
	state     *os.ProcessState
	cancelled bool
	elapsed   time.Duration
}

// runAgent starts the agent in its own session and process group, feeds it
// the prompt, reads its output until it exits and the pipes are drained, and
// stops the whole group when ctx ends. An error means the run could not be
// tracked (its handle not recorded); the agent is stopped then.
func (r *Runtime) runAgent(ctx context.Context, spec core.RunSpec, ws string, em *emitter, sink core.RunSink) (agentResult, error) {
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

	cmd := exec.Command(r.command[0], r.command[1:]...)
	cmd.Dir = ws
	cmd.Env = agentEnv(spec, ws)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, outW, errW
	// A new session is also a new process group (pgid = pid) that Cancel can
	// signal as a whole, and it has no controlling terminal, so an agent that
	// opens /dev/tty fails instead of being stopped by SIGTTIN forever.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	start := time.Now()
	err := cmd.Start()
	_, _, _ = stdinR.Close(), outW.Close(), errW.Close()
	if err != nil {
		return agentResult{startErr: err}, nil
	}
	pgid := cmd.Process.Pid
	r.log.InfoContext(ctx, "agent started", "session", spec.Session.ID, "message", spec.Message.ID, "pgid", pgid)

	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = readLines(outR, em.stdoutLine) }()
	go func() { defer wg.Done(); _ = readLines(errR, em.stderrLine) }()
	go func() {
		defer wg.Done()
		_, _ = io.WriteString(stdinW, spec.Prompt) // fails harmlessly if the agent never reads
		_ = stdinW.Close()
	}()

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var handleErr error
	if err := sink.SetHandle(ctx, strconv.Itoa(pgid)); err != nil {
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
		select {
		case <-exited:
			return
		case <-runCtx.Done():
		}
		signalled.Store(true)
		_ = signalGroup(pgid, syscall.SIGTERM)
		t := time.NewTimer(r.killGrace)
		defer t.Stop()
		select {
		case <-exited:
		case <-t.C:
			_ = signalGroup(pgid, syscall.SIGKILL)
		}
	}()

	_ = cmd.Wait() // the exit status is in cmd.ProcessState
	elapsed := time.Since(start)
	close(exited)
	<-watched
	// The run is over: whatever the agent left behind in its group goes too,
	// and so lets go of the pipes.
	_ = signalGroup(pgid, syscall.SIGKILL)

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

// agentEnv is the runner's environment without any key or flapjack setting
// of its own (the master key must never reach an agent, and a session without
// a key must not borrow the runner's), plus the run's variables.
func agentEnv(spec core.RunSpec, ws string) []string {
	env := baseEnv()
	out := env[:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == "CURSOR_API_KEY" || k == "GIT_TERMINAL_PROMPT" || k == "PWD" || strings.HasPrefix(k, "FLAPJACK_") {
			continue
		}
		out = append(out, kv)
	}
	if spec.CursorAPIKey != "" {
		out = append(out, "CURSOR_API_KEY="+envValue(spec.CursorAPIKey))
	}
	prompt := envValue(spec.Prompt)
	if len(prompt) > maxEnvPrompt {
		prompt = truncateRunes(prompt, maxEnvPrompt)
	}
	return append(out,
		"PWD="+ws,
		"GIT_TERMINAL_PROMPT=0",
		sessionEnv+"="+spec.Session.ID,
		"FLAPJACK_MESSAGE_ID="+envValue(spec.Message.ID),
		"FLAPJACK_MODEL="+envValue(spec.Session.ModelID),
		"FLAPJACK_PROMPT="+prompt,
	)
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
	em.emit(core.EventFileEdit, fileEdit{Commit: after, Branch: r.currentBranch(ctx, ws), Files: files})
	return nil
}

// outcome turns how the agent ended into the run's outcome.
func (e *emitter) outcome(res agentResult) core.RunOutcome {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := core.RunOutcome{ResultText: e.lastAssistant, DurationMS: res.elapsed.Milliseconds()}
	if e.result != nil {
		if e.result.Text != "" {
			out.ResultText = e.result.Text
		}
		if e.result.DurationMS > 0 {
			out.DurationMS = e.result.DurationMS
		}
	}
	switch {
	case res.startErr != nil:
		out.Status = core.MessageError
		out.Error = e.redact("could not start the agent: " + res.startErr.Error())
	case res.cancelled:
		out.Status = core.MessageError
		out.Error = "cancelled"
	case res.state != nil && res.state.Success():
		out.Status = core.MessageFinished
	default:
		out.Status = core.MessageError
		out.Error = exitText(res.state)
		if tail := e.stderrTail(); tail != "" {
			out.Error += ":\n" + tail
		}
	}
	return out
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
	secret    string

	mu            sync.Mutex
	lastAssistant string
	result        *resultPayload
	stderr        []string // the last stderrTailLines non-blank lines
}

// redact hides the session's Cursor key should the agent print it.
func (e *emitter) redact(s string) string {
	if len(e.secret) < 8 {
		return s
	}
	return strings.ReplaceAll(s, e.secret, "[REDACTED]")
}

func (e *emitter) stdoutLine(line string) {
	ev := mapStdout(e.redact(line))
	if ev.payload == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch p := ev.payload.(type) {
	case textPayload:
		if ev.typ == core.EventAssistant {
			e.lastAssistant = p.Text
		}
	case resultPayload:
		e.result = &p
	}
	e.emitLocked(ev.typ, ev.payload)
}

func (e *emitter) stderrLine(line string) {
	line = e.redact(line)
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
	b, err := json.Marshal(payload)
	if err != nil {
		b, _ = json.Marshal(linePayload{Line: "flapjack: unencodable event: " + err.Error()})
		typ = core.EventStdout
	}
	e.sink.Emit(core.EventInput{MessageID: e.messageID, CursorRunID: e.runID, Type: typ, Payload: b, CreatedAt: e.clock.Now()})
}
