package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flapjack-dev/flapjack/core"
)

// promptFlags read a prompt from --prompt or --prompt-file ("-" for stdin).
type promptFlags struct{ text, file string }

func (f *promptFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.text, "prompt", "", "the prompt")
	cmd.Flags().StringVar(&f.file, "prompt-file", "", `read the prompt from this file ("-" for stdin)`)
}

func (f *promptFlags) read(stdin io.Reader) (string, error) {
	switch {
	case f.text != "" && f.file != "":
		return "", usageError{errors.New("give --prompt or --prompt-file, not both")}
	case f.text != "":
		return f.text, nil
	case f.file == "-":
		b, err := io.ReadAll(io.LimitReader(stdin, 4<<20))
		return string(b), err
	case f.file != "":
		b, err := os.ReadFile(f.file)
		if err != nil {
			return "", usageError{fmt.Errorf("--prompt-file: %w", err)}
		}
		return string(b), nil
	}
	return "", usageError{errors.New("a prompt is required: --prompt TEXT or --prompt-file FILE")}
}

// waitFlags control --wait, --follow and interrupts.
type waitFlags struct{ wait, follow, cancelOnInterrupt bool }

func (f *waitFlags) bind(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.wait, "wait", false, "block until the session ends; exit 0 finished, 1 error, 3 cancelled or expired")
	cmd.Flags().BoolVar(&f.follow, "follow", false, "print events as they arrive (implies --wait)")
	cmd.Flags().BoolVar(&f.cancelOnInterrupt, "cancel-on-interrupt", false, "cancel the session on Ctrl-C instead of leaving it running")
}

func (f *waitFlags) check(p *printer) error {
	if f.follow && p.format == formatJSON {
		return usageError{errors.New("--follow streams events: use -o jsonl or -o text")}
	}
	return nil
}

// await waits for a session after start or send, following its events from
// since, and prints the final session. It turns the outcome into the exit status.
func await(ctx context.Context, g *globals, a api, p *printer, f waitFlags, id string, since int64) error {
	spin := startSpinner(g.stderr, isTerminal(g.stderr), id)
	fl := &follower{api: a, p: p, spin: spin, stderr: g.stderr, id: id, since: since, print: f.follow, retries: 2 * time.Minute}
	sess, err := fl.run(ctx)
	spin.end()
	if err != nil {
		if ctx.Err() != nil {
			return interrupted(g, a, f, id, fl.since)
		}
		return err
	}
	if err := p.value(sess, func(w io.Writer) { sessionText(w, sess) }); err != nil {
		return err
	}
	if code := exitForStatus(sess.Status); code != 0 {
		return exitError{code: code, msg: fmt.Sprintf("session %s ended %s", id, sess.Status)}
	}
	return nil
}

// interrupted handles Ctrl-C while waiting: the session keeps running (and the
// user learns how to reattach), or is cancelled with --cancel-on-interrupt.
func interrupted(g *globals, a api, f waitFlags, id string, since int64) error {
	if f.cancelOnInterrupt {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := a.Cancel(ctx, id); err != nil && core.ErrorCode(err) != core.CodeSessionNotActive {
			return fmt.Errorf("interrupted; cancelling session %s failed: %w", id, err)
		}
		return exitError{code: exitStopped, msg: fmt.Sprintf("interrupted; session %s cancelled", id)}
	}
	return exitError{code: exitInterrupted, msg: fmt.Sprintf(
		"interrupted; session %s keeps running. Reattach with:\n  flapjack sessions events %s --follow --since %d", id, id, since)}
}

func newSessionsCmd(g *globals) *cobra.Command {
	o := &cliOpts{}
	cmd := &cobra.Command{
		Use:     "sessions",
		Aliases: []string{"session"},
		Short:   "Start, follow and manage code sessions",
		Example: "  flapjack sessions start --agent ca-... --prompt 'Fix the login bug' --wait --follow",
		Args:    usageArgs(cobra.NoArgs),
	}
	addAPIFlags(cmd, o)
	cmd.AddCommand(sessionsList(g, o), sessionsGet(g, o), sessionsStart(g, o), sessionsSend(g, o),
		sessionsEvents(g, o), sessionsCancel(g, o), sessionsArchive(g, o), sessionsUpdate(g, o))
	return cmd
}

