package store

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

func appendOne(t *testing.T, s *Store, sessionID string) {
	t.Helper()
	in := []core.EventInput{{Type: core.EventStdout, Payload: json.RawMessage(`{"line":"x"}`)}}
	if _, err := s.AppendEvents(context.Background(), sessionID, in); err != nil {
		t.Fatal(err)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestWatchWakesOnItsSessionsCommit: a commit of this process wakes the
// session's waiters before the write returns, and nobody else's; another
// process's commit (a second Store on the file) wakes them through the
// header poller; stopping a watch releases it.
func TestWatchWakesOnItsSessionsCommit(t *testing.T) {
	ctx := context.Background()
	s, path, ss := withSessions(t, 2)
	a, b := ss[0], ss[1]

	chA, stopA := s.Watch(a.ID)
	chB, stopB := s.Watch(b.ID)
	appendOne(t, s, a.ID)
	if !isClosed(chA) {
		t.Fatal("A's watch is open after A's append returned; want it closed by the commit")
	}
	// Writes that touch no session wake no one, and A's commits are
	// explained, so the poller (woken by each of them on Linux) leaves B
	// alone too, also while it looks in the middle of a commit.
	if err := s.InsertAgent(ctx, testAgent(a.OrgID, 3)); err != nil {
		t.Fatal(err)
	}
	for range 200 {
		appendOne(t, s, a.ID)
	}
	time.Sleep(5 * s.commits.pollEvery)
	if isClosed(chB) {
		t.Fatal("B's watch closed after commits that touched only A and a template")
	}

	other := openAt(t, path)
	start := time.Now()
	appendOne(t, other, b.ID)
	select {
	case <-chB:
		t.Logf("another process's commit woke the waiter after %v", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatal("B's watch still open 5 s after another process appended to B")
	}
	stopA()
	stopB()
	stopB() // twice is harmless

	// A stopped watch is forgotten; a live one counts its holders.
	ch1, stop1 := s.Watch(a.ID)
	ch2, stop2 := s.Watch(a.ID)
	if ch1 != ch2 {
		t.Fatal("two waiters of one session got different channels")
	}
	stop1()
	s.commits.mu.Lock()
	held := s.commits.watches[a.ID]
	s.commits.mu.Unlock()
	if held == nil || held.n != 1 {
		t.Fatalf("after one of two waiters stopped, watch = %+v; want one holder left", held)
	}
	stop2()
	s.commits.mu.Lock()
	n := len(s.commits.watches)
	s.commits.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d watches remain after every waiter stopped", n)
	}
	// Close wakes whoever still waits.
	ch3, _ := s.Watch(a.ID)
	s.Close()
	if !isClosed(ch3) {
		t.Fatal("a watch stayed open after the store closed")
	}
}

// TestExplainTellsOwnCommitsFromOthers: a chain of this process's commits
// names the sessions it touched; a commit by another connection anywhere in
// the chain makes it unexplained.
func TestExplainTellsOwnCommitsFromOthers(t *testing.T) {
	ctx := context.Background()
	s, path, ss := withSessions(t, 2)
	a, b := ss[0], ss[1]
	head := func() walHeader {
		t.Helper()
		h, ok := s.commits.header()
		if !ok {
			t.Fatal("could not read the WAL-index header")
		}
		return h
	}

	h0 := head()
	appendOne(t, s, a.ID)
	appendOne(t, s, b.ID)
	appendOne(t, s, a.ID)
	h1 := head()
	sessions, other, ok, _ := s.commits.explainNow(h0, h1)
	if !ok || other || !slices.Equal(sessions, []string{a.ID, b.ID, a.ID}) {
		t.Fatalf("explain(own appends) = %v, %v, %v; want [A B A], false, true", sessions, other, ok)
	}
	if err := s.InsertAgent(ctx, testAgent(a.OrgID, 3)); err != nil {
		t.Fatal(err)
	}
	h2 := head()
	if _, other, ok, _ := s.commits.explainNow(h1, h2); !ok || !other {
		t.Fatalf("explain(template insert) = other %v, ok %v; want true, true", other, ok)
	}

	appendOne(t, openAt(t, path), b.ID) // another connection
	h3 := head()
	if h3 == h2 {
		t.Fatal("another connection's commit left the header unchanged")
	}
	if _, _, ok, _ := s.commits.explainNow(h2, h3); ok {
		t.Fatal("another connection's commit was explained as this process's")
	}
	if _, _, ok, _ := s.commits.explainNow(h0, h3); ok {
		t.Fatal("a chain with another connection's commit in it was explained")
	}
	appendOne(t, s, a.ID)
	if sessions, _, ok, _ := s.commits.explainNow(h3, head()); !ok || !slices.Equal(sessions, []string{a.ID}) {
		t.Fatalf("after a foreign commit, explain(own append) = %v, %v; want [A], true", sessions, ok)
	}
}

// TestReadCacheForgetsOnlyWhatChanged: an own commit to one session keeps
// the other sessions' answers, and the touched one is read fresh; another
// process's commit forgets everything.
func TestReadCacheForgetsOnlyWhatChanged(t *testing.T) {
	ctx := context.Background()
	s, path, ss := withSessions(t, 2)
	a, b := ss[0], ss[1]
	c := newCache(t, s, path, listSettle)
	get := func(id string) core.Session {
		t.Helper()
		got, err := c.GetSession(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	cached := func(id string) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.sessions[id]
		return ok
	}
	get(a.ID)
	get(b.ID)
	if !cached(a.ID) || !cached(b.ID) {
		t.Fatal("reads were not remembered")
	}

	appendOne(t, s, a.ID)
	if got := get(a.ID); got.LastEventSeq != 1 {
		t.Fatalf("A read after its append has last_event_seq %d, want 1", got.LastEventSeq)
	}
	if !cached(b.ID) {
		t.Fatal("B was forgotten after a commit that touched only A")
	}
	get(b.ID)

	appendOne(t, openAt(t, path), b.ID)
	if got := get(b.ID); got.LastEventSeq != 1 {
		t.Fatalf("B read after another process's append has last_event_seq %d, want 1", got.LastEventSeq)
	}
	if cached(a.ID) {
		t.Fatal("A was kept after a commit this process cannot account for")
	}
}
