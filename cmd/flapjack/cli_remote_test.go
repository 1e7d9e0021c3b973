//go:build unix

package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// remoteCLI starts a flapjack serve on a fresh data directory and returns a
// local-mode CLI on that directory and the same CLI pointed at the server.
func remoteCLI(t *testing.T, agentEnv string) (local *cli, remote *cli, serverURL string) {
	t.Helper()
	local = newCLI(t, agentEnv)
	dataDir := strings.TrimPrefix(local.env[0], "FLAPJACK_DATA_DIR=")
	p := startServe(t, dataDir, []string{agentEnv})
	token := tokenRE.FindString(fjcli(t, dataDir, "token", "create", "--name", "cli"))
	if token == "" {
		t.Fatal("no token created")
	}
	// The REST API wants a Cursor key on start; the CLI sends CURSOR_API_KEY.
	remote = &cli{t: t, env: append(append([]string{}, local.env...), "FLAPJACK_SERVER="+p.url, "FLAPJACK_TOKEN="+token, "CURSOR_API_KEY=cursor_cli_test_0123456789")}
	return local, remote, p.url
}

// TestCLIRemoteOutputMatchesLocal: the same commands on the same database give
// byte-identical output whether they go through the data directory or a server.
func TestCLIRemoteOutputMatchesLocal(t *testing.T) {
	repo := makeRepo(t)
	// Without stderr lines, whose order against stdout is not fixed, two runs
	// log the same events in the same order.
	agentEnv := "FLAPJACK_LOCAL_AGENT_COMMAND=" + writeAgent(t, strings.ReplaceAll(streamAgent, `echo "a warning" >&2`, ""))
	local, remote, _ := remoteCLI(t, agentEnv)
	agent := remote.jsonID("agents", "create", "--name", "fixer", "--repo-url", repo, "--runtime", "local")
	r := remote.run("", "sessions", "start", "--agent", agent, "--prompt", "remote task", "--wait", "--follow", "-o", "jsonl")
	if r.code != 0 {
		t.Fatalf("remote start --wait --follow: exit %d\n%s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var final struct{ ID, Status string }
	json.Unmarshal([]byte(lines[len(lines)-1]), &final)
	if final.Status != "finished" {
		t.Fatalf("final line %s", lines[len(lines)-1])
	}
	for _, format := range []string{"text", "json", "jsonl"} {
		for _, args := range [][]string{
			{"agents", "list"}, {"agents", "get", agent}, {"sessions", "list"}, {"sessions", "get", final.ID},
			{"sessions", "events", final.ID, "--since", "2"},
		} {
			args := append(append([]string{}, args...), "-o", format)
			if l, rm := local.ok(args...), remote.ok(args...); l != rm {
				t.Errorf("flapjack %v differs between local and remote:\nlocal:\n%s\nremote:\n%s", args, l, rm)
			}
		}
	}
	// A whole scripted run gives the same output in both modes (ids and times aside).
	norm := func(out string) string { return normalize(out, repo) }
	lr := local.run("", "sessions", "start", "--agent", agent, "--prompt", "same task", "--wait", "--follow", "-o", "jsonl")
	rr := remote.run("", "sessions", "start", "--agent", agent, "--prompt", "same task", "--wait", "--follow", "-o", "jsonl")
	if lr.code != 0 || rr.code != 0 {
		t.Fatalf("start --wait --follow: local exit %d, remote exit %d", lr.code, rr.code)
	}
	if l, rm := norm(lr.stdout), norm(rr.stdout); l != rm {
		t.Errorf("start --wait --follow -o jsonl differs:\nlocal:\n%s\nremote:\n%s", l, rm)
	}

	// The other commands, both modes, same output and exit codes.
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"sessions", "send", final.ID, "--prompt", "again", "--wait", "-o", "json"}, 0},
		// A public IP literal: the server checks addresses when a URL is set,
		// and a name would need DNS. The session is finished, so nothing is sent.
		{[]string{"sessions", "update", final.ID, "--webhook-url", "https://9.9.9.9/x", "-o", "json"}, 0},
		{[]string{"sessions", "update", final.ID, "--webhook-url", "", "-o", "json"}, 0},
		{[]string{"sessions", "update", final.ID, "--webhook-url", "http://insecure.example.com", "-o", "json"}, 1},
		{[]string{"sessions", "cancel", final.ID, "-o", "json"}, 1},
		{[]string{"agents", "update", agent, "--model", "composer-2", "--auto-create-pr=false", "-o", "json"}, 0},
	} {
		for name, mode := range map[string]*cli{"local": local, "remote": remote} {
			if r := mode.run("", c.args...); r.code != c.code {
				t.Errorf("%s flapjack %v: exit %d, want %d\n%s", name, c.args, r.code, c.code, r.stderr)
			}
		}
	}
	if r := remote.run("", "sessions", "archive", final.ID, "-o", "json"); r.code != 0 || !strings.Contains(r.stdout, `"archived": true`) {
		t.Errorf("remote archive: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := local.run("", "sessions", "send", final.ID, "--prompt", "x"); r.code != 1 || !strings.Contains(r.stderr, "SESSION_ARCHIVED") {
		t.Errorf("local send after remote archive: exit %d %s", r.code, r.stderr)
	}
	other := local.jsonID("agents", "create", "--name", "doomed", "--repo-url", repo, "--runtime", "local")
	if r := remote.run("", "agents", "delete", other, "-o", "json"); r.code != 0 {
		t.Errorf("remote delete: exit %d %s", r.code, r.stderr)
	}
	if r := local.run("", "agents", "get", other); r.code != 1 {
		t.Errorf("local get after remote delete: exit %d", r.code)
	}

	// Exit codes are the same too: a failing session is 1, a bad id is 1 with its code.
	if r := remote.run("", "sessions", "start", "--agent", agent, "--prompt", "please fail", "--wait"); r.code != 1 {
		t.Errorf("remote failing session: exit %d, want 1", r.code)
	}
	if r := remote.run("", "sessions", "get", "cs-nope"); r.code != 1 || !strings.Contains(r.stderr, "NOT_FOUND") {
		t.Errorf("remote not found: exit %d, stderr %s", r.code, r.stderr)
	}
	bad := &cli{t: t, env: append(append([]string{}, remote.env...), "FLAPJACK_TOKEN=fj_live_wrong")}
	if r := bad.run("", "agents", "list"); r.code != 1 || !strings.Contains(r.stderr, "UNAUTHORIZED") {
		t.Errorf("bad token: exit %d, stderr %s", r.code, r.stderr)
	}
}

