package store

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// sessionList is every session in the database, newest first, kept by the
// ReadCache so that a long list is answered from memory: reading a session
// through database/sql costs about 6 µs, so the whole list of 20,000 took
// ten times as long as sending it.
//
// It is kept current the way the cache's other answers are: a commit of
// this process names the sessions it touched, and those are marked dirty
// and read again, one by one, before the list is next used; a commit the
// cache cannot account for drops the list, and the next long list reads it
// again. A session's creation time and id never change, so a session read
// again keeps its place.
//
// Its sessions are never changed once published (a patch makes a new
// list), so readers use it without the lock; only its dirty marks grow,
// under the cache's lock.
type sessionList struct {
	all []*core.Session // newest first: (created_at, id) descending, as SQL orders them
	// dirty maps each session touched since the list was read to a mark
	// that changes each time it is touched again, so a patch read before
	// the last touch leaves it dirty.
	dirty map[string]uint64
}

const (
	// maxListed bounds the list's memory: a database with more sessions
	// lists them from SQLite. listCap may lower it.
	maxListed = 50_000
	// sessionBytes is what the list holds per session (1,031 bytes
	// measured by BenchmarkListSessions).
	sessionBytes = 1 << 10
	// buildFrom is the smallest page worth reading every session for: a
	// short page (the MCP tools' and the dashboard's 50) costs about a
	// millisecond from SQLite, while the whole list is what is slow.
	buildFrom = 200
	// maxDirty bounds the sessions read again before a list: past it,
	// reading the whole list again costs less.
	maxDirty = 256
	// listSettle is how long after a commit the cache could not account
	// for (another process's) the list is not read again: while another
	// process keeps committing, long lists are read from SQLite as before.
	listSettle = time.Second
)

// listCap is how many sessions the list may hold under a soft memory limit
// (debug.SetMemoryLimit; serve sets 96 MiB): a quarter of it, so a server
// near its limit is not made to collect garbage without end; maxListed at
// most.
func listCap(memoryLimit int64) int {
	return int(min(maxListed, memoryLimit/4/sessionBytes))
}

// ListSessions is Store.ListSessions, from memory when the whole list is
// held (or worth reading: see buildFrom) and nothing it cannot account for
// was committed.
func (c *ReadCache) ListSessions(ctx context.Context, f core.SessionFilter) ([]core.Session, error) {
	if _, ok := c.fresh(ctx); !ok || (f.OrgIDs != nil && len(f.OrgIDs) == 0) {
		return c.Prepared.ListSessions(ctx, f)
	}
	l, err := c.currentList(ctx, f.Limit <= 0 || f.Limit >= buildFrom)
	if err != nil || l == nil {
		return c.Prepared.ListSessions(ctx, f)
	}
	return l.filter(f), nil
}

// currentList returns the list brought up to date, reading it first when
// build is set and none is held; nil when there is none to use.
func (c *ReadCache) currentList(ctx context.Context, build bool) (*sessionList, error) {
	c.mu.Lock()
	l := c.list
	if l == nil {
		// Read every session only when the list is likely to be kept:
		// not while another process keeps committing (each commit would
		// drop it, and a long list asks page by page), and once at a time.
		if !build || c.tooMany || c.building != nil || time.Since(c.dropped) < c.settle {
			c.mu.Unlock()
			return nil, nil
		}
		b := &sessionList{dirty: map[string]uint64{}}
		c.building = b
		c.mu.Unlock()
		return c.buildList(ctx, b)
	}
	marks := maps.Clone(l.dirty)
	c.mu.Unlock()
	if len(marks) == 0 {
		return l, nil
	}
	// Read the touched sessions again, outside the lock.
	fresh := make(map[string]*core.Session, len(marks))
	for id := range marks {
		s, err := c.Prepared.GetSession(ctx, id)
		if errors.Is(err, core.ErrNotFound) {
			fresh[id] = nil // gone: sessions are never deleted today, but a list must not show one that was
			continue
		}
		if err != nil {
			return nil, err
		}
		s = copySession(s)
		fresh[id] = &s
	}
	return c.keepPatched(l, l.patched(fresh), marks), nil
}

