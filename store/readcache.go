package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// ReadCache is the Store with a memory in front of the reads a REST server
// repeats on every request: the token's actor, the session, its messages;
// and the list of every session, for long lists (sessionlist.go).
//
// Why: every SQLite call in a process goes through the same allocator locks,
// so statements do not run in parallel, and three small reads per request
// cap a server at a few thousand requests per second however many cores it
// has. Remembering answers removes them; the hard part is knowing, without
// asking SQLite, that nothing changed.
//
// How it knows: in WAL mode every commit, by any connection of any process,
// rewrites the wal-index header at the start of the database's -shm file
// (its change counter, frame count and checksums; see "WAL-mode file
// formats" in the SQLite documentation). The cache reads those 96 bytes
// (from the page mapped, or with a pread) before every use and forgets
// everything when they differ from the last look. A header caught mid-write
// differs too, which only costs a miss. An answer is stored with the header
// seen before it was read, so it can be newer than its tag but never
// older. As a safety net, PRAGMA
// data_version is also asked at most every probeEvery, and the -shm file is
// reopened if it was replaced.
//
// The Service above still makes every decision, org checks included, on
// what the cache returns; the cache only saves re-reading identical rows.
type ReadCache struct {
	*Prepared

	shmPath string

	mu     sync.Mutex
	shm    *shmView
	header [walHeaderBytes]byte
	dv     int64     // data_version at the last probe
	probed time.Time // when data_version was last asked
	// probedHeader is the header at that probe.
	probedHeader [walHeaderBytes]byte
	sessions     map[string]core.Session
	messages     map[string][]core.Message
	actors       map[string]cachedActor
	// list is every session, for long lists (sessionlist.go); nil when
	// not held. building is one being read. tooMany is set when there
	// were too many to hold.
	list     *sessionList
	building *sessionList
	listCap  int // the most sessions the list holds
	tooMany  bool
	marks    uint64 // the last dirty mark given (sessionList.dirty)
	// dropped is when clear last forgot everything: the list is not read
	// again until settle has passed since.
	dropped time.Time
	settle  time.Duration
}

type cachedActor struct {
	actor   core.Actor
	tokenID string
}

const (
	// walHeaderBytes covers both copies of the wal-index header.
	walHeaderBytes = 96
	// maxCached bounds each map; past it, the map starts over.
	maxCached = 4096
	// probeEvery bounds how long a change the header missed could go
	// unseen, if the -shm file ever behaved unlike its documentation.
	probeEvery = 250 * time.Millisecond
)

var _ core.Store = (*ReadCache)(nil)

// NewReadCache wraps the Store opened at dbPath. Close it before s.
func NewReadCache(s *Store, dbPath string) (*ReadCache, error) {
	p, err := NewPrepared(s)
	if err != nil {
		return nil, err
	}
	c := &ReadCache{Prepared: p, shmPath: dbPath + "-shm", dv: -1, settle: listSettle,
		listCap: listCap(debug.SetMemoryLimit(-1))} // -1 reads the limit, changing nothing
	c.clear()
	c.dropped = time.Time{} // nothing was dropped yet
	// The -shm file exists once the database is open in WAL mode.
	if c.shm, err = openSHMView(c.shmPath, walHeaderBytes); err != nil {
		p.Close()
		return nil, fmt.Errorf("store: read cache: %w", err)
	}
	return c, nil
}

// Close releases the cache (not the Store).
func (c *ReadCache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shm != nil {
		c.shm.close()
		c.shm = nil
	}
	return c.Prepared.Close()
}

func (c *ReadCache) clear() {
	c.sessions = map[string]core.Session{}
	c.messages = map[string][]core.Message{}
	c.actors = map[string]cachedActor{}
	c.list, c.building, c.tooMany = nil, nil, false
	c.dropped = time.Now()
}

// fresh brings the memory up to date with the file: it forgets everything
// when anything was committed since the last look. ok is false when that
// cannot be known; then the caller reads the database and stores nothing.
// It returns the generation answers read now may be stored under.
func (c *ReadCache) fresh(ctx context.Context) (gen [walHeaderBytes]byte, ok bool) {
	c.mu.Lock()
	shm := c.shm
	c.mu.Unlock()
	if shm == nil {
		return gen, false
	}
	// Read outside the lock: concurrent requests look at once.
	var h [walHeaderBytes]byte
	read := shm.read(h[:])
	c.mu.Lock()
	defer c.mu.Unlock()
	if !read || shm != c.shm {
		c.clear()
		return gen, false
	}
	if h != c.header {
		if !c.forget(c.header, h) {
			// A commit of this process is under way: read the database
			// this time, and judge the change once it is recorded.
			return gen, false
		}
		c.header = h
	}
	if time.Since(c.probed) >= probeEvery {
		if !c.probe(ctx) {
			c.clear()
			return gen, false
		}
	}
	return c.header, true
}