// TestCLIFollowSurvivesDroppedConnections puts a proxy between the CLI and the
// server that cuts every other events request; --follow must resume from the
// last event printed, with no gap and no duplicate.
func TestCLIFollowSurvivesDroppedConnections(t *testing.T) {
	repo := makeRepo(t)
	agentEnv := "FLAPJACK_LOCAL_AGENT_COMMAND=" + writeAgent(t, streamAgent+"\ni=0; while [ $i -lt 300 ]; do echo \"line $i\"; i=$((i+1)); done\nsleep 1\n")
	_, remote, serverURL := remoteCLI(t, agentEnv)
	target, _ := url.Parse(serverURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var n, dropped atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/events") && n.Add(1)%2 == 0 {
			dropped.Add(1)
			// Cut the answer halfway, as a dying proxy would: the client has
			// the headers and part of the body, so nothing retries it silently.
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err == nil {
				buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{\"events\":[")
				buf.Flush()
				conn.(*net.TCPConn).SetLinger(0)
				conn.Close()
			}
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	via := &cli{t: t, env: append(append([]string{}, remote.env...), "FLAPJACK_SERVER="+front.URL)}
	agent := via.jsonID("agents", "create", "--repo-url", repo, "--runtime", "local")
	r := via.run("", "sessions", "start", "--agent", agent, "--prompt", "slow stream", "--wait", "--follow", "-o", "jsonl")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	for i, l := range lines[:len(lines)-1] {
		var e struct{ Seq int64 }
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Seq != int64(i+1) {
			t.Fatalf("line %d has seq %d: gap or duplicate", i, e.Seq)
		}
	}
	if len(lines) < 300 {
		t.Errorf("only %d lines", len(lines))
	}
	if dropped.Load() == 0 || !strings.Contains(r.stderr, "connection lost") {
		t.Errorf("no connection was dropped (%d) or the CLI did not say so:\n%s", dropped.Load(), r.stderr)
	}
}
