package restshim

import (
	"context"
	"fmt"
	"hash/crc32"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// TestEveryRouteRequiresAToken is driven by the route list the Handler
// itself serves, so a route added later is covered without editing this
// test: every non-public route answers 401 with WWW-Authenticate: Bearer and
// one identical body for a missing, malformed, unknown or revoked token, and
// public routes answer without one.
func TestEveryRouteRequiresAToken(t *testing.T) {
	e := newEnv(t)
	revoked := e.mintToken(e.owner.UserID, "revoked")
	if err := revokeByToken(e, revoked); err != nil {
		t.Fatal(err)
	}
	valid := NewToken().Token
	flipped := []byte(e.token)
	if flipped[len(flipped)-1] == 'a' {
		flipped[len(flipped)-1] = 'b'
	} else {
		flipped[len(flipped)-1] = 'a'
	}
	auths := map[string]string{
		"missing":          "",
		"empty bearer":     "Bearer ",
		"basic":            "Basic dXNlcjpwYXNz",
		"no scheme":        e.token,
		"wrong prefix":     "Bearer fj_test_" + e.token[len(TokenPrefix):],
		"too short":        "Bearer " + e.token[:len(e.token)-1],
		"bad checksum":     "Bearer " + string(flipped),
		"upper case":       "Bearer " + strings.ToUpper(e.token),
		"unknown":          "Bearer " + valid,
		"revoked":          "Bearer " + revoked,
		"token with space": "Bearer " + e.token + " x",
	}
	routes := e.h.Routes()
	// Paths no route has, and methods a route does not take, need a token too.
	routes = append(routes, Route{Method: "GET", Path: "/api/unknown"}, Route{Method: "PUT", Path: "/api/code-agents"}, Route{Method: "GET", Path: "/nope"}, Route{Method: "POST", Path: "/"})
	var body string
	for _, rt := range routes {
		path := strings.NewReplacer("{codeAgentId}", "ca-x", "{codeSessionId}", "cs-x", "{file}", "app.js").Replace(rt.Path)
		if rt.Public && rt.Method != "GET" || rt.Path == "/ui/me" {
			continue // the dashboard's sign-in routes: TestDashboardSignInAndCSRF
		}
		if rt.Public {
			if r := e.do(rt.Method, path, "", nil); r.status != 200 {
				t.Errorf("public %s %s = %d", rt.Method, path, r.status)
			}
			continue
		}
		for name, auth := range auths {
			r := e.do(rt.Method, path, "", `{}`, "Authorization", auth)
			if r.status != 401 || r.header.Get("WWW-Authenticate") != "Bearer" || r.errCode() != CodeUnauthorized {
				t.Errorf("%s %s with %s token = %d %v %s", rt.Method, path, name, r.status, r.header.Get("WWW-Authenticate"), r.body)
			}
			if body == "" {
				body = string(r.body)
			} else if string(r.body) != body {
				t.Errorf("%s %s with %s token: body %s differs from %s", rt.Method, path, name, r.body, body)
			}
		}
		// And the valid token gets past authentication.
		if r := e.do(rt.Method, path, e.token, `{}`); r.status == 401 {
			t.Errorf("%s %s with a valid token = 401", rt.Method, path)
		}
	}
	// The scheme is case-insensitive.
	if r := e.do("GET", "/api/code-agents", "", nil, "Authorization", "bearer "+e.token); r.status != 200 {
		t.Errorf("lower-case scheme = %d", r.status)
	}
}

func revokeByToken(e *env, tok string) error {
	ctx := context.Background()
	h := HashToken(tok)
	_, id, err := e.store.ActorForToken(ctx, h[:])
	if err != nil {
		return err
	}
	return e.store.RevokeToken(ctx, id)
}

// TestRevocationIsImmediate: a revoked token stops working on the next
// request (no cache keeps it alive).
func TestRevocationIsImmediate(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", e.owner.OrgID)
	if r := e.do("GET", "/api/code-agents", tok, nil); r.status != 200 {
		t.Fatalf("before revoke = %d", r.status)
	}
	if err := revokeByToken(e, tok); err != nil {
		t.Fatal(err)
	}
	if r := e.do("GET", "/api/code-agents", tok, nil); r.status != 401 {
		t.Fatalf("after revoke = %d", r.status)
	}
}

// TestMalformedTokensNeverReachTheStore: the shape and checksum are checked
// before any lookup.
func TestMalformedTokensNeverReachTheStore(t *testing.T) {
	cs := &countingStore{}
	a := NewTokenAuthenticator(cs, nil)
	tok := NewToken().Token
	for _, bad := range []string{"", "fj_live_", tok[:len(tok)-1] + "x", strings.ToUpper(tok), tok + "a", "fj_live_" + strings.Repeat("a", 39)} {
		if WellFormedToken(bad) {
			t.Errorf("%q is well-formed?", bad)
		}
		if _, err := a.Authenticate(context.Background(), bad); err != ErrUnauthenticated {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if cs.lookups != 0 {
		t.Errorf("%d store lookups for malformed tokens", cs.lookups)
	}
}

// TestTokenFormat: prefix, length, 160 random bits, checksum, display prefix.
func TestTokenFormat(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		m := NewToken()
		if !strings.HasPrefix(m.Token, "fj_live_") || len(m.Token) != TokenLen || !WellFormedToken(m.Token) {
			t.Fatalf("bad token %q", m.Token)
		}
		if m.Hash != HashToken(m.Token) || m.Prefix != m.Token[:14] || !strings.HasPrefix(m.Token, m.Prefix) {
			t.Fatalf("hash or prefix of %q wrong: %q", m.Token, m.Prefix)
		}
		if seen[m.Token] {
			t.Fatal("duplicate token")
		}
		seen[m.Token] = true
		// Any single-character change of the random part breaks the checksum
		// (CRC-32 detects every single-character error).
		b := []byte(m.Token)
		i := len(TokenPrefix) + len(seen)%tokenBody
		b[i] = map[bool]byte{true: 'b', false: 'a'}[b[i] == 'a']
		if WellFormedToken(string(b)) {
			t.Fatalf("%q with one character changed is still well-formed", m.Token)
		}
	}
	// The checksum is worked out by hand; tokens already handed out were
	// checked by the base32 encoding, so both must agree.
	for i := range 500 {
		s := TokenPrefix + strings.Repeat(string(rune('a'+i%26)), i%40) + fmt.Sprint(i*7919)
		c := crc32.ChecksumIEEE([]byte(s))
		want := tokenEncoding().EncodeToString([]byte{byte(c >> 24), byte(c >> 16), byte(c >> 8), byte(c), 0})[:tokenCheck]
		if got := checksum(s); got != want {
			t.Fatalf("checksum(%q) = %q, the base32 encoding's is %q", s, got, want)
		}
	}
	if TokenLen-len(TokenPrefix)-tokenCheck < 26 {
		t.Fatal("fewer than 128 random bits")
	}
}

// countingStore is a TokenStore that counts what it is asked.
type countingStore struct {
	mu      sync.Mutex
	lookups int
	touches []time.Time
}

func (c *countingStore) ActorForToken(ctx context.Context, hash []byte) (core.Actor, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lookups++
	return core.Actor{UserID: "user-1"}, "tok-1", nil
}

func (c *countingStore) TouchToken(ctx context.Context, id string, at time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.touches = append(c.touches, at)
	return nil
}

// TestLastUsedIsRecordedAtMostOncePerMinute, and the actor of a token whose
// store returns no orgs sees no org rather than every org.
func TestLastUsedIsRecordedAtMostOncePerMinute(t *testing.T) {
	cs := &countingStore{}
	a := NewTokenAuthenticator(cs, nil)
	now := time.Date(2026, 5, 6, 12, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	tok := NewToken().Token
	for i := range 100 {
		now = now.Add(time.Second)
		actor, err := a.Authenticate(context.Background(), tok)
		if err != nil {
			t.Fatal(err)
		}
		if actor.OrgIDs == nil || actor.AllOrgs {
			t.Fatalf("request %d: actor %+v would see every org", i, actor)
		}
	}
	if cs.lookups != 100 || len(cs.touches) != 2 {
		t.Errorf("100 requests over 100 s: %d lookups, %d last-used writes; want 100 and 2", cs.lookups, len(cs.touches))
	}

	// Through the real store: last_used is recorded.
	e := newEnv(t)
	e.must(200, "GET", "/api/code-agents", nil, nil)
	toks, err := e.store.ListTokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 1 || toks[0].LastUsedAt == nil {
		t.Errorf("tokens after a request: %+v", toks)
	}
}

// TestNoTokenInLogs: tokens, query strings and header values never reach
// the log; every access-log line carries method, path, status and the
// request id that the X-Request-Id header returned.
func TestNoTokenInLogs(t *testing.T) {
	e := newEnv(t)
	const secret = "cursor_SECRETQUERY"
	r := e.do("GET", "/api/code-agents?orgId="+secret, e.token, nil)
	id := r.header.Get("X-Request-Id")
	if !strings.HasPrefix(id, "req-") {
		t.Errorf("X-Request-Id = %q", id)
	}
	e.do("GET", "/api/code-agents", NewToken().Token, nil)
	e.do("POST", "/api/code-sessions", e.token, `{"codeAgentId":"ca-x","prompt":"p","cursorApiKey":"`+secret+`"}`)
	r2 := e.do("GET", "/healthz", "", nil, "X-Request-Id", "client-id-42")
	if r2.header.Get("X-Request-Id") != "client-id-42" {
		t.Errorf("a plain client request id was not kept: %q", r2.header.Get("X-Request-Id"))
	}
	r3 := e.do("GET", "/healthz", "", nil, "X-Request-Id", "bad id with spaces and \"quotes\"")
	if got := r3.header.Get("X-Request-Id"); !strings.HasPrefix(got, "req-") {
		t.Errorf("an unsafe client request id was kept: %q", got)
	}
	logs := e.log.String()
	for _, leak := range []string{e.token, secret, "fj_live_", "Bearer"} {
		if strings.Contains(logs, leak) {
			t.Errorf("the log contains %q:\n%s", leak, logs)
		}
	}
	for _, want := range []string{"request_id=" + id, "method=GET", "path=/api/code-agents", "status=200", "status=401", "duration_ms=", "user=" + e.owner.UserID} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log has no %q:\n%s", want, logs)
		}
	}
}

var _ http.Handler = (*Handler)(nil)
