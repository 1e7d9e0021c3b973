package restshim

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/flapjack-dev/flapjack/core"
)

var nextLink = regexp.MustCompile(`^<(/api/[^>]+)>; rel="next"$`)

// TestListRoutesPage: with ?limit= a list route answers one page and a
// Link header to the next, which keeps the request's filters; following
// the links returns every item once, as the whole (streamed) array has
// them; without ?limit= the answer is the spec's whole array and no Link.
func TestListRoutesPage(t *testing.T) {
	e := newEnv(t)
	agentID := e.agent()
	for i := range 23 {
		e.start(agentID, fmt.Sprintf("p%d", i))
	}
	var whole []core.Session
	r := e.must(200, "GET", "/api/code-sessions?codeAgentId="+agentID, nil, &whole)
	if len(whole) != 23 || r.header.Get("Link") != "" {
		t.Fatalf("whole list: %d sessions, Link %q; want 23 and none", len(whole), r.header.Get("Link"))
	}
	var paged []core.Session
	path := "/api/code-sessions?codeAgentId=" + agentID + "&limit=10"
	for pages := 0; path != ""; pages++ {
		if pages > 5 {
			t.Fatal("the links never end")
		}
		var page []core.Session
		r := e.must(200, "GET", path, nil, &page)
		if len(page) > 10 {
			t.Fatalf("%s: %d sessions on a page of 10", path, len(page))
		}
		paged = append(paged, page...)
		path = ""
		if link := r.header.Get("Link"); link != "" {
			m := nextLink.FindStringSubmatch(link)
			if m == nil || !strings.Contains(m[1], "codeAgentId="+agentID) || !strings.Contains(m[1], "limit=10") {
				t.Fatalf("Link %q: want <same route, same filters, cursor>; rel=\"next\"", link)
			}
			path = m[1]
		}
	}
	if len(paged) != len(whole) {
		t.Fatalf("pages held %d sessions, the whole list %d", len(paged), len(whole))
	}
	for i := range whole {
		if paged[i].ID != whole[i].ID {
			t.Fatalf("session %d: pages say %s, the whole list %s", i, paged[i].ID, whole[i].ID)
		}
	}

	// Templates page too; an empty whole list is [].
	var agents []core.CodeAgent
	r = e.must(200, "GET", "/api/code-agents?limit=1", nil, &agents)
	if len(agents) != 1 || r.header.Get("Link") != "" {
		t.Fatalf("one template, limit 1: %d and Link %q; want 1 and none", len(agents), r.header.Get("Link"))
	}
	e.agent()
	r = e.must(200, "GET", "/api/code-agents?limit=1", nil, &agents)
	if len(agents) != 1 || !nextLink.MatchString(r.header.Get("Link")) {
		t.Fatalf("two templates, limit 1: %d and Link %q; want 1 and a next link", len(agents), r.header.Get("Link"))
	}
	if r := e.do("GET", "/api/code-sessions?status=expired", e.token, nil); r.status != 200 || strings.TrimSpace(string(r.body)) != "[]" {
		t.Fatalf("empty whole list = %d %q, want 200 []", r.status, r.body)
	}

	for _, q := range []string{"limit=0", "limit=-1", "limit=ten", "cursor=nope", "limit=5&cursor=c1.AAAA"} {
		for _, route := range []string{"/api/code-sessions", "/api/code-agents"} {
			if r := e.do("GET", route+"?"+q, e.token, nil); r.status != 400 || r.errCode() != string(core.CodeValidation) {
				t.Errorf("GET %s?%s = %d %s, want 400 VALIDATION_ERROR", route, q, r.status, r.body)
			}
		}
	}
}
