package restshim

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// The dashboard: a page at / for people who watch their agents, built on the
// REST API it sits beside. It is plain files embedded in the binary (no
// build step, nothing from other origins); the page calls the same routes a
// script does, signed in with a cookie instead of a bearer token.
//
// Signing in exchanges a token, sent once, for a random cookie value. The
// token stays in this process's memory only (never in the browser, never
// on disk) and is checked again on every request, so revoking it ends the
// dashboard session at once; signing out or a restart ends it too. A
// request authenticated by the cookie that changes anything must come from
// the page itself: its Origin is this server's and it carries the session's
// CSRF token in X-CSRF-Token (SameSite=Strict already keeps other sites'
// requests from carrying the cookie at all).

//go:embed ui
var uiFiles embed.FS

// csrfHeader carries the dashboard session's CSRF token.
const csrfHeader = "X-CSRF-Token"

// contentSecurityPolicy allows the page's own files and nothing else: no
// inline script or style, no eval, no framing, no other origin.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// webIdle ends a dashboard session unused this long; maxWebSessions bounds
// how many are kept (the oldest unused goes first).
const (
	webIdle        = 12 * time.Hour
	maxWebSessions = 10_000
)

// webSessions are the dashboard's sign-ins, by the SHA-256 of their cookie.
type webSessions struct {
	mu sync.Mutex
	m  map[[32]byte]*webSession
}

type webSession struct {
	token    string // the API token it was made from; memory only
	csrf     string
	lastUsed time.Time
}

func newWebSessions() *webSessions { return &webSessions{m: map[[32]byte]*webSession{}} }

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// add makes a session for token and returns its cookie value and CSRF token.
func (ws *webSessions) add(token string) (cookie, csrf string) {
	cookie, csrf = randomToken(), randomToken()
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if len(ws.m) >= maxWebSessions {
		var oldest [32]byte
		var at time.Time
		for k, s := range ws.m {
			if at.IsZero() || s.lastUsed.Before(at) {
				oldest, at = k, s.lastUsed
			}
		}
		delete(ws.m, oldest)
	}
	ws.m[sha256.Sum256([]byte(cookie))] = &webSession{token: token, csrf: csrf, lastUsed: time.Now()}
	return cookie, csrf
}

// get returns the live session of a cookie value.
func (ws *webSessions) get(cookie string) (webSession, bool) {
	key := sha256.Sum256([]byte(cookie))
	ws.mu.Lock()
	defer ws.mu.Unlock()
	s, ok := ws.m[key]
	if !ok {
		return webSession{}, false
	}
	if time.Since(s.lastUsed) > webIdle {
		delete(ws.m, key)
		return webSession{}, false
	}
	s.lastUsed = time.Now()
	return *s, true
}

func (ws *webSessions) remove(cookie string) {
	ws.mu.Lock()
	delete(ws.m, sha256.Sum256([]byte(cookie)))
	ws.mu.Unlock()
}

// cookieName is __Host- prefixed over TLS (the browser then insists on
// Secure, Path=/ and no Domain); plain HTTP on loopback cannot have it.
func cookieName(r *http.Request) string {
	if r.TLS != nil {
		return "__Host-flapjack"
	}
	return "flapjack"
}

func (h *Handler) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: cookieName(r), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// webSessionOf returns the request's dashboard session and its cookie.
func (h *Handler) webSessionOf(r *http.Request) (webSession, string, bool) {
	c, err := r.Cookie(cookieName(r))
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return webSession{}, "", false
	}
	s, ok := h.web.get(c.Value)
	return s, c.Value, ok
}

// fromThePage reports whether a cookie-authenticated request that changes
// something comes from the dashboard itself: the server's own Origin (a
// browser always sends one on such requests) and the session's CSRF token.
func fromThePage(r *http.Request, s webSession) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || !sameOrigin(r) {
		return false
	}
	got := r.Header.Get(csrfHeader)
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

// safeMethod is a request that changes nothing.
func safeMethod(m string) bool { return m == http.MethodGet || m == http.MethodHead }

