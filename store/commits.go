package store

import (
	"encoding/binary"
	"os"
	"strings"
	"sync"
	"time"
)

// commits knows when the database changed and, for this process's own
// commits, which session each one touched. Readers use it to wait for a
// session's next commit instead of polling (Watch), and the ReadCache to
// forget only what a commit changed.
//
// How: every commit, by any process, rewrites the WAL-index header at the
// start of the -shm file, and its iChange field counts transactions. A write
// of this process reads the header inside its transaction (holding SQLite's
// write lock, so no other commit can land) and again after committing. When
// iChange moved by exactly one, the change between the two headers is this
// commit alone, and it is recorded with the session it touched. A header
// change that no chain of recorded commits explains is another process's (or
// an unrecorded write's): then every waiter is woken and every cached answer
// forgotten. Being wrong can only cost a needless wake-up or a cache miss,
// never a missed change.
type commits struct {
	shmPath, walPath string
	// pollEvery is how often, while anyone waits and the kernel cannot
	// report writes to the -wal file, the header is read to notice other
	// processes' commits.
	pollEvery time.Duration

	mu      sync.Mutex
	shm     *os.File
	recent  []ownCommit // the last maxRecent own commits, oldest first
	watches map[string]*watch
	polling bool
	// inflight counts this process's commits between COMMIT and their
	// record: a header seen then may hold a commit not yet recorded, so it
	// is judged only once they are.
	inflight int
	ww       *walWatch // the poller's, while it runs
	seen     walHeader // the header the poller last accounted for
	closed   bool
}

// walHeader is both copies of the WAL-index header (see "WAL-mode file
// formats" in the SQLite documentation).
type walHeader [walHeaderBytes]byte

// iChange is the header's transaction counter (native byte order: the
// header is shared memory).
func (h walHeader) iChange() uint32 { return binary.NativeEndian.Uint32(h[8:12]) }

// valid reports whether h was read whole: both copies agree and the index
// is initialised. A header caught mid-write differs between its copies.
func (h walHeader) valid() bool {
	return h[12] != 0 && [48]byte(h[:48]) == [48]byte(h[48:])
}

// ownCommit is one commit of this process: the header before and after it,
// and what it touched.
type ownCommit struct {
	before, after walHeader
	scope         writeScope
}

// writeScope says what a write transaction may change: one session (its
// row, messages and events), or other things (tokens, orgs, templates,
// webhooks), which no Watch follows.
type writeScope struct {
	session string
}

// watch is the channel closed at a session's next commit, and how many
// waiters hold it.
type watch struct {
	ch chan struct{}
	n  int
}

// maxRecent bounds the record of own commits. A reader that last looked
// longer ago than that many commits simply starts over.
const maxRecent = 1024

// defaultPollEvery keeps a commit by another process under ~25 ms from its
// waiters where there is no inotify; one 96-byte read per tick, and only
// while someone waits.
const defaultPollEvery = 20 * time.Millisecond

func newCommits(shmPath string) (*commits, error) {
	f, err := os.Open(shmPath)
	if err != nil {
		return nil, err
	}
	return &commits{shmPath: shmPath, walPath: strings.TrimSuffix(shmPath, "-shm") + "-wal", pollEvery: defaultPollEvery, shm: f, watches: map[string]*watch{}}, nil
}

// close stops the poller and releases the file; waiters are woken.
func (c *commits) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.wakeAll()
	if c.ww != nil {
		c.ww.close() // ends the poller's wait
	}
	return c.shm.Close()
}

// header reads the WAL-index header now. ok is false when it could not be
// read whole.
func (c *commits) header() (walHeader, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.headerLocked()
}

// headerLocked is header for a caller holding c.mu (one pread).
func (c *commits) headerLocked() (h walHeader, ok bool) {
	if c.closed {
		return h, false
	}
	n, err := c.shm.ReadAt(h[:], 0)
	return h, err == nil && n == len(h) && h.valid()
}

// committing notes a commit of this process about to happen; committed or
// notCommitted must follow.
func (c *commits) committing() {
	c.mu.Lock()
	c.inflight++
	c.mu.Unlock()
}

// notCommitted ends a committing whose COMMIT failed.
func (c *commits) notCommitted() {
	c.mu.Lock()
	c.inflight--
	c.mu.Unlock()
}

// committed records a commit of this process: before was read inside the
// transaction, after once it committed. The session it touched is woken at
// once; the record lets readers tell this commit from another process's.
func (c *commits) committed(before, after walHeader, ok bool, scope writeScope) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inflight--
	if ok && after.iChange() == before.iChange()+1 {
		if len(c.recent) == maxRecent {
			c.recent = append(c.recent[:0], c.recent[maxRecent/2:]...)
		}
		c.recent = append(c.recent, ownCommit{before: before, after: after, scope: scope})
	}
	if scope.session != "" {
		c.wake(scope.session)
	}
}

