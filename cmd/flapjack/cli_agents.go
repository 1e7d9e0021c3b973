package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/flapjack-dev/flapjack/core"
)

// cliOpts are the flags shared by the scripting commands.
type cliOpts struct {
	server string
	token  string
	output string
}

func addAPIFlags(cmd *cobra.Command, o *cliOpts) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.server, "server", os.Getenv("FLAPJACK_SERVER"), "use a flapjack serve at this URL instead of the local data directory (env FLAPJACK_SERVER)")
	pf.StringVar(&o.token, "token", os.Getenv("FLAPJACK_TOKEN"), "bearer token for --server (env FLAPJACK_TOKEN)")
	pf.StringVarP(&o.output, "output", "o", os.Getenv("FLAPJACK_OUTPUT"), "output: text, json or jsonl (default text on a terminal, json otherwise; env FLAPJACK_OUTPUT)")
}

// openAPI opens the local data directory, or the remote server with --server.
func openAPI(ctx context.Context, g *globals, o *cliOpts) (api, *printer, error) {
	p, err := newPrinter(o.output, g.stdout)
	if err != nil {
		return nil, nil, err
	}
	g.quietUnlessAsked()
	if o.server != "" {
		version, _ := buildVersion()
		r, err := newRemoteAPI(o.server, o.token, version)
		return r, p, err
	}
	a, err := openApp(ctx, g, kicker(g))
	if err != nil {
		return nil, nil, err
	}
	return &localAPI{app: a, actor: a.ownerActor(), watch: &runnerWatch{g: g, a: a}}, p, nil
}

// withAPI runs fn with an opened API and closes it after.
func withAPI(g *globals, o *cliOpts, fn func(ctx context.Context, a api, p *printer) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		a, p, err := openAPI(cmd.Context(), g, o)
		if err != nil {
			return err
		}
		defer a.Close()
		return fn(cmd.Context(), a, p)
	}
}

// usageArgs turns cobra's argument errors into usage errors (exit status 2).
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// agentFlags binds the settable template fields; only flags given are sent.
type agentFlags struct {
	name, description, model, repo, ref, preamble, runtime, org string
	autoPR, currentBranch, skipReviewers                        bool
}

func (f *agentFlags) bind(cmd *cobra.Command, withOrg bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", "", "display name")
	fl.StringVar(&f.description, "description", "", "what the template does")
	fl.StringVar(&f.model, "model", "", `model id ("auto" lets the runtime choose)`)
	fl.StringVar(&f.repo, "repo-url", "", "default repository URL")
	fl.StringVar(&f.ref, "starting-ref", "", "default branch or tag to start from")
	fl.StringVar(&f.preamble, "preamble", "", "text prepended to every prompt")
	fl.StringVar(&f.runtime, "runtime", "", "runtime: local or cloud (empty: the server's default)")
	fl.BoolVar(&f.autoPR, "auto-create-pr", true, "open a pull request when a run finishes")
	fl.BoolVar(&f.currentBranch, "work-on-current-branch", false, "commit on the starting branch instead of a new one")
	fl.BoolVar(&f.skipReviewers, "skip-reviewer-request", false, "do not request reviewers on pull requests")
	if withOrg {
		fl.StringVar(&f.org, "org", "", "target org (multi-org only)")
	}
}

// fields returns the template fields whose flags were given.
func (f *agentFlags) fields(cmd *cobra.Command) core.AgentFields {
	var out core.AgentFields
	changed := cmd.Flags().Changed
	str := func(name string, v string) *string {
		if changed(name) {
			return &v
		}
		return nil
	}
	boolean := func(name string, v bool) *bool {
		if changed(name) {
			return &v
		}
		return nil
	}
	out.Name, out.Description, out.ModelID = str("name", f.name), str("description", f.description), str("model", f.model)
	out.DefaultRepoURL, out.DefaultStartingRef = str("repo-url", f.repo), str("starting-ref", f.ref)
	out.Preamble, out.Runtime = str("preamble", f.preamble), str("runtime", f.runtime)
	out.AutoCreatePR = boolean("auto-create-pr", f.autoPR)
	out.WorkOnCurrentBranch = boolean("work-on-current-branch", f.currentBranch)
	out.SkipReviewerRequest = boolean("skip-reviewer-request", f.skipReviewers)
	return out
}

