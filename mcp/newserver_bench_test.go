package mcp_test

import (
	"testing"

	"github.com/flapjack-dev/flapjack/core"
	flapjackmcp "github.com/flapjack-dev/flapjack/mcp"
)

// BenchmarkNewServer measures building the 13 tools (schemas included): it is
// on the path of every MCP server start.
func BenchmarkNewServer(b *testing.B) {
	svc := core.NewService(core.ServiceConfig{})
	for b.Loop() {
		flapjackmcp.NewServer(svc, core.Actor{}, flapjackmcp.Options{})
	}
}
