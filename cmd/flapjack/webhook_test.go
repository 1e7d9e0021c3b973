//go:build unix

package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/webhook"
	"github.com/flapjack-dev/flapjack/store"
)

// hookRequest is one webhook a test receiver got.
type hookRequest struct {
	id, sig string
	ts      int64
	body    []byte
	seq     int64
	status  string
	archive bool
}

// hookReceiver is a loopback webhook receiver that records every request
// and answers 204 after a random pause of up to maxPause, so a runner killed
// meanwhile has sent a webhook it never learned the outcome of.
type hookReceiver struct {
	srv      *httptest.Server
	maxPause time.Duration
	mu       sync.Mutex
	got      []hookRequest
}

func newHookReceiver(t *testing.T, maxPause time.Duration) *hookReceiver {
	t.Helper()
	h := &hookReceiver{maxPause: maxPause}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var p struct {
			Data struct {
				Seq      int64  `json:"seq"`
				Status   string `json:"status"`
				Archived bool   `json:"archived"`
			} `json:"data"`
		}
		json.Unmarshal(b, &p)
		ts, _ := strconv.ParseInt(r.Header.Get(webhook.HeaderTimestamp), 10, 64)
		h.mu.Lock()
		h.got = append(h.got, hookRequest{r.Header.Get(webhook.HeaderID), r.Header.Get(webhook.HeaderSignature), ts, b, p.Data.Seq, p.Data.Status, p.Data.Archived})
		h.mu.Unlock()
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if h.maxPause > 0 {
			time.Sleep(rand.N(h.maxPause))
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) requests() []hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookRequest(nil), h.got...)
}

// openDB opens the data directory's database from the test, beside the
// processes under test.
func openDB(t *testing.T, dataDir string) (*store.Store, *sql.DB) {
	t.Helper()
	path := filepath.Join(dataDir, "flapjack.db")
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(); st.Close() })
	return st, db
}

// checkDeliveries checks every status event of the session against what
// the receiver got: each delivered at least once, always under the same
// webhook-id, distinct ids for distinct changes, the body matching the
// event, the signature verifying with secret. It returns how many requests
// were redeliveries.
func checkDeliveries(t *testing.T, st *store.Store, sessionID, secret string, got []hookRequest) (redeliveries int) {
	t.Helper()
	ctx := context.Background()
	evs, err := st.ListEvents(ctx, core.EventQuery{SessionID: sessionID})
	if err != nil {
		t.Fatal(err)
	}
	dels, err := st.ListDeliveries(ctx, sessionID)
	if err != nil {
		t.Fatal(err)
	}
	rowID := map[int64]string{}
	for _, d := range dels {
		rowID[d.Seq] = d.ID
		if d.State != core.DeliveryDelivered {
			t.Errorf("delivery %s (seq %d) is %s, want delivered", d.ID, d.Seq, d.State)
		}
	}
	idOfSeq := map[int64]string{}
	seqOfID := map[string]int64{}
	for _, r := range got {
		if !webhook.Verify(secret, r.id, r.ts, r.body, r.sig) {
			t.Errorf("webhook %s (seq %d): signature %q does not verify", r.id, r.seq, r.sig)
		}
		if id, ok := idOfSeq[r.seq]; ok && id != r.id {
			t.Errorf("seq %d came under two ids: %s and %s", r.seq, id, r.id)
		}
		if s, ok := seqOfID[r.id]; ok && s != r.seq {
			t.Errorf("id %s came for two changes: seq %d and %d", r.id, s, r.seq)
		}
		if _, ok := idOfSeq[r.seq]; ok {
			redeliveries++
		}
		idOfSeq[r.seq], seqOfID[r.id] = r.id, r.seq
	}
	statusEvents := 0
	for _, e := range evs {
		if e.Type != core.EventStatus {
			continue
		}
		statusEvents++
		var p struct {
			Status string `json:"status"`
		}
		json.Unmarshal(e.Payload, &p)
		id, ok := idOfSeq[e.Seq]
		if !ok {
			t.Errorf("status change seq %d (%s) was never delivered", e.Seq, p.Status)
			continue
		}
		if rowID[e.Seq] != id {
			t.Errorf("seq %d delivered as %s, but its outbox row is %q", e.Seq, id, rowID[e.Seq])
		}
		for _, r := range got {
			if r.seq == e.Seq && r.status != p.Status {
				t.Errorf("seq %d: webhook says %s, the event %s", e.Seq, r.status, p.Status)
			}
		}
	}
	if len(idOfSeq) != statusEvents {
		t.Errorf("the receiver got %d distinct changes for %d status events", len(idOfSeq), statusEvents)
	}
	return redeliveries
}

