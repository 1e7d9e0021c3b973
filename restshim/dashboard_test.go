package restshim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flapjack-dev/flapjack/core"
)

// browser is an http.Client with a cookie jar that sends the Origin a page
// of the server would.
type browser struct {
	t      *testing.T
	c      *http.Client
	base   string
	origin string
	csrf   string
}

func newBrowser(t *testing.T, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, c: &http.Client{Jar: jar}, base: base, origin: base}
}

func (b *browser) do(method, path string, body any, extra ...string) (int, []byte, http.Header) {
	b.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, b.base+path, rd)
	if b.origin != "" {
		req.Header.Set("Origin", b.origin)
	}
	if b.csrf != "" {
		req.Header.Set(csrfHeader, b.csrf)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "" {
			req.Header.Del(extra[i])
		} else {
			req.Header.Set(extra[i], extra[i+1])
		}
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, raw, res.Header
}

// TestDashboardSignInAndCSRF: the page and its files are served with a
// strict CSP; a token is exchanged for an HttpOnly, SameSite=Strict cookie
// (only from the page's own origin); the cookie reads the API, but a change
// needs the page's Origin and the CSRF token; sign-out and the token's
// revocation both end the session; the token never comes back.
func TestDashboardSignInAndCSRF(t *testing.T) {
	e := newEnv(t)
	b := newBrowser(t, e.srv.URL)
	for _, p := range []string{"/", "/ui/app.js", "/ui/app.css"} {
		status, body, hdr := b.do("GET", p, nil)
		if status != 200 || len(body) == 0 {
			t.Fatalf("GET %s = %d", p, status)
		}
		csp := hdr.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") || hdr.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: CSP %q, nosniff %q", p, csp, hdr.Get("X-Content-Type-Options"))
		}
	}
	for _, p := range []string{"/ui/", "/ui/index.html", "/ui/nope.js", "/ui/..%2fdashboard.go"} {
		if status, _, _ := b.do("GET", p, nil); status == 200 {
			t.Errorf("GET %s answered 200", p)
		}
	}
	_, page, _ := b.do("GET", "/", nil)
	if bytes.Contains(page, []byte("<script>")) || bytes.Contains(page, []byte(" style=")) || bytes.Contains(page, []byte(" on")) {
		t.Error("the page has inline script, style or handlers")
	}

	// Not signed in: the API is 401; a bad token or another origin cannot sign in.
	if status, _, _ := b.do("GET", "/api/code-agents", nil); status != 401 {
		t.Fatalf("API without a cookie = %d", status)
	}
	if status, _, _ := b.do("POST", "/ui/signin", map[string]string{"token": "fj_live_nope"}); status != 401 {
		t.Errorf("sign in with a bad token = %d, want 401", status)
	}
	other := newBrowser(t, e.srv.URL)
	other.origin = "https://evil.example"
	if status, _, _ := other.do("POST", "/ui/signin", map[string]string{"token": e.token}); status != 403 {
		t.Errorf("sign in from another origin = %d, want 403", status)
	}
	status, body, hdr := b.do("POST", "/ui/signin", map[string]string{"token": e.token})
	if status != 200 {
		t.Fatalf("sign in = %d %s", status, body)
	}
	cookie := hdr.Get("Set-Cookie")
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("cookie %q lacks %s", cookie, want)
		}
	}
	if strings.Contains(cookie, e.token) || bytes.Contains(body, []byte(e.token)) {
		t.Fatal("the token came back to the browser")
	}
	var me meBody
	json.Unmarshal(body, &me)
	if me.CSRF == "" || me.UserID != e.owner.UserID {
		t.Fatalf("sign in answered %s", body)
	}

	// Reads with the cookie; changes need the page's Origin and CSRF token.
	if status, _, _ := b.do("GET", "/api/code-agents", nil); status != 200 {
		t.Fatalf("API with the cookie = %d", status)
	}
	create := map[string]any{"name": "from the page"}
	if status, _, _ := b.do("POST", "/api/code-agents", create); status != 403 {
		t.Errorf("a change without the CSRF token = %d, want 403", status)
	}
	b.csrf = me.CSRF
	if status, _, _ := b.do("POST", "/api/code-agents", create, "Origin", ""); status != 403 {
		t.Errorf("a change without Origin = %d, want 403", status)
	}
	if status, _, _ := b.do("POST", "/api/code-agents", create, "Origin", "https://evil.example"); status != 403 {
		t.Errorf("a change from another origin = %d, want 403", status)
	}
	if status, _, _ := b.do("POST", "/api/code-agents", create, csrfHeader, me.CSRF+"x"); status != 403 {
		t.Errorf("a change with a wrong CSRF token = %d, want 403", status)
	}
	if status, body, _ := b.do("POST", "/api/code-agents", create); status != 201 {
		t.Fatalf("a change from the page = %d %s", status, body)
	}
	if status, body, _ := b.do("GET", "/ui/me", nil); status != 200 || !bytes.Contains(body, []byte(me.CSRF)) {
		t.Errorf("/ui/me = %d %s", status, body)
	}

	// A user of another org, signed in on the page, sees none of the
	// owner's: the same org checks as with a bearer token.
	ownerSession := e.start(e.agent(), "mine")
	_, outsiderToken := e.user("outsider", e.org("elsewhere"))
	out := newBrowser(t, e.srv.URL)
	if status, _, _ := out.do("POST", "/ui/signin", map[string]string{"token": outsiderToken}); status != 200 {
		t.Fatal("the outsider cannot sign in")
	}
	if status, _, _ := out.do("GET", "/api/code-sessions/"+ownerSession.SessionID, nil); status != 404 {
		t.Errorf("the outsider read the owner's session: %d", status)
	}
	if status, body, _ := out.do("GET", "/api/code-sessions", nil); status != 200 || strings.Contains(string(body), ownerSession.SessionID) {
		t.Errorf("the outsider's list = %d %s", status, body)
	}

	// Sign-out ends it.
	if status, _, _ := b.do("POST", "/ui/signout", nil); status != 200 {
		t.Fatalf("sign out = %d", status)
	}
	if status, _, _ := b.do("GET", "/api/code-agents", nil); status != 401 {
		t.Errorf("API after sign-out = %d, want 401", status)
	}

	// Revoking the token ends a signed-in session at once.
	c := newBrowser(t, e.srv.URL)
	tok := e.mintToken(e.owner.UserID, "revoked")
	if status, _, _ := c.do("POST", "/ui/signin", map[string]string{"token": tok}); status != 200 {
		t.Fatal("second sign in failed")
	}
	if status, _, _ := c.do("GET", "/api/code-sessions", nil); status != 200 {
		t.Fatal("second session cannot read")
	}
	toks, err := e.store.ListTokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range toks {
		if k.Name == "revoked" {
			if err := e.store.RevokeToken(t.Context(), k.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if status, _, _ := c.do("GET", "/api/code-sessions", nil); status != 401 {
		t.Errorf("API after the token's revocation = %d, want 401", status)
	}
	if status, _, _ := c.do("GET", "/ui/me", nil); status != 401 {
		t.Errorf("/ui/me after the token's revocation = %d, want 401", status)
	}
	_ = core.OKResult{}
}

// TestDashboardCookieOverTLS: over TLS the cookie is __Host-flapjack and
// Secure (the browser then refuses it without TLS, and any Domain or Path
// but /), and it works there.
func TestDashboardCookieOverTLS(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewUnstartedServer(e.h)
	srv.StartTLS()
	defer srv.Close()
	b := newBrowser(t, srv.URL)
	jar := b.c.Jar
	b.c = srv.Client()
	b.c.Jar = jar
	status, _, hdr := b.do("POST", "/ui/signin", map[string]string{"token": e.token})
	if status != 200 {
		t.Fatalf("sign in over TLS = %d", status)
	}
	cookie := hdr.Get("Set-Cookie")
	if !strings.HasPrefix(cookie, "__Host-flapjack=") || !strings.Contains(cookie, "Secure") || strings.Contains(cookie, "Domain") {
		t.Fatalf("cookie over TLS = %q, want __Host-flapjack, Secure, no Domain", cookie)
	}
	if status, _, _ := b.do("GET", "/api/code-agents", nil); status != 200 {
		t.Fatalf("API with the TLS cookie = %d", status)
	}
}