func sessionsList(g *globals, o *cliOpts) *cobra.Command {
	var in core.ListSessionsInput
	var archived string
	var pages pageFlags
	c := &cobra.Command{
		Use:     "list",
		Short:   "List sessions, newest first (50 unless --limit or --all)",
		Example: "  flapjack sessions list --status running\n  flapjack sessions list --agent ca-... --all -o jsonl",
		Args:    usageArgs(cobra.NoArgs),
	}
	c.Flags().StringVar(&in.CodeAgentID, "agent", "", "only sessions of this code agent")
	c.Flags().StringVar(&in.Status, "status", "", "only sessions in this status")
	c.Flags().StringVar(&archived, "archived", "", `"true" or "false": filter by the archived flag`)
	c.Flags().StringVar(&in.OrgID, "org", "", "target org (multi-org only)")
	pages.add(c)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if err := pages.check(cmd); err != nil {
			return err
		}
		if archived != "" {
			b, err := strconv.ParseBool(archived)
			if err != nil || (archived != "true" && archived != "false") {
				return usageError{fmt.Errorf("--archived %q: want true or false", archived)}
			}
			in.Archived = &b
		}
		return withAPI(g, o, func(ctx context.Context, a api, p *printer) error {
			sessions, err := collect(ctx, &pages, cmd, func(limit *int, cursor string) ([]core.Session, string, error) {
				in.Limit, in.Cursor = limit, cursor
				page, err := a.ListSessions(ctx, in)
				return page.Sessions, page.NextCursor, err
			})
			if err != nil {
				return err
			}
			return list(p, sessions, func(w io.Writer) { sessionsTable(w, sessions) })
		})(cmd, args)
	}
	return c
}

func sessionsGet(g *globals, o *cliOpts) *cobra.Command {
	c := &cobra.Command{
		Use:     "get ID",
		Short:   "Show a session with its messages",
		Example: "  flapjack sessions get cs-...\n  flapjack sessions get cs-... -o json | jq -r .pr_url",
		Args:    usageArgs(cobra.ExactArgs(1)),
	}
	c.RunE = func(cmd *cobra.Command, args []string) error {
		return withAPI(g, o, func(ctx context.Context, a api, p *printer) error {
			s, err := a.GetSession(ctx, args[0])
			if err != nil {
				return err
			}
			return p.value(s, func(w io.Writer) { sessionText(w, s) })
		})(cmd, args)
	}
	return c
}

