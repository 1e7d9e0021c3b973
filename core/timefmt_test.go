package core

import (
	"encoding/json"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestTimestampsHaveThreeFractionalDigits: every timestamp of every API
// object is written with exactly three fractional digits, in UTC, and reads
// back to the same instant (at millisecond precision, as stored).
func TestTimestampsHaveThreeFractionalDigits(t *testing.T) {
	at := time.Date(2026, 5, 6, 12, 0, 0, 670_000_000, time.FixedZone("x", 3600))
	whole := time.Date(2026, 5, 6, 12, 0, 0, 0, time.UTC)
	d := SessionDetail{
		Session:  Session{ID: "cs-1", CreatedAt: at, StartedAt: &whole, CompletedAt: &at, LastEventAt: &at},
		Messages: []Message{{ID: "m-1", CreatedAt: whole, StartedAt: &at}},
	}
	values := []any{d, d.Session, d.Messages[0], Event{ID: "e-1", CreatedAt: at}, CodeAgent{ID: "ca-1", CreatedAt: at, UpdatedAt: whole}}
	stamp := regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"`)
	for _, v := range values {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		stamps := stamp.FindAllString(string(b), -1)
		if len(stamps) == 0 {
			t.Errorf("%T: no timestamps in %s", v, b)
		}
		for _, s := range stamps {
			if !regexp.MustCompile(`\.\d{3}Z"$`).MatchString(s) {
				t.Errorf("%T: timestamp %s, want exactly three fractional digits in UTC", v, s)
			}
		}
	}
	b, _ := json.Marshal(d)
	var back SessionDetail
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.CreatedAt.Equal(at) || len(back.Messages) != 1 || !back.Messages[0].CreatedAt.Equal(whole) {
		t.Errorf("round trip: %s", cmp.Diff(d, back))
	}
}