// waitDelivered waits until nothing is pending and the receiver has a
// request for every status event.
func waitDelivered(t *testing.T, st *store.Store, h *hookReceiver, sessionID string, logs func() string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		pending, err := st.HasPendingDeliveries(ctx)
		if err != nil {
			t.Fatal(err)
		}
		evs, _ := st.ListEvents(ctx, core.EventQuery{SessionID: sessionID})
		seen := map[int64]bool{}
		for _, r := range h.requests() {
			seen[r.seq] = true
		}
		all := true
		for _, e := range evs {
			all = all && (e.Type != core.EventStatus || seen[e.Seq])
		}
		if !pending && all {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("webhooks still pending after 60s\nlogs:\n%s", logs())
}

func waitSessionTerminal(t *testing.T, st *store.Store, id string, logs func() string) core.Session {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		s, err := st.GetSession(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if s.Status.Terminal() {
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("session %s did not end\nlogs:\n%s", id, logs())
	return core.Session{}
}

// TestWebhooksEndToEnd drives the real binary: every status change of a
// session reaches a loopback receiver exactly once, signed with the secret
// `flapjack webhook secret` prints; after --rotate, both signatures come;
// unsafe URLs are refused when set and create no session.
func TestWebhooksEndToEnd(t *testing.T) {
	hook := newHookReceiver(t, 0)
	c := newCLI(t, "FLAPJACK_LOCAL_AGENT_COMMAND="+writeAgent(t, streamAgent), webhook.AllowPrivateEnv+"=1")
	dataDir := strings.TrimPrefix(c.env[0], "FLAPJACK_DATA_DIR=")
	secret := strings.TrimSpace(c.ok("webhook", "secret"))
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("webhook secret printed %q", secret)
	}
	if again := strings.TrimSpace(c.ok("webhook", "secret")); again != secret {
		t.Fatalf("the secret changed between two reads: %s, %s", secret, again)
	}
	agent := c.jsonID("agents", "create", "--repo-url", makeRepo(t), "--runtime", "local")

	// Refused when set, with the testing exception on: metadata stays out.
	r := c.run("", "sessions", "start", "--agent", agent, "--prompt", "x", "--webhook-url", "http://169.254.169.254/latest")
	if r.code != 1 || !strings.Contains(r.stderr, "VALIDATION_ERROR") || !strings.Contains(r.stderr, "webhookUrl") {
		t.Errorf("start with a metadata URL: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, webhook.AllowPrivateEnv+"=1") || !strings.Contains(r.stderr, "local testing only") {
		t.Errorf("the testing exception was not announced:\n%s", r.stderr)
	}
	// Without it, loopback and http:// are refused too.
	strict := &cli{t: t, env: []string{"FLAPJACK_DATA_DIR=" + dataDir, "FLAPJACK_RUNTIME=local", "FLAPJACK_LOCAL_AGENT=exec", "FLAPJACK_LOCAL_AGENT_COMMAND=/bin/true"}}
	for _, u := range []string{hook.srv.URL, "https://127.0.0.1:1/x", "https://[::ffff:127.0.0.1]/", "https://localhost/"} {
		if r := strict.run("", "sessions", "start", "--agent", agent, "--prompt", "x", "--webhook-url", u); r.code != 1 || !strings.Contains(r.stderr, "VALIDATION_ERROR") || !strings.Contains(r.stderr, "webhookUrl") {
			t.Errorf("strict start with %s: exit %d\n%s", u, r.code, r.stderr)
		}
	}
	if out := c.ok("sessions", "list", "-o", "json"); strings.Contains(out, "cs-") {
		t.Fatalf("refused starts created sessions:\n%s", out)
	}

	st, _ := openDB(t, dataDir)
	logs := func() string { b, _ := os.ReadFile(filepath.Join(dataDir, runnerLogFile)); return string(b) }
	sid := c.jsonID("sessions", "start", "--agent", agent, "--prompt", "first", "--webhook-url", hook.srv.URL+"/hook?token=t0k")
	waitSessionTerminal(t, st, sid, logs)
	waitDelivered(t, st, hook, sid, logs)
	got := hook.requests()
	var statuses []string
	for _, h := range got {
		statuses = append(statuses, h.status)
	}
	if strings.Join(statuses, ",") != "pending,creating,running,finished" {
		t.Errorf("webhooks in the normal case: %v, want each status change once", statuses)
	}
	if n := checkDeliveries(t, st, sid, secret, got); n != 0 {
		t.Errorf("%d redeliveries without a crash", n)
	}

	// Rotation: the new secret is printed, and deliveries carry both.
	rotated := strings.TrimSpace(c.ok("webhook", "secret", "--rotate"))
	if !strings.HasPrefix(rotated, "whsec_") || rotated == secret {
		t.Fatalf("--rotate printed %q", rotated)
	}
	if cur := strings.TrimSpace(c.ok("webhook", "secret")); cur != rotated {
		t.Errorf("after rotation the secret is %s, want %s", cur, rotated)
	}
	c.ok("sessions", "send", sid, "--prompt", "second")
	waitSessionTerminal(t, st, sid, logs)
	time.Sleep(200 * time.Millisecond)
	waitDelivered(t, st, hook, sid, logs)
	c.ok("sessions", "archive", sid)
	waitDelivered(t, st, hook, sid, logs)
	after := hook.requests()[len(got):]
	if len(after) != 4 || !after[3].archive {
		t.Fatalf("after the follow-up and archive: %d webhooks %+v, want creating, running, finished, archived", len(after), after)
	}
	for _, h := range after {
		if len(strings.Fields(h.sig)) != 2 || !webhook.Verify(secret, h.id, h.ts, h.body, h.sig) || !webhook.Verify(rotated, h.id, h.ts, h.body, h.sig) {
			t.Errorf("webhook %s after rotation: signatures %q, want the new and the old", h.id, h.sig)
		}
	}

	// Secrets and the receiver's URL token never reach the log files.
	for _, name := range []string{runnerLogFile} {
		b, _ := os.ReadFile(filepath.Join(dataDir, name))
		for _, s := range []string{secret, rotated, "t0k"} {
			if strings.Contains(string(b), s) {
				t.Errorf("%s contains %q", name, s)
			}
		}
	}
}

// runnerProc is a `flapjack runner` the test starts, kills and restarts.
type runnerProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startRunnerProc(t *testing.T, dataDir string, env []string, log *os.File) *runnerProc {
	t.Helper()
	cmd := exec.Command(flapjackBin, "runner", "--log-level", "debug")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &runnerProc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
	// The runner writes its pid into the lock file once it holds the lock.
	// (Probing with flock here could make the starting runner think another
	// one holds the lock.)
	for i := 0; ; i++ {
		if raw, _ := os.ReadFile(filepath.Join(dataDir, runnerLockFile)); strings.TrimSpace(string(raw)) == strconv.Itoa(cmd.Process.Pid) {
			return p
		}
		select {
		case <-p.done:
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("the runner exited at start:\n%s", b[max(0, len(b)-5000):])
		default:
		}
		if i > 500 {
			t.Fatal("the runner never took the lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop ends the runner with sig and waits until it is gone and the lock free.
func (p *runnerProc) stop(t *testing.T, dataDir string, sig syscall.Signal) {
	t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the runner did not exit on %v", sig)
	}
	for i := 0; ; i++ {
		if lockFree(dataDir) {
			return
		}
		if i > 500 {
			t.Fatal("the lock is still held after the runner exited")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockFree probes the runner lock with a shared lock, which never writes the
// lock file.
func lockFree(dataDir string) bool {
	f, err := os.Open(filepath.Join(dataDir, runnerLockFile))
	if err != nil {
		return true
	}
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB) != nil {
		return false
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return true
}

// TestUnsafeWebhookURLsAreRefusedOverRESTAndMCP: the REST API and the MCP
// tools answer a refused URL the same way, through the Service: a
// VALIDATION_ERROR on webhookUrl, and no session.
func TestUnsafeWebhookURLsAreRefusedOverRESTAndMCP(t *testing.T) {
	dataDir := newDataDir(t)
	agentEnv := "FLAPJACK_LOCAL_AGENT_COMMAND=" + writeAgent(t, streamAgent)
	token := tokenRE.FindString(fjcli(t, dataDir, "token", "create", "--name", "hooks"))
	srv := startServe(t, dataDir, []string{agentEnv})
	repo := makeRepo(t)
	status, body := srv.call(t, "POST", "/api/code-agents", token, map[string]any{"defaultRepoUrl": repo, "runtime": "local"})
	var ag struct{ ID string }
	if json.Unmarshal(body, &ag); status != 201 || ag.ID == "" {
		t.Fatalf("create agent: %d %s", status, body)
	}
	for _, u := range []string{"https://169.254.169.254/latest/meta-data/", "https://[::ffff:127.0.0.1]/", "https://2130706433/", "http://hooks.example.com/"} {
		status, body := srv.call(t, "POST", "/api/code-sessions", token, map[string]any{"codeAgentId": ag.ID, "prompt": "x", "cursorApiKey": "key_0123456789abcdef", "webhookUrl": u})
		if status != 400 || !strings.Contains(string(body), `"code":"VALIDATION_ERROR"`) || !strings.Contains(string(body), "webhookUrl") {
			t.Errorf("REST start with %s: %d %s", u, status, body)
		}
	}
	if status, body := srv.call(t, "GET", "/api/code-sessions", token, nil); status != 200 || strings.Contains(string(body), "cs-") {
		t.Errorf("sessions after refused starts: %d %s", status, body)
	}

	mcp := startServer(t, dataDir, agentEnv)
	var st struct {
		SessionID string `json:"session_id"`
	}
	if e := mcp.call(t, "flapjack_start_code_session", map[string]any{"codeAgentId": ag.ID, "prompt": "x", "webhookUrl": "https://localhost/"}, nil); !strings.HasPrefix(e, "VALIDATION_ERROR") || !strings.Contains(e, "webhookUrl") {
		t.Errorf("MCP start with localhost = %q", e)
	}
	if e := mcp.call(t, "flapjack_start_code_session", map[string]any{"codeAgentId": ag.ID, "prompt": "x"}, &st); e != "" {
		t.Fatal(e)
	}
	if e := mcp.call(t, "flapjack_update_code_session", map[string]any{"codeSessionId": st.SessionID, "webhookUrl": "https://metadata.google.internal/"}, nil); !strings.HasPrefix(e, "VALIDATION_ERROR") {
		t.Errorf("MCP update with a metadata name = %q", e)
	}
	status, body = srv.call(t, "PATCH", "/api/code-sessions/"+st.SessionID, token, map[string]any{"webhookUrl": "https://10.0.0.1/"})
	if status != 400 || !strings.Contains(string(body), "webhookUrl") {
		t.Errorf("REST update with a private address: %d %s", status, body)
	}
	mcp.call(t, "flapjack_cancel_code_session", map[string]any{"codeSessionId": st.SessionID}, nil)
}
