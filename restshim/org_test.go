package restshim

import (
	"strings"
	"testing"

	"github.com/flapjack-dev/flapjack/core"
)

// TestOrgIsolation: two users in different orgs. Each sees only its own
// org's agents and sessions; the other's answer 404 on every route and are
// absent from lists (filtered in SQL, so nothing of theirs is even read).
func TestOrgIsolation(t *testing.T) {
	e := newEnv(t)
	orgA, orgB := e.org("acme"), e.org("globex")
	_, alice := e.user("alice", orgA)
	_, bob := e.user("bob", orgB)

	var agA core.CodeAgent
	r := e.do("POST", "/api/code-agents", alice, map[string]any{"name": "A", "defaultRepoUrl": "https://github.com/acme/app"})
	r.decode(t, &agA)
	if r.status != 201 || agA.OrgID != orgA {
		t.Fatalf("alice's agent: %d %s", r.status, r.body)
	}
	var stA core.StartResult
	r = e.do("POST", "/api/code-sessions", alice, map[string]any{"codeAgentId": agA.ID, "prompt": "block", "cursorApiKey": "key_0123456789abcdef"})
	r.decode(t, &stA)
	if r.status != 201 {
		t.Fatalf("alice's start: %d %s", r.status, r.body)
	}
	var agB core.CodeAgent
	e.do("POST", "/api/code-agents", bob, map[string]any{"name": "B"}).decode(t, &agB)
	if agB.OrgID != orgB {
		t.Fatalf("bob's agent is in %s", agB.OrgID)
	}

	// Bob cannot reach anything of alice's.
	sess := "/api/code-sessions/" + stA.SessionID
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/api/code-agents/" + agA.ID, ""},
		{"PATCH", "/api/code-agents/" + agA.ID, `{"name":"mine"}`},
		{"DELETE", "/api/code-agents/" + agA.ID, ""},
		{"POST", "/api/code-sessions", `{"codeAgentId":"` + agA.ID + `","prompt":"x","cursorApiKey":"key_0123456789abcdef"}`},
		{"GET", sess, ""},
		{"PATCH", sess, `{"webhookUrl":"https://x.example.com/"}`},
		{"POST", sess + "/messages", `{"prompt":"x"}`},
		{"GET", sess + "/events", ""},
		{"GET", sess + "/events/stream", ""},
		{"POST", sess + "/cancel", ""},
		{"POST", sess + "/archive", ""},
		{"GET", "/api/code-agents?orgId=" + orgA, ""},
		{"GET", "/api/code-sessions?orgId=" + orgA, ""},
		{"POST", "/api/code-agents", `{"orgId":"` + orgA + `"}`},
	} {
		var body any
		if c.body != "" {
			body = c.body
		}
		if r := e.do(c.method, c.path, bob, body); r.status != 404 || r.errCode() != "NOT_FOUND" {
			t.Errorf("bob %s %s = %d %s, want 404", c.method, c.path, r.status, r.body)
		}
	}
	// Bob's lists hold only bob's objects; alice's only hers.
	var agents []core.CodeAgent
	e.do("GET", "/api/code-agents", bob, nil).decode(t, &agents)
	if len(agents) != 1 || agents[0].ID != agB.ID {
		t.Errorf("bob's agents: %+v", agents)
	}
	var sessions []core.Session
	e.do("GET", "/api/code-sessions", bob, nil).decode(t, &sessions)
	if len(sessions) != 0 {
		t.Errorf("bob sees sessions: %+v", sessions)
	}
	e.do("GET", "/api/code-agents", alice, nil).decode(t, &agents)
	if len(agents) != 1 || agents[0].ID != agA.ID {
		t.Errorf("alice's agents: %+v", agents)
	}
	// Alice's session is untouched by bob's attempts.
	var d core.SessionDetail
	e.do("GET", sess, alice, nil).decode(t, &d)
	if d.WebhookURL != nil || len(d.Messages) != 1 || d.Archived {
		t.Errorf("bob changed alice's session: %+v", d)
	}
	e.do("POST", sess+"/cancel", alice, nil)

	// The owner is a normal user here: a member of the default org only.
	var own []core.CodeAgent
	e.must(200, "GET", "/api/code-agents", nil, &own)
	if len(own) != 0 {
		t.Errorf("the owner sees other orgs' agents: %+v", own)
	}
}

