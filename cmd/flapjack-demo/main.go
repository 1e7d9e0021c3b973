// Command flapjack-demo shows flapjack working end to end: it makes a throwaway
// git repository, starts bin/flapjack as an MCP server over stdio (exactly as an
// editor would), creates a code agent, runs a session with the bundled demo
// agent, follows its events, sends a follow-up, and prints the commits produced.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/flapjack-dev/flapjack/core/platform"
)

func main() {
	bin := flag.String("bin", "bin/flapjack", "path to the flapjack binary")
	keep := flag.Bool("keep", false, "keep the temporary repository and data directory")
	flag.Parse()
	if err := run(*bin, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func run(bin string, keep bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	agent, err := filepath.Abs(filepath.Join("testdata", "agents", "demo-agent.sh"))
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "flapjack-demo-")
	if err != nil {
		return err
	}
	dataDir := filepath.Join(tmp, "data")
	repo := filepath.Join(tmp, "pancakes")
	defer func() {
		stopRunner(dataDir)
		if keep {
			fmt.Printf("\nkept %s\n", tmp)
			return
		}
		os.RemoveAll(tmp)
	}()

	step("Creating a throwaway git repository at %s", repo)
	if err := makeRepo(repo); err != nil {
		return err
	}

	step("Starting %s as an MCP server over stdio", bin)
	cmd := exec.Command(bin, "mcp")
	cmd.Env = append(os.Environ(),
		"FLAPJACK_DATA_DIR="+dataDir,
		"FLAPJACK_RUNTIME=local",
		"FLAPJACK_LOCAL_AGENT=exec",
		"FLAPJACK_LOCAL_AGENT_COMMAND="+agent,
		"FLAPJACK_LOG_LEVEL=warn",
	)
	cmd.Stderr = os.Stderr
	client := mcp.NewClient(&mcp.Implementation{Name: "flapjack-demo", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer cs.Close()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		return err
	}
	fmt.Printf("   the server offers %d tools\n", len(tools.Tools))

	step("Creating a code agent (flapjack_create_code_agent)")
	var ag struct{ ID string }
	if err := call(ctx, cs, "flapjack_create_code_agent", map[string]any{
		"name": "Demo", "defaultRepoUrl": repo, "defaultStartingRef": "main",
		"runtime": "local", "autoCreatePR": false,
		"preamble": "You are the flapjack demo agent.",
	}, &ag); err != nil {
		return err
	}
	fmt.Printf("   code agent %s\n", ag.ID)

	step("Starting a session (flapjack_start_code_session)")
	var started struct {
		SessionID string `json:"session_id"`
		MessageID string `json:"message_id"`
	}
	if err := call(ctx, cs, "flapjack_start_code_session", map[string]any{
		"codeAgentId": ag.ID, "prompt": "Write down the pancake recipe",
	}, &started); err != nil {
		return err
	}
	fmt.Printf("   session %s, message %s\n", started.SessionID, started.MessageID)

	step("Following events with waitSeconds until the session finishes")
	since, err := follow(ctx, cs, started.SessionID, 0)
	if err != nil {
		return err
	}

	step("Sending a follow-up (flapjack_send_code_session_message)")
	var sent struct {
		MessageID string `json:"message_id"`
	}
	if err := call(ctx, cs, "flapjack_send_code_session_message", map[string]any{
		"codeSessionId": started.SessionID, "prompt": "Add a note about maple syrup",
	}, &sent); err != nil {
		return err
	}
	fmt.Printf("   message %s\n", sent.MessageID)
	if _, err := follow(ctx, cs, started.SessionID, since); err != nil {
		return err
	}

	var sess struct {
		Status   string `json:"status"`
		Messages []struct {
			ID         string  `json:"id"`
			Status     string  `json:"status"`
			ResultText *string `json:"result_text"`
		} `json:"messages"`
	}
	if err := call(ctx, cs, "flapjack_get_code_session", map[string]any{"codeSessionId": started.SessionID}, &sess); err != nil {
		return err
	}
	step("Session %s is %s", started.SessionID, sess.Status)
	for _, m := range sess.Messages {
		res := ""
		if m.ResultText != nil {
			res = *m.ResultText
		}
		fmt.Printf("   %s %-9s %s\n", m.ID, m.Status, res)
	}

	workspace := filepath.Join(dataDir, "workspaces", started.SessionID)
	step("Commits the agent produced on branch flapjack/%s", started.SessionID)
	out, err := exec.Command("git", "-C", workspace, "log", "--stat", "--format=%h %s", "main..HEAD").CombinedOutput()
	if err != nil {
		return fmt.Errorf("git log: %v: %s", err, out)
	}
	fmt.Print(indent(string(out)))

	step("Archiving the session (flapjack_archive_code_session): the stored key is wiped")
	var arch json.RawMessage
	if err := call(ctx, cs, "flapjack_archive_code_session", map[string]any{"codeSessionId": started.SessionID}, &arch); err != nil {
		return err
	}
	fmt.Printf("   %s\n", arch)
	if sess.Status != "finished" {
		return fmt.Errorf("session ended %s, want finished", sess.Status)
	}
	fmt.Println("\nDone. Add flapjack to your editor: see README.md.")
	return nil
}

// follow prints events until the session is terminal and returns the last seq.
func follow(ctx context.Context, cs *mcp.ClientSession, id string, since int64) (int64, error) {
	for {
		var page struct {
			Events []struct {
				Seq       int64           `json:"seq"`
				Type      string          `json:"event_type"`
				Payload   json.RawMessage `json:"payload"`
				CreatedAt time.Time       `json:"created_at"`
			} `json:"events"`
			LastSeq int64 `json:"last_seq"`
		}
		if err := call(ctx, cs, "flapjack_list_code_session_events", map[string]any{
			"codeSessionId": id, "since": since, "waitSeconds": 5,
		}, &page); err != nil {
			return since, err
		}
		done := false
		for _, e := range page.Events {
			fmt.Printf("   #%-3d %s %-12s %s\n", e.Seq, e.CreatedAt.Format("15:04:05.000"), e.Type, summary(e.Payload))
			if e.Type == "status" {
				var p struct{ Status string }
				json.Unmarshal(e.Payload, &p)
				switch p.Status {
				case "finished", "error", "cancelled", "expired":
					done = true
				}
			}
		}
		since = page.LastSeq
		if done {
			return since, nil
		}
	}
}

func summary(p json.RawMessage) string {
	s := string(p)
	if len(s) > 110 {
		s = s[:107] + "..."
	}
	return s
}

// call invokes a tool and decodes its structured result.
func call(ctx context.Context, cs *mcp.ClientSession, name string, args map[string]any, out any) error {
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if res.IsError {
		var msg []string
		for _, c := range res.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				msg = append(msg, tc.Text)
			}
		}
		return fmt.Errorf("%s: %s", name, strings.Join(msg, "; "))
	}
	raw, err := json.Marshal(res.StructuredContent)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

func makeRepo(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("# Pancakes\n\nA recipe book.\n"), 0o644); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "README.md"},
		{"-c", "user.name=demo", "-c", "user.email=demo@localhost", "commit", "-q", "-m", "Initial commit"},
	} {
		if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("git %s: %v: %s", args[0], err, out)
		}
	}
	return nil
}

// stopRunner stops the detached runner the server started for this data directory.
func stopRunner(dataDir string) {
	f, err := os.Open(filepath.Join(dataDir, "runner.lock"))
	if err != nil {
		return
	}
	defer f.Close()
	// A lock we can take means no runner is alive: the pid in the file is stale.
	if ok, _ := platform.LockFile(f, false); ok {
		platform.UnlockFile(f)
		return
	}
	raw, err := os.ReadFile(f.Name())
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 1 {
		return
	}
	if err := platform.Terminate(pid); err != nil {
		return
	}
	for range 50 {
		if _, running := platform.Identify(pid); !running {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("   " + l + "\n")
	}
	return b.String()
}
