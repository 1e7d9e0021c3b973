package core

import (
	"encoding/json"
	"math/rand/v2"
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

// TestAppendTimeMatchesTimeFormat: the hand-placed digits equal
// time.Format's TimeFormat for times across the years, in any zone, at any
// nanosecond (truncated to milliseconds as Format truncates), and outside
// 0000-9999 too.
func TestAppendTimeMatchesTimeFormat(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	zones := []*time.Location{time.UTC, time.FixedZone("east", 14*3600), time.FixedZone("west", -12*3600-30*60)}
	times := []time.Time{
		{}, time.Unix(0, 0), time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 2, 29, 23, 59, 59, 999_999_999, time.FixedZone("x", -3600)),
	}
	for range 20000 {
		times = append(times, time.Unix(r.Int64N(400e9)-100e9, r.Int64N(1e9)).In(zones[r.IntN(len(zones))]))
	}
	for _, tm := range times {
		want := tm.UTC().Format(TimeFormat)
		if got := string(AppendTime([]byte("x"), tm)); got != "x"+want {
			t.Fatalf("AppendTime(%v) = %q, want %q", tm, got[1:], want)
		}
		if got := FormatTime(tm); got != want {
			t.Fatalf("FormatTime(%v) = %q, want %q", tm, got, want)
		}
	}
}
