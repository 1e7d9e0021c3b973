package restshim

import (
	"regexp"
	"testing"
)

// TestNewRequestIDs: ids made for requests have core.NewID's shape and do
// not repeat.
func TestNewRequestIDs(t *testing.T) {
	shape := regexp.MustCompile(`^req-[a-z2-7]{20}$`)
	seen := map[string]bool{}
	for range 100_000 {
		id := newRequestID()
		if !shape.MatchString(id) {
			t.Fatalf("request id %q", id)
		}
		if seen[id] {
			t.Fatalf("request id %q twice", id)
		}
		seen[id] = true
	}
	// Every position takes more than one value (no constant tail).
	for i := 4; i < 24; i++ {
		chars := map[byte]bool{}
		for id := range seen {
			chars[id[i]] = true
		}
		if len(chars) < 32 {
			t.Errorf("position %d takes %d of 32 characters", i, len(chars))
		}
	}
}
