package core

import (
	"crypto/rand"
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

// Clock tells the time; tests inject a fixed or stepping one.
type Clock interface {
	Now() time.Time
}

// SystemClock is the real clock, in UTC with millisecond precision (what we store).
type SystemClock struct{}

// Now returns the current time truncated to milliseconds, in UTC.
func (SystemClock) Now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }
