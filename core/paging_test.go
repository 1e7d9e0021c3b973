package core_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flapjack-dev/flapjack/core"
)

// TestListsComeInPages: sessions and templates come newest first in pages
// of the requested size (50 by default, 500 at most), each with the cursor
// of the next; following the cursors returns every item exactly once, in
// the order of one whole read, although many share a creation millisecond.
func TestListsComeInPages(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	const sessions = 130
	for range sessions {
		if _, err := h.svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	for range 6 {
		if _, err := h.svc.CreateAgent(ctx, h.actor, core.CreateAgentInput{}); err != nil {
			t.Fatal(err)
		}
	}
	whole, err := h.svc.ListSessions(ctx, h.actor, core.ListSessionsInput{Limit: ptr(core.MaxPageLimit)})
	if err != nil {
		t.Fatal(err)
	}
	if len(whole.Sessions) != sessions || whole.NextCursor != "" {
		t.Fatalf("limit 500 of %d: got %d and cursor %q; want all and none", sessions, len(whole.Sessions), whole.NextCursor)
	}
	for i := 1; i < len(whole.Sessions); i++ {
		a, b := whole.Sessions[i-1], whole.Sessions[i]
		if a.CreatedAt.Before(b.CreatedAt) || (a.CreatedAt.Equal(b.CreatedAt) && a.ID < b.ID) {
			t.Fatalf("not newest first at %d: %s %v before %s %v", i, a.ID, a.CreatedAt, b.ID, b.CreatedAt)
		}
	}
	ids := func(ss []core.Session) (out []string) {
		for _, s := range ss {
			out = append(out, s.ID)
		}
		return out
	}

	// The default page, then pages of 40 by cursor.
	first, err := h.svc.ListSessions(ctx, h.actor, core.ListSessionsInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Sessions) != core.DefaultPageLimit || first.NextCursor == "" {
		t.Fatalf("default page: %d sessions, cursor %q; want %d and a cursor", len(first.Sessions), first.NextCursor, core.DefaultPageLimit)
	}
	var paged []core.Session
	var sizes []int
	for in := (core.ListSessionsInput{Limit: ptr(40)}); ; {
		p, err := h.svc.ListSessions(ctx, h.actor, in)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, p.Sessions...)
		sizes = append(sizes, len(p.Sessions))
		if p.NextCursor == "" {
			break
		}
		in.Cursor = p.NextCursor
	}
	if diff := cmp.Diff([]int{40, 40, 40, 10}, sizes); diff != "" {
		t.Errorf("page sizes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ids(whole.Sessions), ids(paged)); diff != "" {
		t.Errorf("pages differ from the whole list (-whole +pages):\n%s", diff)
	}

	// Templates page the same way (the harness made one more).
	var agents []core.CodeAgent
	for in := (core.ListAgentsInput{Limit: ptr(3)}); ; {
		p, err := h.svc.ListAgents(ctx, h.actor, in)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Agents) > 3 {
			t.Fatalf("a page of limit 3 held %d templates", len(p.Agents))
		}
		agents = append(agents, p.Agents...)
		if p.NextCursor == "" {
			break
		}
		in.Cursor = p.NextCursor
	}
	all, err := h.svc.ListAgents(ctx, h.actor, core.ListAgentsInput{Limit: ptr(1000)})
	if err != nil {
		t.Fatal(err)
	}
	if len(agents) != 7 || len(all.Agents) != 7 {
		t.Fatalf("templates by pages of 3: %d; by one page of 1000 (served as 500): %d; want 7", len(agents), len(all.Agents))
	}
	for i := range agents {
		if agents[i].ID != all.Agents[i].ID {
			t.Fatalf("template %d: pages say %s, one read says %s", i, agents[i].ID, all.Agents[i].ID)
		}
	}

	// Bad limits and cursors are validation errors naming the field.
	for _, tc := range []struct {
		name  string
		in    core.ListSessionsInput
		field string
	}{
		{"limit 0", core.ListSessionsInput{Limit: ptr(0)}, "limit"},
		{"negative limit", core.ListSessionsInput{Limit: ptr(-5)}, "limit"},
		{"made-up cursor", core.ListSessionsInput{Cursor: "cs-123"}, "cursor"},
		{"tampered cursor", core.ListSessionsInput{Cursor: first.NextCursor + "!"}, "cursor"},
		{"cursor of another format", core.ListSessionsInput{Cursor: "c1.bm90LWEtY3Vyc29y"}, "cursor"},
	} {
		_, err := h.svc.ListSessions(ctx, h.actor, tc.in)
		if e := core.AsError(err); e == nil || e.Code != core.CodeValidation || e.Field != tc.field {
			t.Errorf("%s: %v, want VALIDATION_ERROR on %s", tc.name, err, tc.field)
		}
		_, err = h.svc.ListAgents(ctx, h.actor, core.ListAgentsInput{Limit: tc.in.Limit, Cursor: tc.in.Cursor})
		if e := core.AsError(err); e == nil || e.Code != core.CodeValidation || e.Field != tc.field {
			t.Errorf("templates, %s: %v, want VALIDATION_ERROR on %s", tc.name, err, tc.field)
		}
	}
}
