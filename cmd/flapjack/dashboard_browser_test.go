//go:build unix

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// browserAgent prints an assistant message and lines that try to run
// script in the page, then a step a little apart from the next, so the
// timeline has to grow while it is watched; "sleep" keeps it running.
const browserAgent = `
prompt=$(cat)
printf '{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"**Working** on <script>window.__xss=1</script> and <img src=x onerror=\"window.__xss=2\">"}]},"session_id":"chat-1"}\n'
echo '<img src=x onerror="window.__xss=3"><script>window.__xss=4</script>'
printf '{"type":"tool_call","subtype":"started","call_id":"c1","tool_call":{"writeToolCall":{"args":{"path":"notes.txt"}}}}\n'
echo "$prompt" >> notes.txt
printf '{"type":"tool_call","subtype":"completed","call_id":"c1","tool_call":{"writeToolCall":{"args":{"path":"notes.txt"},"result":{"success":{}}}}}\n'
i=0
while [ $i -lt 6 ]; do echo "step $i of $prompt"; sleep 0.3; i=$((i+1)); done
case "$prompt" in *sleep*) sleep 60 ;; esac
printf '{"type":"result","subtype":"success","is_error":false,"duration_ms":5,"result":"done","session_id":"chat-1"}\n'
`

// chromium finds the browser the dashboard tests drive: Debian's chromium
// (installed by .ci/run), or another on PATH.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("FLAPJACK_REQUIRE_BROWSER") != "" {
		t.Fatal("no chromium on PATH; .ci/run installs Debian's chromium package")
	}
	t.Skip("no chromium on PATH (FLAPJACK_REQUIRE_BROWSER makes this a failure)")
	return ""
}