// forget drops what changed between two headers: when this process's own
// commits explain the change, only the sessions they touched (and the
// actors, if anything else was written); otherwise everything. So a server
// whose runner writes four sessions' events keeps every other session's
// answers. The caller holds c.mu.
// It returns false, forgetting nothing, while a commit of this process
// that may explain the change is not recorded yet.
func (c *ReadCache) forget(from, to [walHeaderBytes]byte) bool {
	sessions, other, ok, pending := c.Store.commits.explainNow(from, to)
	if pending {
		return false
	}
	if !ok {
		c.clear()
		if from == ([walHeaderBytes]byte{}) {
			c.dropped = time.Time{} // the first look: nothing was held to drop
		}
		return true
	}
	for _, id := range sessions {
		delete(c.sessions, id)
		delete(c.messages, id)
	}
	c.touched(sessions)
	if other {
		c.actors = map[string]cachedActor{}
	}
	return true
}

// probe is the safety net: ask SQLite itself, and follow a replaced -shm
// file. It reports false when the cache cannot be trusted right now.
func (c *ReadCache) probe(ctx context.Context) bool {
	dv, err := c.Store.DataVersion(ctx)
	if err != nil {
		return false
	}
	// A commit always moves the header too; data_version moving alone
	// means the header cannot be trusted, so nothing remembered can be.
	if c.dv != -1 && dv != c.dv && c.header == c.probedHeader {
		c.clear()
	}
	c.dv, c.probed, c.probedHeader = dv, time.Now(), c.header
	cur, err1 := c.shm.stat()
	now, err2 := os.Stat(c.shmPath)
	if err1 != nil || err2 != nil {
		return false
	}
	if !os.SameFile(cur, now) {
		v, err := openSHMView(c.shmPath, walHeaderBytes)
		if err != nil {
			return false
		}
		c.shm.close() // waits for a read of the old one under way
		c.shm = v
		c.header = [walHeaderBytes]byte{}
		c.clear()
	}
	return true
}

// lookup returns a remembered answer, if the data has not moved.
func lookup[V any](c *ReadCache, ctx context.Context, m func() map[string]V, key string) (V, [walHeaderBytes]byte, bool, bool) {
	gen, ok := c.fresh(ctx)
	var zero V
	if !ok {
		return zero, gen, false, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, hit := m()[key]
	return v, gen, hit && c.header == gen, true
}

// remember stores an answer read after seeing gen, unless the data has
// moved since.
func remember[V any](c *ReadCache, gen [walHeaderBytes]byte, m func() map[string]V, key string, val V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !bytes.Equal(c.header[:], gen[:]) {
		return
	}
	mm := m()
	if len(mm) >= maxCached {
		clear(mm)
	}
	mm[key] = val
}

// GetSession is Store.GetSession, from memory while nothing was committed.
func (c *ReadCache) GetSession(ctx context.Context, id string) (core.Session, error) {
	sessions := func() map[string]core.Session { return c.sessions }
	s, gen, hit, ok := lookup(c, ctx, sessions, id)
	if hit {
		return copySession(s), nil
	}
	s, err := c.Prepared.GetSession(ctx, id)
	if err == nil && ok {
		remember(c, gen, sessions, id, copySession(s))
	}
	return s, err
}

// ListMessages is Store.ListMessages, from memory while nothing was committed.
func (c *ReadCache) ListMessages(ctx context.Context, sessionID string) ([]core.Message, error) {
	messages := func() map[string][]core.Message { return c.messages }
	ms, gen, hit, ok := lookup(c, ctx, messages, sessionID)
	if hit {
		return slices.Clone(ms), nil
	}
	ms, err := c.Prepared.ListMessages(ctx, sessionID)
	if err == nil && ok {
		remember(c, gen, messages, sessionID, slices.Clone(ms))
	}
	return ms, err
}

// ActorForToken is Store.ActorForToken, from memory while nothing was
// committed: revoking a token is a commit, so it takes effect at once.
func (c *ReadCache) ActorForToken(ctx context.Context, hash []byte) (core.Actor, string, error) {
	actors := func() map[string]cachedActor { return c.actors }
	key := string(hash)
	e, gen, hit, ok := lookup(c, ctx, actors, key)
	if hit {
		e.actor.OrgIDs = slices.Clone(e.actor.OrgIDs)
		return e.actor, e.tokenID, nil
	}
	a, id, err := c.Prepared.ActorForToken(ctx, hash)
	if err == nil && ok {
		stored := a
		stored.OrgIDs = slices.Clone(a.OrgIDs)
		remember(c, gen, actors, key, cachedActor{actor: stored, tokenID: id})
	}
	return a, id, err
}

// copySession copies what a caller could change in place.
func copySession(s core.Session) core.Session {
	s.CursorKeyCiphertext = slices.Clone(s.CursorKeyCiphertext)
	return s
}
