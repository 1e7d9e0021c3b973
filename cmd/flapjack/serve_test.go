//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/spf13/pflag"
)

// serveProc is one `flapjack serve` process on a free loopback port.
type serveProc struct {
	cmd     *exec.Cmd
	url     string
	stderr  *lockedBuffer
	dataDir string
	client  *http.Client
	exited  chan error
}

var servingURL = regexp.MustCompile(`msg="serving the REST API" url=(\S+)`)

// startServe runs the binary's serve command and waits until it answers.
// Its client validates every response against the /openapi.json it serves.
func startServe(t testing.TB, dataDir string, env []string, args ...string) *serveProc {
	t.Helper()
	cmd := exec.Command(flapjackBin, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "FLAPJACK_DATA_DIR="+dataDir, "FLAPJACK_RUNTIME=local", "FLAPJACK_LOCAL_AGENT=exec", "FLAPJACK_KILL_GRACE=1s")
	cmd.Env = append(cmd.Env, env...)
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, stderr: stderr, dataDir: dataDir, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() { p.stop(t) })
	deadline := time.Now().Add(20 * time.Second)
	for p.url == "" {
		if m := servingURL.FindStringSubmatch(stderr.String()); m != nil {
			p.url = m[1]
			break
		}
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("serve exited: %v\n%s", err, stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s", stderr)
		}
	}
	p.client = &http.Client{Transport: newValidator(t, p.url, http.DefaultTransport)}
	return p
}

// stop sends SIGTERM and waits for the exit status.
func (p *serveProc) stop(t testing.TB) error {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
		return err
	case <-time.After(40 * time.Second):
		p.cmd.Process.Kill()
		t.Errorf("serve did not stop on SIGTERM:\n%s", p.stderr)
		return nil
	}
}

