package store

import (
	"context"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flapjack-dev/flapjack/core"
)

// randomFilter is a filter of every kind the Service sends, and some it
// does not: no orgs, unknown values, a key between sessions.
func randomFilter(r *rand.Rand, orgs, agents []string, known []core.Session) core.SessionFilter {
	var f core.SessionFilter
	switch r.IntN(4) {
	case 0:
		f.OrgIDs = []string{}
	case 1:
		f.OrgIDs = []string{orgs[r.IntN(len(orgs))]}
	case 2:
		f.OrgIDs = []string{orgs[0], orgs[1], "org-unknown"}
	}
	if r.IntN(3) == 0 {
		f.CodeAgentID = agents[r.IntN(len(agents))]
	}
	all := core.AllStatuses()
	for range r.IntN(3) {
		f.Statuses = append(f.Statuses, all[r.IntN(len(all))])
	}
	if r.IntN(3) == 0 {
		f.Archived = ptr(r.IntN(2) == 0)
	}
	f.OldestFirst = r.IntN(5) == 0
	f.Limit = []int{0, 1, 7, 51, 200, 501}[r.IntN(6)]
	if r.IntN(2) == 0 && len(known) > 0 {
		k := known[r.IntN(len(known))]
		f.After = &core.PageKey{CreatedAt: k.CreatedAt, ID: k.ID}
		if r.IntN(3) == 0 { // a key no session has: between two
			f.After.ID += "0"
		}
	}
	return f
}