// registerDashboard adds the page, its files and its sign-in routes. They
// are public (the page shows its own sign-in), and registered after the
// API's fallbacks, so an unknown path or method is still the API's 404 or
// 405 (only GET / exactly is the page).
func (h *Handler) registerDashboard() {
	sub, _ := fs.Sub(uiFiles, "ui")
	for _, rt := range []struct {
		Route
		pattern string
		fn      http.HandlerFunc
	}{
		{Route{"GET", "/", "dashboardPage", true}, "GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			pageHeaders(w)
			http.ServeFileFS(w, r, sub, "index.html")
		}},
		{Route{"GET", "/ui/{file}", "dashboardFile", true}, "GET /ui/{file}", func(w http.ResponseWriter, r *http.Request) {
			pageHeaders(w)
			name := r.PathValue("file")
			if name == "index.html" || !fs.ValidPath(name) {
				writeErrorBody(w, http.StatusNotFound, string(core.CodeNotFound), "no such file")
				return
			}
			if _, err := fs.Stat(sub, name); err != nil {
				writeErrorBody(w, http.StatusNotFound, string(core.CodeNotFound), "no such file")
				return
			}
			http.ServeFileFS(w, r, sub, name)
		}},
		{Route{"POST", "/ui/signin", "dashboardSignIn", true}, "POST /ui/signin", h.signIn},
		{Route{"GET", "/ui/me", "dashboardMe", true}, "GET /ui/me", h.me},
		{Route{"POST", "/ui/signout", "dashboardSignOut", true}, "POST /ui/signout", h.signOut},
	} {
		h.routes = append(h.routes, rt.Route)
		h.mux.HandleFunc(rt.pattern, rt.fn)
	}
}

// pageHeaders are the dashboard's: its policy, no sniffing, no referrer, no
// caching of a page that shows private data.
func pageHeaders(w http.ResponseWriter) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", contentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Cache-Control", "no-store")
}

// signIn exchanges a token for a dashboard session: {"token": "fj_live_..."}
// from the page itself (its Origin), answered with the CSRF token and the
// cookie.
func (h *Handler) signIn(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Origin") == "" || !sameOrigin(r) {
		writeErrorBody(w, http.StatusForbidden, CodeUnauthorized, "sign in from the dashboard page of this server")
		return
	}
	var in struct {
		Token string `json:"token"`
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeErrorBody(w, http.StatusBadRequest, string(core.CodeValidation), "body: want {\"token\": \"fj_live_...\"}")
		return
	}
	tok := strings.TrimSpace(in.Token)
	if !WellFormedToken(tok) {
		unauthorized(w)
		return
	}
	actor, err := h.auth.Authenticate(r.Context(), tok)
	if errors.Is(err, ErrUnauthenticated) {
		unauthorized(w)
		return
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	cookie, csrf := h.web.add(tok)
	h.setCookie(w, r, cookie, int(webIdle/time.Second))
	writeJSON(w, http.StatusOK, meBody{CSRF: csrf, UserID: actor.UserID})
}

type meBody struct {
	CSRF   string `json:"csrf"`
	UserID string `json:"user_id"`
}

// me tells the page whether its cookie is signed in, and its CSRF token
// (only a page of this origin can read it).
func (h *Handler) me(w http.ResponseWriter, r *http.Request) {
	s, cookie, ok := h.webSessionOf(r)
	if !ok {
		unauthorized(w)
		return
	}
	actor, err := h.auth.Authenticate(r.Context(), s.token)
	if err != nil {
		h.web.remove(cookie)
		unauthorized(w)
		return
	}
	writeJSON(w, http.StatusOK, meBody{CSRF: s.csrf, UserID: actor.UserID})
}

// signOut ends the dashboard session.
func (h *Handler) signOut(w http.ResponseWriter, r *http.Request) {
	s, cookie, ok := h.webSessionOf(r)
	if ok && !fromThePage(r, s) {
		writeErrorBody(w, http.StatusForbidden, CodeUnauthorized, "sign out from the dashboard page")
		return
	}
	if ok {
		h.web.remove(cookie)
	}
	h.setCookie(w, r, "", -1)
	writeJSON(w, http.StatusOK, core.OKResult{OK: true})
}
