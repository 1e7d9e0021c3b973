package core

import (
	"crypto/rand"
	"strconv"
	"strings"
	"time"
)

// ID prefixes, as in the spec.
const (
	PrefixAgent   = "ca-"
	PrefixSession = "cs-"
	PrefixMessage = "msg-"
	PrefixEvent   = "evt-"
	PrefixRun     = "run-"
	PrefixOrg     = "org-"
	PrefixUser    = "user-"
)

// NewID returns prefix followed by 20 random lower-case base32 characters (100 bits).
func NewID(prefix string) string {
	return prefix + strings.ToLower(rand.Text()[:20])
}

// NewSortableID returns prefix, 10 base32 characters of the Unix millisecond
// time, then 10 random ones (50 bits). Ids made in time order sort together, so
// the unique index on event ids is appended to rather than written at random
// pages: that keeps event appends fast as the log grows.
func NewSortableID(prefix string, t time.Time) string {
	const alphabet = "0123456789abcdefghijklmnopqrstuv" // base32hex: sorts like the number
	ms := uint64(t.UnixMilli())
	var b [10]byte
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = alphabet[ms&31]
		ms >>= 5
	}
	return prefix + string(b[:]) + strings.ToLower(rand.Text()[:10])
}

// Clock tells the time; tests inject a fixed or stepping one.
type Clock interface {
	Now() time.Time
}

// SystemClock is the real clock, in UTC with millisecond precision (what we store).
type SystemClock struct{}

// Now returns the current time truncated to milliseconds, in UTC.
func (SystemClock) Now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// EventID is the id of a session's event with this seq: derived, not
// random, so the log stores no id of its own (events logged before ids were
// derived keep the random ones they were given). Unique, as session ids
// are, and never equal to an older random id, which has no second dash.
func EventID(sessionID string, seq int64) string {
	return eventIDPrefix(sessionID) + strconv.FormatInt(seq, 10)
}

// eventIDPrefix is what a session's EventIDs start with; the seq follows.
func eventIDPrefix(sessionID string) string {
	return PrefixEvent + strings.TrimPrefix(sessionID, PrefixSession) + "-"
}

// SetEventIDs gives every event of one session that has no id its EventID,
// all of them sharing one string: a page of 200 events is then one
// allocation for its ids, not 200.
func SetEventIDs(sessionID string, evs []Event) {
	prefix := eventIDPrefix(sessionID)
	var all strings.Builder
	all.Grow(len(evs) * (len(prefix) + 8))
	ends := make([]int, len(evs))
	var digits [20]byte
	for i, e := range evs {
		if e.ID == "" {
			all.WriteString(prefix)
			all.Write(strconv.AppendInt(digits[:0], e.Seq, 10))
		}
		ends[i] = all.Len()
	}
	ids := all.String()
	start := 0
	for i := range evs {
		if ends[i] > start {
			evs[i].ID = ids[start:ends[i]]
		}
		start = ends[i]
	}
}