// TestSessionListAnswersAsSQL: the ReadCache's list of every session
// answers every filter, order, limit and cursor exactly as the SQL query
// does, while this process creates and changes sessions (the list is
// patched) and another process does (the list is dropped and read again);
// sessions share creation milliseconds, so the id decides their order.
func TestSessionListAnswersAsSQL(t *testing.T) {
	ctx := context.Background()
	s, path := newStore(t)
	other := openAt(t, path)
	o := mustOwner(t, s)
	orgs := []string{o.OrgID}
	for _, name := range []string{"b", "c"} {
		org, err := s.CreateOrg(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		orgs = append(orgs, org.ID)
	}
	agents := []string{"ca-1", "ca-2", "ca-3"}
	r := rand.New(rand.NewPCG(7, 8))
	newSession := func() core.Session {
		sess := testSession(orgs[r.IntN(3)], agents[r.IntN(3)], r.IntN(40)) // many share a second
		sess.CreatedAt = sess.CreatedAt.Add(time.Duration(r.IntN(3)) * time.Millisecond)
		return sess
	}
	var known []core.Session
	for range 300 {
		sess := newSession()
		createSession(t, s, sess)
		known = append(known, sess)
	}
	c := newCache(t, s, path, 0) // reads the list again at once after another process's commit
	held := func() *sessionList {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.list
	}

	compare := func(step string, n int) {
		t.Helper()
		for range n {
			f := randomFilter(r, orgs, agents, known)
			want, err := s.ListSessions(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.ListSessions(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(ids(want), ids(got)); diff != "" {
				t.Fatalf("%s: filter %+v: the list answers differently from SQL (-sql +list):\n%s", step, f, diff)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("%s: filter %+v: the same sessions with different contents (-sql +list):\n%s", step, f, diff)
			}
		}
	}

	// A short page does not read every session; a long one does.
	if _, err := c.ListSessions(ctx, core.SessionFilter{Limit: 51}); err != nil || held() != nil {
		t.Fatalf("a page of 50 built the list (%v)", err)
	}
	if _, err := c.ListSessions(ctx, core.SessionFilter{}); err != nil || held() == nil {
		t.Fatalf("the whole list was not kept (%v)", err)
	}
	compare("built", 300)

	for step := range 60 {
		var name string
		switch r.IntN(5) {
		case 0, 1: // this process creates one
			sess := newSession()
			createSession(t, s, sess)
			known = append(known, sess)
			name = "own create"
		case 2: // this process changes one
			cur, err := s.GetSession(ctx, known[r.IntN(len(known))].ID)
			if err != nil {
				t.Fatal(err)
			}
			all := core.AllStatuses()
			cur.Status, cur.Archived = all[r.IntN(len(all))], r.IntN(2) == 0
			if _, err := s.Apply(ctx, core.Change{Session: cur}); err != nil {
				t.Fatal(err)
			}
			name = "own change"
		case 3: // this process appends to one
			appendOne(t, s, known[r.IntN(len(known))].ID)
			name = "own append"
		case 4: // another process creates one
			sess := newSession()
			createSession(t, other, sess)
			known = append(known, sess)
			name = "foreign create"
		}
		before := held()
		// A short page uses a list held but never reads one: it shows
		// whether the commit kept the list (patched) or dropped it.
		short := core.SessionFilter{Limit: 51}
		want, _ := s.ListSessions(ctx, short)
		got, err := c.ListSessions(ctx, short)
		if err != nil || cmp.Diff(want, got) != "" {
			t.Fatalf("step %d (%s): a page of 50 differs from SQL (%v)", step, name, err)
		}
		if own := name != "foreign create"; own && before != nil && held() == nil {
			t.Fatalf("step %d: the list was dropped after a commit of this process (%s)", step, name)
		} else if !own && held() != nil {
			t.Fatalf("step %d: the list was kept after another process's commit", step)
		}
		// A long list keeps (or reads again) the list, so what follows
		// is answered from it.
		if _, err := c.ListSessions(ctx, core.SessionFilter{}); err != nil || held() == nil {
			t.Fatalf("step %d (%s): no list held after a long list (%v)", step, name, err)
		}
		compare(fmt.Sprintf("step %d (%s)", step, name), 12)
	}
}

// TestSessionListPatchesOnlyWhatChanged: a commit of this process reads
// again only the session it touched (the others are the very same values),
// a new session takes its place in the order, and a commit of another
// process drops the list.
func TestSessionListPatchesOnlyWhatChanged(t *testing.T) {
	ctx := context.Background()
	s, path, ss := withSessions(t, 2)
	a, b := ss[0], ss[1]
	c := newCache(t, s, path, 0)
	list := func() []core.Session {
		t.Helper()
		got, err := c.ListSessions(ctx, core.SessionFilter{})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	entry := func(id string) *core.Session {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, x := range c.list.all {
			if x.ID == id {
				return x
			}
		}
		return nil
	}
	list()
	aBefore, bBefore := entry(a.ID), entry(b.ID)

	appendOne(t, s, a.ID)
	got := list()
	if got[1].ID != a.ID || got[1].LastEventSeq != 1 {
		t.Fatalf("after an append to A the list holds %+v", got)
	}
	if entry(b.ID) != bBefore || entry(a.ID) == aBefore {
		t.Fatal("the patch did not read A again, or read B again too")
	}

	mid := testSession(a.OrgID, "ca", 1) // same second as A: the id orders them
	createSession(t, s, mid)
	want, _ := s.ListSessions(ctx, core.SessionFilter{})
	if diff := cmp.Diff(ids(want), ids(list())); diff != "" {
		t.Fatalf("a new session is not in its place (-sql +list):\n%s", diff)
	}

	held := c.list
	appendOne(t, openAt(t, path), b.ID)
	got = list()
	if got[0].ID != b.ID || got[0].LastEventSeq != 1 {
		t.Fatalf("after another process's append to B the list holds %+v", got[0])
	}
	if c.list == held {
		t.Fatal("the list was kept after a commit this process cannot account for")
	}
}

// TestSessionListUnderConcurrentWrites: lists read while this process
// writes are never older than the last commit before them (checked with
// -race, which also checks the list is never changed while read).
func TestSessionListUnderConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	s, path, sessions := withSessions(t, 20)
	c := newCache(t, s, path, listSettle)
	var wg sync.WaitGroup
	done := make(chan struct{})
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := c.ListSessions(ctx, core.SessionFilter{Limit: 200 + i}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	// Each append is followed by a list that must show it.
	for n := range 100 {
		target := sessions[n%len(sessions)]
		appendOne(t, s, target.ID)
		want, err := s.GetSession(ctx, target.ID)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.ListSessions(ctx, core.SessionFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range got {
			if x.ID == target.ID && x.LastEventSeq != want.LastEventSeq {
				t.Fatalf("append %d: the list shows last_event_seq %d, the database %d", n, x.LastEventSeq, want.LastEventSeq)
			}
		}
	}
	close(done)
	wg.Wait()
}

func ids(ss []core.Session) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.ID
	}
	return out
}

// TestSessionListCommitsWhileReading: the two interleavings a test cannot
// time, played step by step. A session touched again while the list reads
// it stays dirty (so the next use reads it once more); a list being read
// when this process commits is kept with that session dirty, and one being
// read when another process commits answers only its own call.
func TestSessionListCommitsWhileReading(t *testing.T) {
	ctx := context.Background()
	s, path, ss := withSessions(t, 1)
	a := ss[0]
	c := newCache(t, s, path, 0)
	seq := func(l *sessionList) int64 { return l.all[0].LastEventSeq }
	// begin starts reading a list, as currentList does, with none held.
	begin := func() *sessionList {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.list = nil
		c.building = &sessionList{dirty: map[string]uint64{}}
		return c.building
	}

	// Touched again between the read and the patch.
	if _, err := c.ListSessions(ctx, core.SessionFilter{}); err != nil {
		t.Fatal(err)
	}
	appendOne(t, s, a.ID)
	c.fresh(ctx) // sees the commit: A is dirty
	l := c.list
	marks := maps.Clone(l.dirty)
	read, err := s.GetSession(ctx, a.ID) // the patch's read
	if err != nil {
		t.Fatal(err)
	}
	appendOne(t, s, a.ID) // touched again before the patch is kept
	c.fresh(ctx)
	kept := c.keepPatched(l, l.patched(map[string]*core.Session{a.ID: &read}), marks)
	if _, dirty := kept.dirty[a.ID]; !dirty || c.list != kept {
		t.Fatal("a session touched again while it was read is not dirty any more")
	}
	got, _ := c.ListSessions(ctx, core.SessionFilter{})
	if got[0].LastEventSeq != 2 {
		t.Fatalf("the list shows last_event_seq %d after two appends", got[0].LastEventSeq)
	}

	// A commit of this process while the list is read: kept, A dirty.
	b := begin()
	built, err := c.buildList(ctx, b) // reads seq 2
	if err != nil || seq(built) != 2 {
		t.Fatalf("built %v, %v", built, err)
	}
	b = begin()
	appendOne(t, s, a.ID) // seq 3, seen while b is being read
	c.fresh(ctx)
	if _, err := c.buildList(ctx, b); err != nil {
		t.Fatal(err)
	}
	if c.list != b {
		t.Fatal("a list read while this process committed was not kept")
	}
	if _, dirty := b.dirty[a.ID]; !dirty {
		t.Fatal("the session committed to while the list was read is not dirty")
	}

	// Another process's commit while the list is read: not kept.
	b = begin()
	appendOne(t, openAt(t, path), a.ID)
	c.fresh(ctx)
	if _, err := c.buildList(ctx, b); err != nil {
		t.Fatal(err)
	}
	if c.list != nil {
		t.Fatal("a list read while another process committed was kept")
	}
}

// TestSessionListWaitsWhileAnotherProcessCommits: after a commit of another
// process, long lists come from SQLite (correctly) and do not read every
// session again until the settle time has passed.
func TestSessionListWaitsWhileAnotherProcessCommits(t *testing.T) {
	ctx := context.Background()
	s, path, ss := withSessions(t, 1)
	a := ss[0]
	c := newCache(t, s, path, time.Hour)
	if _, err := c.ListSessions(ctx, core.SessionFilter{}); err != nil || c.list == nil {
		t.Fatalf("the first long list did not read the list (%v)", err)
	}
	appendOne(t, openAt(t, path), a.ID)
	got, err := c.ListSessions(ctx, core.SessionFilter{})
	if err != nil || len(got) != 1 || got[0].LastEventSeq != 1 {
		t.Fatalf("after another process's append: %+v, %v", got, err)
	}
	if c.list != nil || c.building != nil {
		t.Fatal("the list was read again within the settle time")
	}
	c.settle = 0
	if _, err := c.ListSessions(ctx, core.SessionFilter{}); err != nil || c.list == nil {
		t.Fatalf("the list was not read again after the settle time (%v)", err)
	}
}

// TestSessionListKnowsEveryFilter: the list answers core.SessionFilter in
// memory, field by field; a field added to the filter and not to
// sessionList.filter (and randomFilter) would be ignored there, so this
// fails until both know it.
func TestSessionListKnowsEveryFilter(t *testing.T) {
	known := []string{"OrgIDs", "CodeAgentID", "Statuses", "Archived", "OldestFirst", "Limit", "After"}
	var fields []string
	ft := reflect.TypeFor[core.SessionFilter]()
	for i := range ft.NumField() {
		fields = append(fields, ft.Field(i).Name)
	}
	if diff := cmp.Diff(known, fields); diff != "" {
		t.Fatalf("core.SessionFilter changed; teach sessionList.filter and randomFilter (-known +now):\n%s", diff)
	}
}

// TestSessionListStaysWithinItsCap: under serve's soft memory limit the
// list holds at most a quarter of it; a database with more sessions than
// the cap answers long lists from SQLite, correctly, without reading every
// session again on each list.
func TestSessionListStaysWithinItsCap(t *testing.T) {
	if got := listCap(96 << 20); got != 24_576 {
		t.Errorf("under serve's 96 MiB the list holds %d sessions, want 24,576 (a quarter)", got)
	}
	if got := listCap(math.MaxInt64); got != maxListed {
		t.Errorf("with no memory limit the list holds %d sessions, want %d", got, maxListed)
	}
	ctx := context.Background()
	s, path, _ := withSessions(t, 3)
	c := newCache(t, s, path, 0)
	c.listCap = 2
	for range 2 {
		got, err := c.ListSessions(ctx, core.SessionFilter{})
		if err != nil || len(got) != 3 {
			t.Fatalf("the whole list over the cap: %d sessions, %v", len(got), err)
		}
		if c.list != nil || !c.tooMany {
			t.Fatal("more sessions than the cap were held, or the cap was not remembered")
		}
	}
}