func sessionsStart(g *globals, o *cliOpts) *cobra.Command {
	var (
		in            core.StartSessionInput
		pf            promptFlags
		wf            waitFlags
		repo, ref     string
		model, hook   string
		autoPR        bool
		currentBranch bool
		skipReviewers bool
	)
	c := &cobra.Command{
		Use:   "start",
		Short: "Start a session from a code agent",
		Long: `Start a session from a code agent. Without --wait it prints the new session and
message ids at once; with --wait it blocks until the session ends, prints the final
session, and exits 0 for finished, 1 for error, 3 for cancelled or expired.
The Cursor API key comes from CURSOR_API_KEY in the environment.`,
		Example: "  flapjack sessions start --agent ca-... --prompt 'Fix the login bug' --wait --follow -o jsonl | jq .\n" +
			"  git diff | flapjack sessions start --agent ca-... --prompt-file - --wait",
		Args: usageArgs(cobra.NoArgs),
	}
	fl := c.Flags()
	fl.StringVar(&in.CodeAgentID, "agent", "", "code agent (template) to run (required)")
	pf.bind(c)
	fl.StringVar(&repo, "repo-url", "", "repository URL (default: the agent's)")
	fl.StringVar(&ref, "starting-ref", "", "branch or tag to start from (default: the agent's)")
	fl.StringVar(&model, "model", "", "model id (default: the agent's)")
	fl.StringVar(&hook, "webhook-url", "", "https URL for status webhooks")
	fl.StringVar(&in.OrgID, "org", "", "target org (multi-org only)")
	fl.BoolVar(&autoPR, "auto-create-pr", false, "override the agent's pull request behaviour")
	fl.BoolVar(&currentBranch, "work-on-current-branch", false, "override the agent's branch behaviour")
	fl.BoolVar(&skipReviewers, "skip-reviewer-request", false, "override the agent's reviewer behaviour")
	wf.bind(c)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if in.CodeAgentID == "" {
			return usageError{errors.New("--agent is required")}
		}
		prompt, err := pf.read(g.stdin)
		if err != nil {
			return err
		}
		in.Prompt = prompt
		changed := cmd.Flags().Changed
		if changed("repo-url") {
			in.RepoURL = &repo
		}
		if changed("starting-ref") {
			in.StartingRef = &ref
		}
		if changed("model") {
			in.ModelID = &model
		}
		if changed("webhook-url") {
			in.WebhookURL = &hook
		}
		if changed("auto-create-pr") {
			in.AutoCreatePR = &autoPR
		}
		if changed("work-on-current-branch") {
			in.WorkOnCurrentBranch = &currentBranch
		}
		if changed("skip-reviewer-request") {
			in.SkipReviewerRequest = &skipReviewers
		}
		if o.server != "" {
			in.CursorAPIKey = os.Getenv("CURSOR_API_KEY")
		}
		return withAPI(g, o, func(ctx context.Context, a api, p *printer) error {
			if err := wf.check(p); err != nil {
				return err
			}
			res, err := a.StartSession(ctx, in)
			if err != nil {
				return err
			}
			if !wf.wait && !wf.follow {
				return p.value(res, func(w io.Writer) { fmt.Fprintf(w, "%s (message %s)\n", res.SessionID, res.MessageID) })
			}
			return await(ctx, g, a, p, wf, res.SessionID, 0)
		})(cmd, args)
	}
	return c
}

func sessionsSend(g *globals, o *cliOpts) *cobra.Command {
	var (
		pf promptFlags
		wf waitFlags
	)
	c := &cobra.Command{
		Use:     "send ID",
		Short:   "Send a follow-up prompt (queued while a run is active)",
		Example: "  flapjack sessions send cs-... --prompt 'Also add a test' --wait",
		Args:    usageArgs(cobra.ExactArgs(1)),
	}
	pf.bind(c)
	wf.bind(c)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		prompt, err := pf.read(g.stdin)
		if err != nil {
			return err
		}
		return withAPI(g, o, func(ctx context.Context, a api, p *printer) error {
			if err := wf.check(p); err != nil {
				return err
			}
			// Follow from the end of the log as it is before the message.
			before, err := a.GetSession(ctx, args[0])
			if err != nil {
				return err
			}
			res, err := a.SendMessage(ctx, args[0], prompt)
			if err != nil {
				return err
			}
			if !wf.wait && !wf.follow {
				return p.value(res, func(w io.Writer) { fmt.Fprintln(w, res.MessageID) })
			}
			return await(ctx, g, a, p, wf, args[0], before.LastEventSeq)
		})(cmd, args)
	}
	return c
}

