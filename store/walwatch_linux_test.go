package store

import (
	"testing"
	"time"
)

// TestWatchSeesOtherProcessesThroughInotify: with the timer an hour away,
// another connection's commit still wakes a waiter, well before the watch's
// one-second safety look: the kernel reported the write to the -wal file.
func TestWatchSeesOtherProcessesThroughInotify(t *testing.T) {
	s, path := newStore(t)
	s.commits.pollEvery = time.Hour
	o := mustOwner(t, s)
	sess := testSession(o.OrgID, "ca", 1)
	createSession(t, s, sess)
	other := openAt(t, path)
	for i := range 5 {
		ch, stop := s.Watch(sess.ID)
		start := time.Now()
		appendOne(t, other, sess.ID)
		select {
		case <-ch:
			if took := time.Since(start); took >= walWatchSafety/2 {
				t.Fatalf("commit %d: woken after %v; the safety look, not the write, woke it", i, took)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("commit %d: not woken within 5 s", i)
		}
		stop()
	}
}
