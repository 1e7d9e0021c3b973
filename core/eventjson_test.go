package core_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flapjack-dev/flapjack/core"
)

// referenceJSON is an Event as encoding/json writes it from its tags, the
// time in TimeFormat: what Event's hand-written JSON must equal.
func referenceJSON(t *testing.T, e core.Event) []byte {
	t.Helper()
	raw, err := json.Marshal(struct {
		ID          string          `json:"id"`
		SessionID   string          `json:"session_id"`
		MessageID   *string         `json:"message_id"`
		CursorRunID *string         `json:"cursor_run_id"`
		Type        core.EventType  `json:"event_type"`
		Payload     json.RawMessage `json:"payload"`
		Seq         int64           `json:"seq"`
		CreatedAt   string          `json:"created_at"`
	}{e.ID, e.SessionID, e.MessageID, e.CursorRunID, e.Type, e.Payload, e.Seq, core.FormatTime(e.CreatedAt)})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// reference is referenceJSON decoded.
func reference(t *testing.T, e core.Event) any {
	var v any
	json.Unmarshal(referenceJSON(t, e), &v)
	return v
}

// TestEventJSONMatchesTheTags: events and pages written in one buffer are
// valid JSON equal to encoding/json's, for hostile strings too (quotes,
// backslashes, control characters, HTML, invalid UTF-8), with null ids and
// an empty payload; HTML characters are escaped as encoding/json does.
func TestEventJSONMatchesTheTags(t *testing.T) {
	hostile := []string{"plain-id", `q"uote`, `back\slash`, "ctl\x00\x1f\n\t", "<script>alert(1)</script>", "a&b", "é ✓ 🚀", "bad\xffutf8", "\u2028\u2029", ""}
	r := rand.New(rand.NewPCG(1, 2))
	var page core.EventPage
	for i := range 200 {
		s := func() *string {
			if r.IntN(4) == 0 {
				return nil
			}
			v := hostile[r.IntN(len(hostile))]
			return &v
		}
		sid := "cs-x"
		if v := s(); v != nil {
			sid = *v
		}
		e := core.Event{ID: core.EventID("cs-abc", int64(i)), SessionID: sid, MessageID: s(), CursorRunID: s(),
			Type: core.EventType(hostile[r.IntN(len(hostile))]), Seq: int64(i),
			CreatedAt: time.UnixMilli(r.Int64N(4e12)).In(time.FixedZone("x", 3600))}
		switch i % 3 {
		case 0:
			e.Payload = json.RawMessage(`{"line":"<b>&amp;</b>","n":[1,2.5e3,null,true]}`)
		case 1:
			e.Payload = nil
		}
		raw, err := e.MarshalJSON()
		if err != nil || !json.Valid(raw) {
			t.Fatalf("event %d: %v, %s", i, err, raw)
		}
		if strings.ContainsAny(string(raw[:strings.Index(string(raw), `"payload"`)]), "<>&") {
			t.Fatalf("event %d: HTML characters unescaped in %s", i, raw)
		}
		var got any
		json.Unmarshal(raw, &got)
		if diff := cmp.Diff(reference(t, e), got); diff != "" {
			t.Fatalf("event %d (-encoding/json +written):\n%s", i, diff)
		}
		page.Events = append(page.Events, e)
	}
	page.LastSeq = 199
	raw, err := page.MarshalJSON()
	if err != nil || !json.Valid(raw) {
		t.Fatalf("page: %v", err)
	}
	var back struct {
		Events  []json.RawMessage `json:"events"`
		LastSeq int64             `json:"last_seq"`
	}
	if err := json.Unmarshal(raw, &back); err != nil || len(back.Events) != 200 || back.LastSeq != 199 {
		t.Fatalf("page decodes to %d events, last_seq %d (%v)", len(back.Events), back.LastSeq, err)
	}
	empty, _ := core.EventPage{Events: []core.Event{}, LastSeq: 7}.MarshalJSON()
	if string(empty) != `{"events":[],"last_seq":7}` {
		t.Fatalf("empty page = %s", empty)
	}
}

// TestEventPageJSONIsEncodingJSONs: a page is written byte for byte as
// encoding/json writes its events, for ids that carry one character that
// must be escaped at any offset of an eight-byte word (every control
// character, quote, backslash, HTML character and non-ASCII byte), for
// neighbours that share their strings (as the store hands them out) or
// only equal them, for times within a second, across seconds, before 1970
// and in years RFC 3339 cannot hold, and for seqs that follow one another
// (across 9…9 to 10…0 too), jump, go below zero and wrap past the largest.
func TestEventPageJSONIsEncodingJSONs(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var specials []byte
	for c := range 256 {
		if c < 0x20 || c >= 0x80 || strings.ContainsRune(`"\<>&`, rune(c)) {
			specials = append(specials, byte(c))
		}
	}
	word := func() string {
		b := []byte(strings.Repeat("abcdefgh", 4)[:1+r.IntN(30)])
		if r.IntN(3) > 0 {
			b[r.IntN(len(b))] = specials[r.IntN(len(specials))]
		}
		return string(b)
	}
	shared, sharedType := word(), core.EventType(word())
	base := time.Date(2026, 12, 4, 5, 59, 59, 0, time.UTC)
	var page core.EventPage
	seq := int64(0)
	for range 2000 {
		switch r.IntN(40) {
		case 0:
			seq += r.Int64N(1e6) // a jump: message pages skip seqs
		case 1:
			seq = 99_999 - r.Int64N(3) // the next few carry into a sixth digit
		case 2:
			seq = -r.Int64N(20)
		case 3:
			seq = math.MaxInt64 - r.Int64N(2) // its follower wraps to the smallest
		default:
			seq++
		}
		msg := shared
		if r.IntN(3) == 0 {
			msg = word()
		} else if r.IntN(2) == 0 {
			msg = strings.Clone(shared) // equal, not the same string
		}
		// Neighbours mostly share their type, so most events repeat the
		// last one's fields but one: absent, present, equal or not.
		typ := sharedType
		if r.IntN(4) == 0 {
			typ = core.EventType(word())
		}
		e := core.Event{ID: word(), SessionID: shared, MessageID: &msg, CursorRunID: &shared, Type: typ,
			Payload: json.RawMessage(`{"n":1}`), Seq: seq, CreatedAt: base.Add(time.Duration(r.IntN(3000)) * time.Millisecond)}
		switch r.IntN(20) {
		case 0:
			e.CreatedAt = time.UnixMilli(-r.Int64N(1e12)) // before 1970
		case 1:
			e.CreatedAt = time.Date(10000+r.IntN(100), 1, 1, 0, 0, 0, 0, time.UTC)
		}
		switch r.IntN(6) {
		case 0:
			e.MessageID = nil
		case 1:
			e.CursorRunID = nil
		case 2:
			e.MessageID, e.CursorRunID = nil, nil
		}
		page.Events = append(page.Events, e)
	}
	raw, err := page.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var back struct{ Events []json.RawMessage }
	if err := json.Unmarshal(raw, &back); err != nil || len(back.Events) != len(page.Events) {
		t.Fatalf("page decodes to %d events (%v)", len(back.Events), err)
	}
	for i, e := range page.Events {
		want := referenceJSON(t, e)
		if string(back.Events[i]) != string(want) {
			t.Fatalf("event %d:\n got %q\nwant %q", i, back.Events[i], want)
		}
	}
}