func sessionsEvents(g *globals, o *cliOpts) *cobra.Command {
	var (
		since     int64
		limit     int
		messageID string
		follow    bool
	)
	c := &cobra.Command{
		Use:   "events ID",
		Short: "Print a session's events",
		Long: `Print a session's events after --since. With --follow it keeps printing events
as they arrive and ends by itself when the session ends; a dropped connection
is resumed from the last event printed.`,
		Example: "  flapjack sessions events cs-... --since 40\n  flapjack sessions events cs-... --follow -o jsonl",
		Args:    usageArgs(cobra.ExactArgs(1)),
	}
	c.Flags().Int64Var(&since, "since", 0, "print events with seq greater than this")
	c.Flags().IntVar(&limit, "limit", core.DefaultEventLimit, "at most this many events (without --follow)")
	c.Flags().StringVar(&messageID, "message", "", "only events of this message")
	c.Flags().BoolVar(&follow, "follow", false, "keep printing events until the session ends")
	c.RunE = func(cmd *cobra.Command, args []string) error {
		id := args[0]
		return withAPI(g, o, func(ctx context.Context, a api, p *printer) error {
			if !follow {
				page, err := a.ListEvents(ctx, id, core.EventsInput{Since: &since, Limit: &limit, MessageID: messageID})
				if err != nil {
					return err
				}
				if p.format == formatJSON {
					return p.value(page, nil)
				}
				for _, e := range page.Events {
					if err := p.event(e); err != nil {
						return err
					}
				}
				return nil
			}
			if messageID != "" {
				return usageError{errors.New("--message cannot be combined with --follow")}
			}
			if p.format == formatJSON {
				return usageError{errors.New("--follow streams events: use -o jsonl or -o text")}
			}
			spin := startSpinner(g.stderr, isTerminal(g.stderr), id)
			fl := &follower{api: a, p: p, spin: spin, stderr: g.stderr, id: id, since: since, print: true, retries: 2 * time.Minute}
			_, err := fl.run(ctx)
			spin.end()
			if err != nil && ctx.Err() != nil {
				return exitError{code: exitInterrupted, msg: fmt.Sprintf("interrupted at seq %d; resume with --since %d", fl.since, fl.since)}
			}
			return err
		})(cmd, args)
	}
	return c
}

func sessionsCancel(g *globals, o *cliOpts) *cobra.Command {
	c := &cobra.Command{
		Use:     "cancel ID",
		Short:   "Cancel a pending, creating or running session",
		Example: "  flapjack sessions cancel cs-...",
		Args:    usageArgs(cobra.ExactArgs(1)),
	}
	c.RunE = func(cmd *cobra.Command, args []string) error {
		return withAPI(g, o, func(ctx context.Context, a api, p *printer) error {
			res, err := a.Cancel(ctx, args[0])
			if err != nil {
				return err
			}
			return p.value(res, func(w io.Writer) { fmt.Fprintf(w, "%s %s\n", args[0], res.Status) })
		})(cmd, args)
	}
	return c
}

func sessionsArchive(g *globals, o *cliOpts) *cobra.Command {
	c := &cobra.Command{
		Use:     "archive ID",
		Short:   "Archive an ended session and wipe its stored key",
		Example: "  flapjack sessions archive cs-...",
		Args:    usageArgs(cobra.ExactArgs(1)),
	}
	c.RunE = func(cmd *cobra.Command, args []string) error {
		return withAPI(g, o, func(ctx context.Context, a api, p *printer) error {
			res, err := a.Archive(ctx, args[0])
			if err != nil {
				return err
			}
			return p.value(res, func(w io.Writer) { fmt.Fprintf(w, "%s archived\n", args[0]) })
		})(cmd, args)
	}
	return c
}

func sessionsUpdate(g *globals, o *cliOpts) *cobra.Command {
	var hook string
	c := &cobra.Command{
		Use:     "update ID --webhook-url URL",
		Short:   `Set or clear (--webhook-url "") the session's webhook URL`,
		Example: "  flapjack sessions update cs-... --webhook-url https://hooks.example.com/flapjack\n  flapjack sessions update cs-... --webhook-url ''",
		Args:    usageArgs(cobra.ExactArgs(1)),
	}
	c.Flags().StringVar(&hook, "webhook-url", "", `https URL for status webhooks; "" clears it`)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if !cmd.Flags().Changed("webhook-url") {
			return usageError{errors.New("--webhook-url is required (\"\" clears it)")}
		}
		var url *string
		if strings.TrimSpace(hook) != "" {
			url = &hook
		}
		return withAPI(g, o, func(ctx context.Context, a api, p *printer) error {
			s, err := a.UpdateSession(ctx, args[0], url)
			if err != nil {
				return err
			}
			return p.value(s, func(w io.Writer) { sessionText(w, core.SessionDetail{Session: s}) })
		})(cmd, args)
	}
	return c
}