// explain reports what changed between two headers, if a chain of this
// process's recorded commits leads from one to the other: the sessions
// touched, and whether anything else was. ok is false for a change it cannot
// account for. The caller holds c.mu.
func (c *commits) explain(from, to walHeader) (sessions []string, other bool, ok bool) {
	if from == to {
		return nil, false, true
	}
	i := 0
	for ; i < len(c.recent) && c.recent[i].before != from; i++ {
	}
	for ; i < len(c.recent); i++ {
		oc := c.recent[i]
		if oc.before != from {
			return nil, false, false
		}
		if oc.scope.session == "" {
			other = true
		} else {
			sessions = append(sessions, oc.scope.session)
		}
		if from = oc.after; from == to {
			return sessions, other, true
		}
	}
	return nil, false, false
}

// explainNow is explain under the lock, for the ReadCache. pending is true
// when a commit of this process is under way and the change cannot be
// judged yet.
func (c *commits) explainNow(from, to walHeader) (sessions []string, other, ok, pending bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sessions, other, ok = c.explain(from, to)
	return sessions, other, ok, !ok && c.inflight > 0
}

// Watch returns a channel closed at the next commit that may have changed
// the session (its row, messages or events), and a function to call when no
// longer waiting. Subscribe first, then read: a commit after the read then
// always closes the channel. Commits of this process close it at once; those
// of other processes within about 20 ms.
func (s *Store) Watch(sessionID string) (<-chan struct{}, func()) {
	return s.commits.watch(sessionID)
}

func (c *commits) watch(sessionID string) (<-chan struct{}, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		ch := make(chan struct{})
		close(ch)
		return ch, func() {}
	}
	w := c.watches[sessionID]
	if w == nil {
		w = &watch{ch: make(chan struct{})}
		c.watches[sessionID] = w
	}
	w.n++
	if !c.polling {
		// The poller starts from the header as it is now: anything
		// committed before this point is visible to the caller's read, and
		// the WAL is watched from before that look. Without a watch (an
		// error from the kernel), the poller reads the header on a timer.
		ww, err := newWALWatch(c.walPath)
		if err != nil {
			ww = nil
		}
		c.polling, c.ww = true, ww
		c.seen, _ = c.headerLocked()
		go c.poll(ww)
	}
	ch := w.ch
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			// Only the holders of this channel count down; a woken watch
			// was already replaced.
			if cur := c.watches[sessionID]; cur == w {
				if w.n--; w.n == 0 {
					delete(c.watches, sessionID)
				}
			}
		})
	}
}

// wake closes the session's watch. The caller holds c.mu.
func (c *commits) wake(sessionID string) {
	if w := c.watches[sessionID]; w != nil {
		close(w.ch)
		delete(c.watches, sessionID)
	}
}

// wakeAll closes every watch. The caller holds c.mu.
func (c *commits) wakeAll() {
	for id, w := range c.watches {
		close(w.ch)
		delete(c.watches, id)
	}
}

// poll looks at the header whenever the -wal file is written (Linux), or
// every pollEvery (elsewhere), while anyone waits, and wakes every waiter
// when it moved in a way this process's commits do not explain. A write to
// the WAL comes before its commit's header (the fsync is between), so after
// one the header is looked at every fastPoll until it moves.
func (c *commits) poll(ww *walWatch) {
	var fastUntil time.Time
	for {
		if time.Now().Before(fastUntil) {
			time.Sleep(fastPoll)
		} else if ww == nil {
			time.Sleep(c.pollEvery)
		} else if ww.wait(c.pollEvery) {
			fastUntil = time.Now().Add(fastPollFor)
		}
		c.mu.Lock()
		h, ok := c.headerLocked()
		if c.closed || len(c.watches) == 0 {
			c.polling, c.ww = false, nil
			c.mu.Unlock()
			if ww != nil {
				ww.close()
			}
			return
		}
		if ok && h != c.seen {
			_, _, explained := c.explain(c.seen, h)
			switch {
			case !explained && c.inflight > 0:
				// Perhaps this process's commit, not yet recorded:
				// look again in a moment.
				fastUntil = time.Now().Add(fastPollFor)
			case !explained:
				c.wakeAll()
				fallthrough
			default:
				c.seen = h
				fastUntil = time.Time{}
			}
		}
		c.mu.Unlock()
	}
}

// fastPoll and fastPollFor: after a write to the WAL, the header is read
// every fastPoll until it moves, for at most fastPollFor (a slow fsync).
const (
	fastPoll    = 2 * time.Millisecond
	fastPollFor = 200 * time.Millisecond
)
