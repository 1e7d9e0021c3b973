package main

import (
	"context"

	"github.com/spf13/cobra"

	flapjackmcp "github.com/flapjack-dev/flapjack/mcp"
)

func newMCPCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "mcp",
		Short: "Serve the 13 flapjack tools over stdio (the default command)",
		Long: `Runs the MCP server on stdin/stdout for Cursor, Claude Code or any MCP client.
stdout carries JSON-RPC only; logs go to stderr.`,
		Example: "  claude mcp add flapjack -- flapjack\n  flapjack mcp --data-dir ./data",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMCP(cmd.Context(), g)
		},
	}
}

// runMCP serves MCP on stdio until the client disconnects or ctx ends.
func runMCP(ctx context.Context, g *globals) error {
	a, err := openApp(ctx, g, kicker(g))
	if err != nil {
		return err
	}
	defer a.Close()
	ensureRunnerForWork(ctx, g, a)
	// For the server's whole life: a runner killed mid-run is replaced.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go (&runnerWatch{g: g, a: a}).watchAlways(watchCtx)
	version, _ := buildVersion()
	server := flapjackmcp.NewServer(a.svc, a.ownerActor(), flapjackmcp.Options{Version: version, Logger: g.logger})
	// The guard answers malformed input itself, so nothing a client sends
	// can end the server, and every answer is out before it exits.
	err = flapjackmcp.RunStdio(ctx, server, g.stdin, g.stdout, g.logger)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
