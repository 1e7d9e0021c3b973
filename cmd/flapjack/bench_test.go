//go:build unix

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The MCP benchmarks compare flapjack to a floor: a go-sdk server with the same
// 13 tool types that does nothing (testdata/floor). Both run in the same
// benchmark, alternately, so a noisy machine slows both alike and the ratio
// stays meaningful. Targets: cold start ≤ 1.5× floor, get_code_agent round
// trip ≤ 1.3× floor (medians).

func buildFloor(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "floor")
	if out, err := exec.Command("go", "build", "-o", bin, "../../testdata/floor").CombinedOutput(); err != nil {
		b.Fatalf("building floor: %v\n%s", err, out)
	}
	return bin
}

func connect(b *testing.B, ctx context.Context, bin string, env []string, args ...string) *mcp.ClientSession {
	b.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	client := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		b.Fatalf("connect %s: %v", bin, err)
	}
	return cs
}

func median(d []time.Duration) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[len(s)/2]) / float64(time.Millisecond)
}

// benchData creates a data directory with one code agent and returns its env and id.
func benchData(b *testing.B) ([]string, string) {
	b.Helper()
	dataDir := filepath.Join(b.TempDir(), "data")
	env := []string{"FLAPJACK_DATA_DIR=" + dataDir, "FLAPJACK_RUNTIME=local", "FLAPJACK_LOG_LEVEL=error"}
	ctx := context.Background()
	cs := connect(b, ctx, flapjackBin, env, "mcp")
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "flapjack_create_code_agent", Arguments: map[string]any{
		"name": "Bug Fixer", "description": "Fixes bugs", "defaultRepoUrl": "https://github.com/acme/app",
		"preamble": "You are a senior engineer.", "runtime": "local",
	}})
	if err != nil || res.IsError {
		b.Fatalf("create agent: %v %v", err, res)
	}
	return env, res.StructuredContent.(map[string]any)["id"].(string)
}

func BenchmarkColdStartVsFloor(b *testing.B) {
	floor := buildFloor(b)
	env, _ := benchData(b)
	ctx := context.Background()
	var flap, base []time.Duration
	for b.Loop() {
		t0 := time.Now()
		cs := connect(b, ctx, floor, nil)
		base = append(base, time.Since(t0))
		cs.Close()
		t0 = time.Now()
		cs = connect(b, ctx, flapjackBin, env, "mcp")
		flap = append(flap, time.Since(t0))
		cs.Close()
	}
	b.ReportMetric(median(base), "floor-median-ms")
	b.ReportMetric(median(flap), "flapjack-median-ms")
	b.ReportMetric(median(flap)/median(base), "ratio")
}

func BenchmarkGetCodeAgentRoundTripVsFloor(b *testing.B) {
	floor := buildFloor(b)
	env, id := benchData(b)
	ctx := context.Background()
	fl := connect(b, ctx, floor, nil)
	defer fl.Close()
	fj := connect(b, ctx, flapjackBin, env, "mcp")
	defer fj.Close()
	args := map[string]any{"codeAgentId": id}
	var flap, base []time.Duration
	for b.Loop() {
		t0 := time.Now()
		if r, err := fl.CallTool(ctx, &mcp.CallToolParams{Name: "flapjack_get_code_agent", Arguments: map[string]any{"codeAgentId": "ca-floor"}}); err != nil || r.IsError {
			b.Fatalf("floor: %v %v", err, r)
		}
		base = append(base, time.Since(t0))
		t0 = time.Now()
		if r, err := fj.CallTool(ctx, &mcp.CallToolParams{Name: "flapjack_get_code_agent", Arguments: args}); err != nil || r.IsError {
			b.Fatalf("flapjack: %v %v", err, r)
		}
		flap = append(flap, time.Since(t0))
	}
	b.ReportMetric(median(base)*1000, "floor-median-µs")
	b.ReportMetric(median(flap)*1000, "flapjack-median-µs")
	b.ReportMetric(median(flap)/median(base), "ratio")
}

// BenchmarkIdleMemory reports the resident memory of an MCP server that has
// served a few calls and sits idle (target ≤ 30 MiB).
func BenchmarkIdleMemory(b *testing.B) {
	env, id := benchData(b)
	ctx := context.Background()
	var rss float64
	for b.Loop() {
		cmd := exec.Command(flapjackBin, "mcp")
		cmd.Env = append(os.Environ(), env...)
		client := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
		cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
		if err != nil {
			b.Fatal(err)
		}
		for range 20 {
			cs.CallTool(ctx, &mcp.CallToolParams{Name: "flapjack_get_code_agent", Arguments: map[string]any{"codeAgentId": id}})
			cs.CallTool(ctx, &mcp.CallToolParams{Name: "flapjack_list_code_sessions", Arguments: map[string]any{}})
		}
		time.Sleep(500 * time.Millisecond)
		rss = max(rss, vmRSSMiB(b, cmd.Process.Pid))
		cs.Close()
	}
	b.ReportMetric(rss, "idle-rss-MiB")
}

func vmRSSMiB(b *testing.B, pid int) float64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