// newTab starts headless Chromium for the test (no sandbox: CI runs as
// root) and returns a tab's context, ended with the test or after 2 min.
func newTab(t *testing.T, bin string) context.Context {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1200, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(cancelCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancelTimeout)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// TestDashboardInABrowser drives the dashboard in headless Chromium against
// a real flapjack serve with a local agent: sign in, start a session from a
// template, watch its events arrive without a reload, send a follow-up,
// archive it, cancel another (seen changing in the live list), check that
// no agent output ran as script, look at the page 375 px wide, sign out. A
// screenshot of the session page is kept in the test's artifact directory.
func TestDashboardInABrowser(t *testing.T) {
	bin := chromium(t)
	dataDir := newDataDir(t)
	agent := writeAgent(t, browserAgent)
	s := startServe(t, dataDir, []string{"FLAPJACK_LOCAL_AGENT_COMMAND=" + agent})
	token := tokenRE.FindString(s.stderr.String())
	var ag struct{ ID string }
	status, raw := s.call(t, "POST", "/api/code-agents", token, map[string]any{"name": `<b onmouseover="window.__xss=5">fixer</b>`,
		"defaultRepoUrl": makeRepo(t), "runtime": "local"})
	if status != 201 {
		t.Fatalf("create template: %d %s", status, raw)
	}
	json.Unmarshal(raw, &ag)

	ctx := newTab(t, bin)
	// Confirmation dialogs (cancel, archive) are accepted.
	go func() {
		for _, err := range chromedp.Events(ctx, page.JavascriptDialogOpening) {
			if err != nil {
				return
			}
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	pageText := func() string {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		return body
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v\npage:\n%s\nserve:\n%s", what, err, pageText(), s.stderr.String())
		}
	}
	eval := func(what, js string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(`+js+`)`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	waitFor := func(what, js string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(60*time.Second), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
			t.Fatalf("waiting for %s: %v\npage:\n%s", what, err, pageText())
		}
	}

	// Sign in: the token is typed once and traded for a cookie.
	do("open", chromedp.Navigate(s.url+"/"), chromedp.WaitVisible(chromedp.ID("token")))
	do("sign in", chromedp.SendKeys(chromedp.ID("token"), token), chromedp.Click(chromedp.CSS("#signin button[type=submit]")),
		chromedp.WaitVisible(chromedp.ID("sessions")))
	if stored := eval("storage", `JSON.stringify(localStorage)+JSON.stringify(sessionStorage)+document.cookie`); strings.Contains(stored, token) || strings.Contains(stored, "flapjack=") {
		t.Fatalf("the token or the HttpOnly cookie is readable by the page: %s", stored)
	}

	// Start a session from the template and watch it without reloading.
	do("template", chromedp.Navigate(s.url+"/#/templates/"+ag.ID), chromedp.WaitVisible(chromedp.ID("s-prompt")))
	do("start", chromedp.SendKeys(chromedp.ID("s-prompt"), "first task"), chromedp.Click(chromedp.ID("s-start")))
	waitFor("the first step", `!!document.getElementById('timeline') && document.getElementById('timeline').textContent.includes('step 0 of first task')`)
	eval("mark the page", `window.__samePage = true`)
	waitFor("the last step, live", `document.getElementById('timeline').textContent.includes('step 5 of first task')`)
	waitFor("finished", `document.querySelector('h1 .badge')?.textContent === 'finished'`)
	if same := eval("no reload", `window.__samePage === true`); same != "true" {
		t.Fatal("the page was reloaded while the session ran")
	}

	// Agent output is text: the strings are there, nothing ran.
	xss := eval("xss", `({ran: window.__xss ?? null, made: document.querySelectorAll('#main img, #main script, #main b').length,
		shown: document.getElementById('timeline').textContent.includes('<script>window.__xss=1</script>') &&
			document.getElementById('timeline').textContent.includes('<img src=x onerror="window.__xss=3">') &&
			document.querySelector('h1').textContent.includes('<b onmouseover'),
		bold: document.querySelector('#timeline .t-assistant strong')?.textContent === 'Working'})`)
	if xss != `{"ran":null,"made":0,"shown":true,"bold":true}` {
		t.Fatalf("agent output in the page: %s; want the strings shown as text, no element made from them, Markdown bold kept", xss)
	}

	// Tool calls are folded with their arguments; the run's file edit names
	// the file.
	if got := eval("tools", `({folded: !!document.querySelector('#timeline .t-tool_call details:not([open]) summary'),
		args: [...document.querySelectorAll('#timeline .t-tool_call pre')].some(p => p.textContent.includes('notes.txt')),
		edit: [...document.querySelectorAll('#timeline .t-file_edit code')].some(c => c.textContent === 'notes.txt')})`); got != `{"folded":true,"args":true,"edit":true}` {
		t.Errorf("tool calls and file edits in the timeline: %s", got)
	}

	// A follow-up runs and its events arrive on the same page.
	do("follow-up", chromedp.SendKeys(chromedp.ID("followup"), "second task"), chromedp.Click(chromedp.CSS("#followup-form button[type=submit]")))
	waitFor("the follow-up's steps", `document.getElementById('timeline').textContent.includes('step 5 of second task')`)
	waitFor("two messages", `document.querySelectorAll('.messages .msg').length === 2`)
	waitFor("finished again", `document.querySelector('h1 .badge')?.textContent === 'finished'`)
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.ArtifactDir()
	if err := os.WriteFile(filepath.Join(dir, "session.png"), shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the session page: %s", filepath.Join(dir, "session.png"))

	// Archive it (confirmed).
	do("archive", chromedp.WaitVisible(chromedp.ID("archive")), chromedp.Click(chromedp.ID("archive")))
	waitFor("archived", `document.querySelector('h1').textContent.includes('archived')`)

	// Another session; the list shows it change live.
	status, raw = s.call(t, "POST", "/api/code-sessions", token, map[string]any{"codeAgentId": ag.ID, "prompt": "sleep please"})
	var st struct {
		SessionID string `json:"session_id"`
	}
	json.Unmarshal(raw, &st)
	if status != 201 {
		t.Fatalf("start: %d %s", status, raw)
	}
	do("list", chromedp.Navigate(s.url+"/#/"), chromedp.WaitVisible(chromedp.ID("sessions")))
	row := fmt.Sprintf(`document.querySelector('tr[data-id="%s"] .badge')?.textContent`, st.SessionID)
	waitFor("running in the list", row+` === 'running'`)
	eval("mark the list", `window.__samePage = true`)
	status, raw = s.call(t, "POST", "/api/code-sessions/"+st.SessionID+"/cancel", token, nil)
	if status != 200 {
		t.Fatalf("cancel: %d %s", status, raw)
	}
	waitFor("cancelled in the list, live", row+` === 'cancelled'`)
	if same := eval("no reload", `window.__samePage === true`); same != "true" {
		t.Fatal("the list reloaded")
	}

	// And one cancelled from its page, with the button (confirmed).
	status, raw = s.call(t, "POST", "/api/code-sessions", token, map[string]any{"codeAgentId": ag.ID, "prompt": "sleep again"})
	json.Unmarshal(raw, &st)
	do("open the running one", chromedp.Navigate(s.url+"/#/s/"+st.SessionID))
	waitFor("running", `document.querySelector('h1 .badge')?.textContent === 'running'`)
	do("cancel", chromedp.Click(chromedp.ID("cancel")))
	waitFor("cancelled", `document.querySelector('h1 .badge')?.textContent === 'cancelled'`)

	// 375 px wide: nothing needs sideways scrolling.
	do("narrow", chromedp.EmulateViewport(375, 800), chromedp.Navigate(s.url+"/#/"), chromedp.WaitVisible(chromedp.ID("sessions")))
	if width, _ := strconv.Atoi(eval("width", `document.documentElement.scrollWidth`)); width > 375 || width == 0 {
		wide := eval("wide", `[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 376).map(e => e.tagName + '.' + e.className + '#' + e.id + ' ' + Math.round(e.getBoundingClientRect().right)).slice(0, 8)`)
		t.Errorf("the list is %d px wide at a 375 px viewport: %s", width, wide)
	}

	// Templates: create, edit and delete from the page.
	do("new template", chromedp.EmulateViewport(1200, 900), chromedp.Navigate(s.url+"/#/templates/new"), chromedp.WaitVisible(chromedp.ID("t-name")))
	do("fill", chromedp.SendKeys(chromedp.ID("t-name"), "made in the page"), chromedp.SendKeys(chromedp.ID("t-repo"), "https://github.com/acme/app"),
		chromedp.Click(chromedp.CSS("#template-form button[type=submit]")))
	waitFor("saved", `/^#\/templates\/ca-/.test(location.hash) && !!document.getElementById('t-delete')`)
	do("edit", chromedp.SetValue(chromedp.ID("t-name"), "renamed in the page"), chromedp.Click(chromedp.CSS("#template-form button[type=submit]")))
	waitFor("renamed", `document.querySelector('#template-form h1')?.textContent === 'Template renamed in the page'`)
	do("delete", chromedp.Click(chromedp.ID("t-delete")))
	waitFor("gone from the list", `location.hash === '#/templates' && !!document.getElementById('new-template') && !document.getElementById('main').textContent.includes('renamed in the page')`)

	// Sign out: back to the sign-in form, and the API no longer answers the page.
	do("sign out", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("token")))
	after, err := chromedp.Run(ctx, chromedp.Evaluate[int](`(async () => (await fetch('/api/code-sessions')).status)()`, chromedp.EvalAwaitPromise))
	if err != nil || after != 401 {
		t.Errorf("the API answered the signed-out page %d (%v), want 401", after, err)
	}
}