// call sends a request with a bearer token (none when "") and JSON body.
func (p *serveProc) call(t testing.TB, method, path, token string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, p.url+path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := p.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// validator is an http.RoundTripper that checks every response against the
// OpenAPI document the server itself serves (kin-openapi).
type validator struct {
	t      testing.TB
	base   http.RoundTripper
	router routers.Router
}

func newValidator(t testing.TB, url string, base http.RoundTripper) *validator {
	t.Helper()
	res, err := (&http.Client{Transport: base}).Get(url + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err == nil {
		err = doc.Validate(context.Background())
	}
	if err != nil {
		t.Fatalf("the served /openapi.json is not valid: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &validator{t: t, base: base, router: router}
}

func (v *validator) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := v.base.RoundTrip(req)
	if err != nil || strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		return res, err // streams are validated event by event in restshim's tests
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	route, params, ferr := v.router.FindRoute(req)
	if ferr != nil {
		v.t.Errorf("%s %s: not in the OpenAPI document: %v", req.Method, req.URL.Path, ferr)
		return res, nil
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 res.StatusCode,
		Header:                 res.Header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		v.t.Errorf("%s %s: response does not match the OpenAPI document: %v\n%s", req.Method, req.URL.Path, err, body)
	}
	return res, nil
}

// fjcli runs a flapjack command on a data directory and returns its stdout.
func fjcli(t *testing.T, dataDir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(flapjackBin, args...)
	cmd.Env = append(os.Environ(), "FLAPJACK_DATA_DIR="+dataDir)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("flapjack %v: %v\n%s", args, err, errb.String())
	}
	return out.String()
}

var tokenRE = regexp.MustCompile(`fj_live_[a-z2-7]{39}`)

// replayStep is one file of testdata/rest: a request of the spec and the
// status and shape of its answer (the spec's own example response).
type replayStep struct {
	Spec    string `json:"spec"`
	Curl    string `json:"curl"`
	Request struct {
		Method string          `json:"method"`
		Path   string          `json:"path"`
		Body   json.RawMessage `json:"body"`
		Token  string          `json:"token"`
	} `json:"request"`
	Status int               `json:"status"`
	Shape  json.RawMessage   `json:"shape"`
	Code   string            `json:"code"`
	Save   map[string]string `json:"save"`
	Wait   *struct {
		Path   string `json:"path"`
		Field  string `json:"field"`
		Equals string `json:"equals"`
	} `json:"wait"`
}

// TestServeReplaysTheSpecExamples replays testdata/rest against a running
// `flapjack serve` with a token made by `flapjack token create`: every
// endpoint of the spec, its curl examples included, with the spec's example
// responses as the expected shapes.
func TestServeReplaysTheSpecExamples(t *testing.T) {
	dataDir := newDataDir(t)
	token := strings.TrimSpace(fjcli(t, dataDir, "token", "create", "--name", "replay"))
	if !tokenRE.MatchString(token) {
		t.Fatalf("token create printed %q", token)
	}
	// Webhooks go to a loopback receiver: the server checks a URL's
	// addresses when it is set, and the session's later status changes are
	// really sent.
	hook := newHookReceiver(t, 0)
	s := startServe(t, dataDir, []string{"FLAPJACK_LOCAL_AGENT_COMMAND=" + writeAgent(t, streamAgent), "FLAPJACK_WEBHOOK_ALLOW_PRIVATE=1"})
	if strings.Contains(s.stderr.String(), "created the first API token") {
		t.Error("serve minted a first token although one existed")
	}
	vars := map[string]string{"repo": makeRepo(t), "webhook_url": hook.srv.URL + "/flapjack"}
	subst := func(s string) string {
		for k, v := range vars {
			s = strings.ReplaceAll(s, "{{"+k+"}}", v)
		}
		return s
	}
	files, _ := filepath.Glob("../../testdata/rest/*.json")
	sort.Strings(files)
	if len(files) < 13 {
		t.Fatalf("only %d replay files", len(files))
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var st replayStep
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		name := filepath.Base(f)
		tok := token
		if st.Request.Token == "none" {
			tok = ""
		}
		var body any
		if len(st.Request.Body) > 0 {
			body = json.RawMessage(subst(string(st.Request.Body)))
		}
		status, got := s.call(t, st.Request.Method, subst(st.Request.Path), tok, body)
		if status != st.Status {
			t.Fatalf("%s (%s): status %d, want %d: %s", name, st.Spec, status, st.Status, got)
		}
		var gotV, wantV any
		json.Unmarshal(got, &gotV)
		json.Unmarshal(st.Shape, &wantV)
		if err := sameShape(wantV, gotV, "$"); err != nil {
			t.Errorf("%s (%s): %v\n%s", name, st.Spec, err, got)
		}
		if st.Code != "" && !strings.Contains(string(got), `"code":"`+st.Code+`"`) {
			t.Errorf("%s: code is not %s: %s", name, st.Code, got)
		}
		for k, field := range st.Save {
			m, _ := gotV.(map[string]any)
			v, _ := m[field].(string)
			if v == "" {
				t.Fatalf("%s: no %q to save in %s", name, field, got)
			}
			vars[k] = v
		}
		if st.Wait != nil {
			path := subst(st.Wait.Path)
			deadline := time.Now().Add(30 * time.Second)
			for {
				_, b := s.call(t, "GET", path, token, nil)
				var m map[string]any
				json.Unmarshal(b, &m)
				if m[st.Wait.Field] == st.Wait.Equals {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %s never reached %s=%s: %s\n%s", name, path, st.Wait.Field, st.Wait.Equals, b, s.stderr)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	if strings.Contains(s.stderr.String(), token) {
		t.Error("the server log contains the token")
	}
}

// sameShape checks that got has every key of want with a value of the same
// JSON type (recursively; null on either side matches, and an array's
// elements are checked against want's first element).
func sameShape(want, got any, at string) error {
	if want == nil || got == nil {
		return nil
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object, got %T", at, got)
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				return fmt.Errorf("%s: no field %q", at, k)
			}
			if err := sameShape(wv, gv, at+"."+k); err != nil {
				return err
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			return fmt.Errorf("%s: want an array, got %T", at, got)
		}
		if len(w) > 0 && len(g) == 0 {
			return fmt.Errorf("%s: want items, got none", at)
		}
		for i, gv := range g {
			if err := sameShape(w[0], gv, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	default:
		if fmt.Sprintf("%T", want) != fmt.Sprintf("%T", got) {
			return fmt.Errorf("%s: want %T, got %T", at, want, got)
		}
	}
	return nil
}

// TestServeFirstRunPrintsATokenOnce: a data directory without tokens gets
// one on the first serve, printed once to stderr with a curl example; the
// next serve prints none; the plaintext is in no file of the directory.
func TestServeFirstRunPrintsATokenOnce(t *testing.T) {
	dataDir := newDataDir(t)
	s := startServe(t, dataDir, nil)
	logs := s.stderr.String()
	token := tokenRE.FindString(logs)
	if token == "" || !strings.Contains(logs, `curl -H "Authorization: Bearer `+token+`" `+s.url+"/api/code-agents") {
		t.Fatalf("no token or no curl example on stderr:\n%s", logs)
	}
	if status, b := s.call(t, "GET", "/api/code-agents", token, nil); status != 200 {
		t.Fatalf("the printed token: %d %s", status, b)
	}
	if status, _ := s.call(t, "GET", "/api/code-agents", "", nil); status != 401 {
		t.Errorf("no token: %d", status)
	}
	scanDataDir(t, dataDir, token)
	if err := s.stop(t); err != nil {
		t.Fatalf("serve exited with %v", err)
	}
	scanDataDir(t, dataDir, token)
	s2 := startServe(t, dataDir, nil)
	if tokenRE.MatchString(s2.stderr.String()) {
		t.Errorf("the second serve printed a token:\n%s", s2.stderr)
	}
	if status, _ := s2.call(t, "GET", "/api/code-agents", token, nil); status != 200 {
		t.Errorf("the first token after a restart: %d", status)
	}
	if out := fjcli(t, dataDir, "token", "list"); !strings.Contains(out, token[:14]+"…") || strings.Contains(out, token) {
		t.Errorf("token list shows no prefix, or the whole token:\n%s", out)
	}
}

// scanDataDir fails if any file of the data directory (database, WAL, SHM,
// logs) holds the token or its random part.
func scanDataDir(t *testing.T, dataDir, token string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dataDir, "*"))
	n := 0
	for _, f := range files {
		if info, err := os.Stat(f); err != nil || info.IsDir() {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n++
		if bytes.Contains(b, []byte(token)) || bytes.Contains(b, []byte(token[14:])) {
			t.Errorf("%s holds the token's plaintext", filepath.Base(f))
		}
	}
	if n < 2 {
		t.Errorf("scanned only %d files", n)
	}
}

// TestAccountsCLIAndIsolation: org and user commands build two teams; each
// token sees its own org only, through the running server; a token revoked
// with the CLI fails on the very next request.
func TestAccountsCLIAndIsolation(t *testing.T) {
	dataDir := newDataDir(t)
	acme := strings.TrimSpace(fjcli(t, dataDir, "org", "create", "acme"))
	fjcli(t, dataDir, "org", "create", "globex")
	alice := strings.Fields(fjcli(t, dataDir, "user", "create", "alice", "--org", "acme", "--token"))
	bobID := strings.TrimSpace(fjcli(t, dataDir, "user", "create", "bob"))
	fjcli(t, dataDir, "org", "add-member", "globex", "bob")
	bobTok := strings.TrimSpace(fjcli(t, dataDir, "token", "create", "--name", "bob-ci", "--user", bobID))
	if len(alice) != 2 || !tokenRE.MatchString(alice[1]) || !tokenRE.MatchString(bobTok) {
		t.Fatalf("user create --token printed %q, token create %q", alice, bobTok)
	}
	if out := fjcli(t, dataDir, "org", "list"); !strings.Contains(out, acme) || !strings.Contains(out, "globex") {
		t.Errorf("org list:\n%s", out)
	}
	if out := fjcli(t, dataDir, "user", "list"); !strings.Contains(out, "alice") || !strings.Contains(out, acme) {
		t.Errorf("user list:\n%s", out)
	}
	s := startServe(t, dataDir, nil)
	status, b := s.call(t, "POST", "/api/code-agents", alice[1], map[string]any{"name": "alice's"})
	var ag struct {
		ID    string `json:"id"`
		OrgID string `json:"org_id"`
	}
	json.Unmarshal(b, &ag)
	if status != 201 || ag.OrgID != acme {
		t.Fatalf("alice's create: %d %s", status, b)
	}
	if status, _ := s.call(t, "GET", "/api/code-agents/"+ag.ID, bobTok, nil); status != 404 {
		t.Errorf("bob gets alice's agent: %d", status)
	}
	if _, b := s.call(t, "GET", "/api/code-agents", bobTok, nil); string(b) != "[]\n" {
		t.Errorf("bob's list: %s", b)
	}
	// Revoke bob's token with the CLI while the server runs.
	list := fjcli(t, dataDir, "token", "list")
	var id string
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, "bob-ci") {
			id = strings.Fields(line)[0]
		}
	}
	fjcli(t, dataDir, "token", "revoke", id)
	if status, _ := s.call(t, "GET", "/api/code-agents", bobTok, nil); status != 401 {
		t.Errorf("a revoked token: %d", status)
	}
	if out := fjcli(t, dataDir, "token", "list"); !strings.Contains(out, "revoked") {
		t.Errorf("token list does not show the revocation:\n%s", out)
	}
}

// TestMCPAndRESTShareSessions: an MCP server and a REST server on one data
// directory at the same time see the same agents and sessions, each
// immediately after the other wrote.
func TestMCPAndRESTShareSessions(t *testing.T) {
	dataDir := newDataDir(t)
	agent := "FLAPJACK_LOCAL_AGENT_COMMAND=" + writeAgent(t, streamAgent)
	token := strings.TrimSpace(fjcli(t, dataDir, "token", "create"))
	rest := startServe(t, dataDir, []string{agent})
	m := startServer(t, dataDir, agent)

	status, b := rest.call(t, "POST", "/api/code-agents", token, map[string]any{"name": "shared", "defaultRepoUrl": makeRepo(t)})
	var ag struct{ ID string }
	json.Unmarshal(b, &ag)
	if status != 201 {
		t.Fatalf("REST create: %d %s", status, b)
	}
	var got struct{ ID string }
	if e := m.call(t, "flapjack_get_code_agent", map[string]any{"codeAgentId": ag.ID}, &got); e != "" || got.ID != ag.ID {
		t.Fatalf("MCP does not see the REST agent: %q %+v", e, got)
	}
	var st struct {
		SessionID string `json:"session_id"`
	}
	if e := m.call(t, "flapjack_start_code_session", map[string]any{"codeAgentId": ag.ID, "prompt": "first task"}, &st); e != "" {
		t.Fatal(e)
	}
	if status, b := rest.call(t, "GET", "/api/code-sessions/"+st.SessionID, token, nil); status != 200 {
		t.Fatalf("REST does not see the MCP session: %d %s", status, b)
	}
	// The runner of the REST server runs it; both see it finish.
	m.waitTerminal(t, st.SessionID, 0)
	status, b = rest.call(t, "POST", "/api/code-sessions/"+st.SessionID+"/messages", token, map[string]any{"prompt": "second task"})
	if status != 201 {
		t.Fatalf("REST follow-up: %d %s", status, b)
	}
	var sess struct {
		Messages []any `json:"messages"`
	}
	m.call(t, "flapjack_get_code_session", map[string]any{"codeSessionId": st.SessionID}, &sess)
	// Let the follow-up finish, so nothing is left for a runner when the test ends.
	waitStatus(t, m, st.SessionID, "finished")
	if len(sess.Messages) != 2 {
		t.Errorf("MCP sees %d messages after the REST follow-up", len(sess.Messages))
	}
	var list []struct{ ID string }
	_, b = rest.call(t, "GET", "/api/code-sessions", token, nil)
	json.Unmarshal(b, &list)
	if len(list) != 1 || list[0].ID != st.SessionID {
		t.Errorf("REST list: %s", b)
	}
	if !strings.Contains(rest.stderr.String(), "runner started in this process") {
		t.Errorf("serve does not hold the runner:\n%s", rest.stderr)
	}
}

// TestServeTakesOverTheRunner: with a runner already holding the data
// directory, serve answers at once, and takes the runner over when that
// runner exits.
func TestServeTakesOverTheRunner(t *testing.T) {
	dataDir := newDataDir(t)
	os.MkdirAll(dataDir, 0o700)
	runner := exec.Command(flapjackBin, "runner", "--data-dir", dataDir)
	runnerErr := &lockedBuffer{}
	runner.Stderr = runnerErr
	if err := runner.Start(); err != nil {
		t.Fatal(err)
	}
	defer runner.Process.Kill()
	for !strings.Contains(runnerErr.String(), "runner started") {
		time.Sleep(20 * time.Millisecond)
	}
	s := startServe(t, dataDir, nil)
	if status, _ := s.call(t, "GET", "/healthz", "", nil); status != 200 {
		t.Fatalf("healthz while another runner runs: %d", status)
	}
	if !strings.Contains(s.stderr.String(), "another runner holds this data directory") {
		t.Errorf("serve did not notice the other runner:\n%s", s.stderr)
	}
	runner.Process.Signal(syscall.SIGTERM)
	runner.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(s.stderr.String(), "runner started in this process") {
		if time.Now().After(deadline) {
			t.Fatalf("serve did not take the runner over:\n%s", s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	pid, _ := os.ReadFile(filepath.Join(dataDir, "runner.lock"))
	if strings.TrimSpace(string(pid)) != strconv.Itoa(s.cmd.Process.Pid) {
		t.Errorf("runner.lock holds %q, serve is %d", pid, s.cmd.Process.Pid)
	}
}

// TestServeShutsDownGracefully: on SIGTERM a long poll in flight still gets
// its answer, an open event stream ends cleanly, the process exits 0 and
// gives the runner lock back.
func TestServeShutsDownGracefully(t *testing.T) {
	dataDir := newDataDir(t)
	token := strings.TrimSpace(fjcli(t, dataDir, "token", "create"))
	s := startServe(t, dataDir, []string{"FLAPJACK_LOCAL_AGENT_COMMAND=" + writeAgent(t, streamAgent)}, "--sse-heartbeat", "100ms")
	_, b := s.call(t, "POST", "/api/code-agents", token, map[string]any{"defaultRepoUrl": makeRepo(t)})
	var ag struct{ ID string }
	json.Unmarshal(b, &ag)
	_, b = s.call(t, "POST", "/api/code-sessions", token, map[string]any{"codeAgentId": ag.ID, "prompt": "please sleep", "cursorApiKey": "cursor_x_0123456789ab"})
	var st struct {
		SessionID string `json:"session_id"`
	}
	json.Unmarshal(b, &st)

	req, _ := http.NewRequest("GET", s.url+"/api/code-sessions/"+st.SessionID+"/events/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	stream, err := http.DefaultClient.Do(req)
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("stream: %v %v", err, stream)
	}
	br := bufio.NewReader(stream.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	poll := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", s.url+"/api/code-sessions/"+st.SessionID+"/events?since=100000&wait=2", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			poll <- 0
			return
		}
		res.Body.Close()
		poll <- res.StatusCode
	}()
	time.Sleep(300 * time.Millisecond) // the long poll is in flight
	start := time.Now()
	if err := s.stop(t); err != nil {
		t.Errorf("serve exited with %v\n%s", err, s.stderr)
	}
	if code := <-poll; code != 200 {
		t.Errorf("the long poll in flight got %d", code)
	}
	if _, err := io.ReadAll(br); err != nil {
		t.Errorf("the stream did not end cleanly: %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	if held, _ := runnerUp(dataDir); held {
		// A detached runner may have been handed queued work; none is queued here.
		t.Error("the runner lock is still held after serve exited")
	}
}

// TestServeTLSAndNonLoopbackWarning: --tls-cert/--tls-key serve HTTPS; plain
// HTTP on a non-loopback address warns.
func TestServeTLSAndNonLoopbackWarning(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	dataDir := newDataDir(t)
	cmd := exec.Command(flapjackBin, "serve", "--addr", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile)
	cmd.Env = append(os.Environ(), "FLAPJACK_DATA_DIR="+dataDir)
	errb := &lockedBuffer{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	var url string
	for i := 0; i < 500 && url == ""; i++ {
		if m := servingURL.FindStringSubmatch(errb.String()); m != nil {
			url = m[1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("serve with TLS: %q\n%s", url, errb)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	res, err := client.Get(url + "/healthz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("https healthz: %v %v", err, res)
	}
	res.Body.Close()
	if strings.Contains(errb.String(), "non-loopback") {
		t.Error("warned about TLS on loopback")
	}

	s := startServe(t, newDataDir(t), nil, "--addr", "0.0.0.0:0")
	if !strings.Contains(s.stderr.String(), "non-loopback address without TLS") {
		t.Errorf("no warning for plain HTTP on 0.0.0.0:\n%s", s.stderr)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and returns its files and a pool trusting it.
func selfSigned(t *testing.T, dir string) (string, string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "flapjack test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestServeFlagsHaveEnvTwins: every serve flag names its FLAPJACK_* variable,
// and the variable sets the default.
func TestServeFlagsHaveEnvTwins(t *testing.T) {
	t.Setenv("FLAPJACK_ADDR", "127.0.0.1:9999")
	t.Setenv("FLAPJACK_SSE_HEARTBEAT", "3s")
	g := &globals{}
	for _, cmd := range []*commandFlags{{"serve", newServeCmd(g).Flags()}, {"token create", newTokenCmd(g).Commands()[0].Flags()}, {"user create", newUserCmd(g).Commands()[0].Flags()}} {
		cmd.flags.VisitAll(func(f *pflagFlag) {
			if !strings.Contains(f.Usage, "env FLAPJACK_") {
				t.Errorf("%s --%s has no FLAPJACK_* twin: %q", cmd.name, f.Name, f.Usage)
			}
		})
	}
	f := newServeCmd(g).Flags()
	if v, _ := f.GetString("addr"); v != "127.0.0.1:9999" {
		t.Errorf("FLAPJACK_ADDR: --addr defaults to %q", v)
	}
	if v, _ := f.GetDuration("sse-heartbeat"); v != 3*time.Second {
		t.Errorf("FLAPJACK_SSE_HEARTBEAT: %v", v)
	}
}

type pflagFlag = pflag.Flag

type commandFlags struct {
	name  string
	flags *pflag.FlagSet
}