// TestMultiOrgUserMustNameTheOrg: a user in several orgs gives orgId where
// the spec takes it (400 otherwise); a user in no org sees nothing at all.
func TestMultiOrgUserMustNameTheOrg(t *testing.T) {
	e := newEnv(t)
	orgA, orgB := e.org("acme"), e.org("globex")
	_, carol := e.user("carol", orgA, orgB)
	// Creating needs the org named; reading covers all of carol's orgs.
	if r := e.do("POST", "/api/code-agents", carol, `{"name":"x"}`); r.status != 400 || !strings.HasPrefix(r.errMessage(), "orgId: is required to create: you belong to 2 orgs") {
		t.Errorf("carol's create without orgId = %d %s", r.status, r.body)
	}
	for _, path := range []string{"/api/code-agents", "/api/code-sessions"} {
		if r := e.do("GET", path, carol, nil); r.status != 200 {
			t.Errorf("carol GET %s without orgId = %d %s", path, r.status, r.body)
		}
	}

	var ag core.CodeAgent
	r := e.do("POST", "/api/code-agents", carol, map[string]any{"orgId": orgB, "name": "in B", "defaultRepoUrl": "https://github.com/acme/app"})
	r.decode(t, &ag)
	if r.status != 201 || ag.OrgID != orgB {
		t.Fatalf("carol's create in B: %d %s", r.status, r.body)
	}
	var list []core.CodeAgent
	e.do("GET", "/api/code-agents?orgId="+orgB, carol, nil).decode(t, &list)
	if len(list) != 1 {
		t.Errorf("carol's agents in B: %+v", list)
	}
	e.do("GET", "/api/code-agents?orgId="+orgA, carol, nil).decode(t, &list)
	if len(list) != 0 {
		t.Errorf("carol's agents in A: %+v", list)
	}
	e.do("GET", "/api/code-agents", carol, nil).decode(t, &list)
	if len(list) != 1 {
		t.Errorf("carol's agents in all her orgs: %+v", list)
	}
	// Start takes orgId too; a template of another org than the one named is 404.
	if r := e.do("POST", "/api/code-sessions", carol, map[string]any{"codeAgentId": ag.ID, "prompt": "x", "cursorApiKey": "key_0123456789abcdef", "orgId": orgA}); r.status != 404 {
		t.Errorf("start naming the wrong org = %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/api/code-sessions", carol, map[string]any{"codeAgentId": ag.ID, "prompt": "x", "cursorApiKey": "key_0123456789abcdef"}); r.status != 201 {
		t.Errorf("start of carol's own template = %d %s", r.status, r.body)
	}

	// A user in no org: lists are empty (an empty org list must not be read
	// as "every org"), and creating needs an org they cannot have.
	_, dave := e.user("dave")
	e.do("GET", "/api/code-agents", dave, nil).decode(t, &list)
	var sessions []core.Session
	e.do("GET", "/api/code-sessions", dave, nil).decode(t, &sessions)
	if len(list) != 0 || len(sessions) != 0 {
		t.Errorf("a user in no org sees %d agents and %d sessions", len(list), len(sessions))
	}
	if r := e.do("POST", "/api/code-agents", dave, `{"name":"x"}`); r.status != 400 || !strings.Contains(r.errMessage(), "you belong to no org") {
		t.Errorf("create by a user in no org = %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/api/code-agents/"+ag.ID, dave, nil); r.status != 404 {
		t.Errorf("dave gets carol's agent: %d", r.status)
	}
	if r := e.do("POST", "/api/code-agents", dave, `{}`); r.status != 400 {
		t.Errorf("dave creates an agent: %d %s", r.status, r.body)
	}
}