func newAgentsCmd(g *globals) *cobra.Command {
	o := &cliOpts{}
	cmd := &cobra.Command{
		Use:     "agents",
		Aliases: []string{"agent"},
		Short:   "Manage code agents (templates: repo, branch, model, preamble, PR flags)",
		Example: "  flapjack agents list\n  flapjack agents create --name fixer --repo-url https://github.com/acme/app",
		Args:    usageArgs(cobra.NoArgs),
	}
	addAPIFlags(cmd, o)

	var listOrg string
	var listPages pageFlags
	listCmd := &cobra.Command{
		Use:     "list",
		Short:   "List code agents, newest first (50 unless --limit or --all)",
		Example: "  flapjack agents list\n  flapjack agents list --all -o json | jq -r '.[].id'",
		Args:    usageArgs(cobra.NoArgs),
	}
	listCmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := listPages.check(cmd); err != nil {
			return err
		}
		return withAPI(g, o, func(ctx context.Context, a api, p *printer) error {
			agents, err := collect(ctx, &listPages, cmd, func(limit *int, cursor string) ([]core.CodeAgent, string, error) {
				page, err := a.ListAgents(ctx, core.ListAgentsInput{OrgID: listOrg, Limit: limit, Cursor: cursor})
				return page.Agents, page.NextCursor, err
			})
			if err != nil {
				return err
			}
			return list(p, agents, func(w io.Writer) { agentsTable(w, agents) })
		})(cmd, args)
	}
	listCmd.Flags().StringVar(&listOrg, "org", "", "target org (multi-org only)")
	listPages.add(listCmd)

	getCmd := &cobra.Command{
		Use:     "get ID",
		Short:   "Show one code agent",
		Example: "  flapjack agents get ca-...",
		Args:    usageArgs(cobra.ExactArgs(1)),
	}
	getCmd.RunE = func(cmd *cobra.Command, args []string) error {
		return withAPI(g, o, func(ctx context.Context, a api, p *printer) error {
			ag, err := a.GetAgent(ctx, args[0])
			if err != nil {
				return err
			}
			return p.value(ag, func(w io.Writer) { agentText(w, ag) })
		})(cmd, args)
	}

	create := &agentFlags{}
	createCmd := &cobra.Command{
		Use:     "create",
		Short:   "Create a code agent",
		Example: "  flapjack agents create --name fixer --repo-url https://github.com/acme/app --starting-ref main --preamble 'Write tests.'",
		Args:    usageArgs(cobra.NoArgs),
	}
	create.bind(createCmd, true)
	createCmd.RunE = func(cmd *cobra.Command, args []string) error {
		in := core.CreateAgentInput{OrgID: create.org, AgentFields: create.fields(cmd)}
		return withAPI(g, o, func(ctx context.Context, a api, p *printer) error {
			ag, err := a.CreateAgent(ctx, in)
			if err != nil {
				return err
			}
			return p.value(ag, func(w io.Writer) { agentText(w, ag) })
		})(cmd, args)
	}

	update := &agentFlags{}
	updateCmd := &cobra.Command{
		Use:     "update ID",
		Short:   "Change a code agent (only the flags given)",
		Example: "  flapjack agents update ca-... --model composer-2 --auto-create-pr=false",
		Args:    usageArgs(cobra.ExactArgs(1)),
	}
	update.bind(updateCmd, false)
	updateCmd.RunE = func(cmd *cobra.Command, args []string) error {
		f := update.fields(cmd)
		return withAPI(g, o, func(ctx context.Context, a api, p *printer) error {
			ag, err := a.UpdateAgent(ctx, args[0], f)
			if err != nil {
				return err
			}
			return p.value(ag, func(w io.Writer) { agentText(w, ag) })
		})(cmd, args)
	}

	deleteCmd := &cobra.Command{
		Use:     "delete ID",
		Short:   "Delete a code agent (its sessions keep running)",
		Example: "  flapjack agents delete ca-...",
		Args:    usageArgs(cobra.ExactArgs(1)),
	}
	deleteCmd.RunE = func(cmd *cobra.Command, args []string) error {
		return withAPI(g, o, func(ctx context.Context, a api, p *printer) error {
			res, err := a.DeleteAgent(ctx, args[0])
			if err != nil {
				return err
			}
			return p.value(res, func(w io.Writer) { fmt.Fprintf(w, "deleted %s\n", args[0]) })
		})(cmd, args)
	}
	cmd.AddCommand(listCmd, getCmd, createCmd, updateCmd, deleteCmd)
	return cmd
}