// keepPatched makes next, l patched with the sessions marked as in marks,
// the list held, if l still is, and returns it.
func (c *ReadCache) keepPatched(l, next *sessionList, marks map[string]uint64) *sessionList {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.list == l {
		// A session touched again while it was read stays dirty, with
		// its new mark; so do those touched meanwhile for the first time.
		for id, mark := range l.dirty {
			if marks[id] != mark {
				next.dirty[id] = mark
			}
		}
		c.list = next
	}
	// Otherwise the list was dropped or replaced meanwhile; what was read
	// is still no older than this call, so it answers it.
	return next
}

// buildList reads every session into b, begun as c.building. Commits of
// this process seen while it reads mark what they touched in b, so b is
// kept, and patched on its next use; a commit the cache cannot account for
// clears c.building, and then b answers this call only.
func (c *ReadCache) buildList(ctx context.Context, b *sessionList) (*sessionList, error) {
	all, err := c.Prepared.ListSessions(ctx, core.SessionFilter{Limit: c.listCap + 1})
	c.mu.Lock()
	defer c.mu.Unlock()
	kept := c.building == b
	if kept {
		c.building = nil
	}
	if err != nil {
		return nil, err
	}
	if len(all) > c.listCap {
		c.tooMany = kept
		return nil, nil
	}
	b.all = make([]*core.Session, len(all))
	for i := range all {
		b.all[i] = &all[i]
	}
	if kept {
		c.list = b
	}
	// Marks made while reading are only for the next use: this call's
	// rows were read after the list was begun.
	return &sessionList{all: b.all}, nil
}

// touched marks sessions an own commit changed; the caller holds c.mu.
func (c *ReadCache) touched(ids []string) {
	for _, l := range []*sessionList{c.list, c.building} {
		if l == nil {
			continue
		}
		for _, id := range ids {
			c.marks++
			l.dirty[id] = c.marks
		}
	}
	if c.list != nil && len(c.list.dirty) > maxDirty {
		c.list = nil
	}
}

// patched is l with the sessions read again put in their places (a nil
// one removed); its dirty set is empty, for the caller to fill.
func (l *sessionList) patched(fresh map[string]*core.Session) *sessionList {
	next := &sessionList{all: slices.Clone(l.all), dirty: map[string]uint64{}}
	for id, s := range fresh {
		if s == nil {
			next.all = slices.DeleteFunc(next.all, func(x *core.Session) bool { return x.ID == id })
			continue
		}
		i, found := slices.BinarySearchFunc(next.all, s, newestFirst)
		if found {
			next.all[i] = s
		} else {
			next.all = slices.Insert(next.all, i, s)
		}
	}
	return next
}

// newestFirst orders sessions as the list holds them: by creation
// millisecond, then id, both descending (SQL's ORDER BY created_at DESC,
// id DESC on the stored milliseconds and the ids' bytes).
func newestFirst(a, b *core.Session) int {
	if d := b.CreatedAt.UnixMilli() - a.CreatedAt.UnixMilli(); d != 0 {
		if d > 0 {
			return 1
		}
		return -1
	}
	return strings.Compare(b.ID, a.ID)
}

// filter answers f from the list as Store.ListSessions answers it in SQL.
func (l *sessionList) filter(f core.SessionFilter) []core.Session {
	out := []core.Session{}
	keep := func(s *core.Session) bool {
		return (f.OrgIDs == nil || slices.Contains(f.OrgIDs, s.OrgID)) &&
			(f.CodeAgentID == "" || s.CodeAgentID == f.CodeAgentID) &&
			(len(f.Statuses) == 0 || slices.Contains(f.Statuses, s.Status)) &&
			(f.Archived == nil || s.Archived == *f.Archived)
	}
	full := func() bool { return f.Limit > 0 && len(out) >= f.Limit }
	// Sessions from start on come after f.After in newest-first order.
	start := 0
	if f.After != nil {
		// The first session after the key in newest-first order.
		after := &core.Session{CreatedAt: f.After.CreatedAt, ID: f.After.ID}
		start, _ = slices.BinarySearchFunc(l.all, after, func(s, key *core.Session) int {
			if newestFirst(s, key) <= 0 {
				return -1 // s is the key or comes before it
			}
			return 1
		})
	}
	if f.OldestFirst {
		for i := len(l.all) - 1; i >= start && !full(); i-- {
			if keep(l.all[i]) {
				out = append(out, copySession(*l.all[i]))
			}
		}
		return out
	}
	for i := start; i < len(l.all) && !full(); i++ {
		if keep(l.all[i]) {
			out = append(out, copySession(*l.all[i]))
		}
	}
	return out
}
