package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/flapjack-dev/flapjack/core"
)

// blockRecords reads every block of a session in order, checks that they
// hold consecutive seqs within the block limits, and returns their records.
func blockRecords(t *testing.T, s *Store, session string) []record {
	t.Helper()
	rows, err := s.db.Query(`SELECT first_seq, last_seq, body FROM event_blocks WHERE session_id = ? ORDER BY last_seq`, session)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []record
	next := int64(0)
	for rows.Next() {
		var first, last int64
		var body []byte
		if err := rows.Scan(&first, &last, &body); err != nil {
			t.Fatal(err)
		}
		if next != 0 && first != next {
			t.Errorf("block %d..%d follows one ending at %d", first, last, next-1)
		}
		r := blockReader{body: body}
		for {
			rec, ok, err := r.next()
			if err != nil {
				t.Fatalf("block %d..%d: %v", first, last, err)
			}
			if !ok {
				break
			}
			out = append(out, *rec)
		}
		if int64(r.n) != last-first+1 {
			t.Errorf("block %d..%d holds %d records", first, last, r.n)
		}
		if r.n > maxBlockEvents || (r.n > 1 && len(body) > maxBlockBytes) {
			t.Errorf("block %d..%d: %d records, %d bytes; limits %d, %d", first, last, r.n, len(body), maxBlockEvents, maxBlockBytes)
		}
		next = last + 1
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// hostileBytes is a field as an agent or upstream might send it: empty,
// binary, multi-byte, or long enough to need a two-byte length.
func hostileBytes(r *rand.Rand) []byte {
	switch r.IntN(5) {
	case 0:
		return []byte{}
	case 1:
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return b
	case 2:
		return []byte("é\x00\u2028\"\\<" + fmt.Sprint(r.IntN(3)))
	case 3:
		return []byte(strings.Repeat("x", 100+r.IntN(300)))
	}
	return []byte(fmt.Sprint("v", r.IntN(2)))
}

// TestBlockRecordsRoundTrip writes random records (fields absent, repeated
// from the previous record or new, times going back and forth) and reads
// back exactly what was written.
func TestBlockRecordsRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		var w blockWriter
		var want []record
		for range 1 + r.IntN(150) {
			rec := record{
				created: int64(r.IntN(1<<40)) - 1<<39,
				typ:     hostileBytes(r),
				payload: hostileBytes(r),
			}
			if len(want) > 0 && r.IntN(2) == 0 {
				prev := want[len(want)-1]
				rec.typ, rec.messageID, rec.runID = prev.typ, prev.messageID, prev.runID
				rec.created = prev.created + int64(r.IntN(1000))
			} else {
				if r.IntN(3) > 0 {
					rec.messageID = hostileBytes(r)
				}
				if r.IntN(3) > 0 {
					rec.runID = hostileBytes(r)
				}
			}
			if r.IntN(4) == 0 {
				rec.id = hostileBytes(r)
			}
			w.add(rec)
			want = append(want, rec)
		}
		br := blockReader{body: w.body}
		var got []record
		for {
			rec, ok, err := br.next()
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if !ok {
				break
			}
			got = append(got, *rec)
		}
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(record{}), cmp.Comparer(func(a, b []byte) bool {
			return (a == nil) == (b == nil) && string(a) == string(b)
		})); diff != "" {
			t.Fatalf("round %d: records differ (-written +read):\n%s", round, diff)
		}
	}
}

// FuzzBlockReader: whatever a body holds (a damaged file, a hand-edited
// row), reading it returns records or an error, never a panic, and a
// record's fields lie within the body.
func FuzzBlockReader(f *testing.F) {
	var w blockWriter
	w.add(record{created: 1, typ: []byte("stdout"), messageID: []byte("m"), payload: []byte(`{}`)})
	w.add(record{created: 2, typ: []byte("stdout"), messageID: []byte("m"), runID: []byte("r"), id: []byte("e"), payload: []byte(`{"a":1}`)})
	f.Add(w.body)
	f.Add([]byte{})
	f.Add([]byte{2, recSameType, 0})
	f.Add([]byte{3, recMessage | recSameMessage, 0, 0})
	f.Fuzz(func(t *testing.T, body []byte) {
		r := blockReader{body: body}
		for range len(body) + 1 {
			rec, ok, err := r.next()
			if err != nil || !ok {
				return
			}
			for _, f := range [][]byte{rec.typ, rec.messageID, rec.runID, rec.id, rec.payload} {
				if len(f) > len(body) {
					t.Fatalf("a field of %d bytes from a body of %d", len(f), len(body))
				}
			}
		}
		t.Fatal("more records than bytes")
	})
}

// TestEventBlocksAtEveryDepth appends batches of every shape (single
// events, batches that fill and spill over blocks, payloads larger than a
// block) and reads the log from every seq, with limits and byte caps,
// against the events as appended.
func TestEventBlocksAtEveryDepth(t *testing.T) {
	ctx := context.Background()
	s, _, sessions := withSessions(t, 1)
	sess := sessions[0]
	msgs, err := s.ListMessages(ctx, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	msg := msgs[0].ID
	r := rand.New(rand.NewPCG(3, 4))
	var all []core.Event
	big := 0
	for _, size := range []int{1, 1, 126, 1, 1, 300, 7, 128, 1, 2, 64, 200} {
		batch := make([]core.EventInput, size)
		for i := range batch {
			payload := fmt.Sprintf(`{"n":%d}`, len(all)+i)
			if r.IntN(50) == 0 {
				payload = `{"big":"` + strings.Repeat("y", maxBlockBytes+r.IntN(100)) + `"}`
				big++
			}
			batch[i] = core.EventInput{Type: core.EventStdout, Payload: json.RawMessage(payload), CursorRunID: fmt.Sprint("run-", r.IntN(2))}
			if r.IntN(10) > 0 {
				batch[i].MessageID = msg
			}
		}
		got, err := s.AppendEvents(ctx, sess.ID, batch)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, got...)
	}
	if recs := blockRecords(t, s, sess.ID); len(recs) != len(all) {
		t.Fatalf("%d records stored for %d events", len(recs), len(all))
	}
	var blocks int
	s.db.QueryRow(`SELECT COUNT(*) FROM event_blocks WHERE session_id = ?`, sess.ID).Scan(&blocks)
	// A payload larger than a block ends the block before it and has its
	// own; every other block is full when the next starts.
	if most := len(all)/maxBlockEvents + 1 + 2*big; blocks > most {
		t.Errorf("%d events in %d blocks: appends did not fill the last block", len(all), blocks)
	}
	for since := int64(0); since <= int64(len(all)); since++ {
		limit := int(since%7) * 40 // 0: no limit
		got, err := s.ListEvents(ctx, core.EventQuery{SessionID: sess.ID, Since: since, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		want := all[since:]
		if limit > 0 && len(want) > limit {
			want = want[:limit]
		}
		if !reflect.DeepEqual(want, got) { // cmp is slow on 800 events, 800 times
			diff := cmp.Diff(want, got)
			t.Fatalf("since %d limit %d (-appended +read):\n%s", since, limit, diff)
		}
		if since%5 == 0 {
			streamed := streamAll(t, s, core.EventQuery{SessionID: sess.ID, Since: since, Limit: limit})
			if !reflect.DeepEqual(want, streamed) {
				t.Fatalf("since %d limit %d: StreamEvents (+) differs from the appended (-):\n%s", since, limit, cmp.Diff(want, streamed))
			}
		}
		mine, err := s.ListEvents(ctx, core.EventQuery{SessionID: sess.ID, Since: since, MessageID: msg, Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		var wantMine []core.Event
		for _, e := range all[since:] {
			if e.MessageID != nil && *e.MessageID == msg && len(wantMine) < 50 {
				wantMine = append(wantMine, e)
			}
		}
		if len(wantMine)+len(mine) > 0 && !reflect.DeepEqual(wantMine, mine) {
			diff := cmp.Diff(wantMine, mine, cmpopts.EquateEmpty())
			t.Fatalf("message's events since %d (-appended +read):\n%s", since, diff)
		}
	}
	capped, err := s.ListEvents(ctx, core.EventQuery{SessionID: sess.ID, MaxBytes: 1})
	if err != nil || len(capped) != 1 {
		t.Errorf("a byte cap of 1 gave %d events (%v), want the first alone", len(capped), err)
	}
}

// TestEventBlocksCorruptBody: a block damaged outside flapjack fails the
// read that reaches it with an error naming the session, and breaks
// neither the events before it nor those appended after it.
func TestEventBlocksCorruptBody(t *testing.T) {
	ctx := context.Background()
	s, _, sessions := withSessions(t, 1)
	id := sessions[0].ID
	batch := make([]core.EventInput, 2*maxBlockEvents)
	for i := range batch {
		batch[i] = core.EventInput{Type: core.EventStdout, Payload: json.RawMessage(`{"a":1}`)}
	}
	if _, err := s.AppendEvents(ctx, id, batch); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`UPDATE event_blocks SET body = x'05ff' WHERE session_id = ? AND first_seq > 1`, id); err != nil {
		t.Fatal(err)
	}
	if evs, err := s.ListEvents(ctx, core.EventQuery{SessionID: id, Limit: maxBlockEvents}); err != nil || len(evs) != maxBlockEvents {
		t.Errorf("the intact first block: %d events, %v", len(evs), err)
	}
	_, err := s.ListEvents(ctx, core.EventQuery{SessionID: id, Since: maxBlockEvents})
	if err == nil || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("reading the damaged block: %v, want an error naming the session and the damage", err)
	}
	if _, err := s.AppendEvents(ctx, id, batch[:1]); err != nil {
		t.Fatalf("appending after the damaged block: %v", err)
	}
	if evs, err := s.ListEvents(ctx, core.EventQuery{SessionID: id, Since: 2 * maxBlockEvents}); err != nil || len(evs) != 1 || evs[0].Seq != 2*maxBlockEvents+1 {
		t.Errorf("the event appended after the damaged block: %+v, %v", evs, err)
	}
	// A last block that parses but holds fewer records than its seqs say
	// is not extended either: the next events would take wrong seqs.
	var short blockWriter
	short.add(record{created: 1, typ: []byte("stdout"), payload: []byte(`{}`)})
	if _, err := s.db.Exec(`UPDATE event_blocks SET body = ?, first_seq = last_seq - 1 WHERE session_id = ? AND last_seq = ?`, short.body, id, 2*maxBlockEvents+1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendEvents(ctx, id, batch[:1]); err != nil {
		t.Fatal(err)
	}
	if evs, err := s.ListEvents(ctx, core.EventQuery{SessionID: id, Since: 2*maxBlockEvents + 1}); err != nil || len(evs) != 1 || evs[0].Seq != 2*maxBlockEvents+2 {
		t.Errorf("the event appended after a short block: %+v, %v", evs, err)
	}
}

// TestMessageEventsAcrossBlocks: a message's events are found whatever
// blocks they share with others: messages one after another (the usual
// follow-up), a message whose last event ends a block or starts one, and
// two messages interleaved.
func TestMessageEventsAcrossBlocks(t *testing.T) {
	if maxBlockEventsSQL != strconv.Itoa(maxBlockEvents) {
		t.Fatalf("the message read bounds blocks by %s events, blocks hold %d", maxBlockEventsSQL, maxBlockEvents)
	}
	ctx := context.Background()
	s, _, sessions := withSessions(t, 1)
	id := sessions[0].ID
	msgs, err := s.ListMessages(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	a, b := msgs[0].ID, "msg-second"
	if _, err := s.db.Exec(`INSERT INTO messages (id, session_id, ordinal, role, prompt, status, created_at) VALUES (?, ?, 2, 'user', 'p', 'queued', 1)`, b, id); err != nil {
		t.Fatal(err)
	}
	var all []core.Event
	add := func(msg string, n int) {
		batch := make([]core.EventInput, n)
		for i := range batch {
			batch[i] = core.EventInput{MessageID: msg, Type: core.EventStdout, Payload: json.RawMessage(`{}`)}
		}
		got, err := s.AppendEvents(ctx, id, batch)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, got...)
	}
	add(a, maxBlockEvents)     // a fills the first block exactly
	add(b, 1)                  // b starts the second
	add(a, 2*maxBlockEvents-1) // a again, to the end of the third
	add("", 5)                 // status events of no message
	add(b, 3*maxBlockEvents)   // b alone, long after a's last
	for i := range 100 {       // then both, interleaved
		add([]string{a, b}[i%2], 1+i%3)
	}
	for _, msg := range []string{a, b} {
		for _, since := range []int64{0, 1, maxBlockEvents - 1, maxBlockEvents, maxBlockEvents + 1, 3 * maxBlockEvents, int64(len(all)) - 10, int64(len(all))} {
			got, err := s.ListEvents(ctx, core.EventQuery{SessionID: id, MessageID: msg, Since: since})
			if err != nil {
				t.Fatal(err)
			}
			var want []core.Event
			for _, e := range all[since:] {
				if e.MessageID != nil && *e.MessageID == msg {
					want = append(want, e)
				}
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("%s's events since %d (-appended +read):\n%s", msg, since, diff)
			}
		}
	}
}

// streamAll collects what StreamEvents gives for q, copying each event
// (its payload is only valid during the call) and filling in the id it
// leaves empty where it is derived; it fails if an id it gives is the
// derived one.
func streamAll(t *testing.T, s *Store, q core.EventQuery) []core.Event {
	t.Helper()
	var out []core.Event
	err := s.StreamEvents(context.Background(), q, func(e *core.Event) bool {
		c := *e
		c.Payload = bytes.Clone(e.Payload)
		if c.ID == core.EventID(q.SessionID, c.Seq) {
			t.Errorf("seq %d: StreamEvents gave the derived id %s, which it leaves empty", c.Seq, c.ID)
		}
		if c.ID == "" {
			c.ID = core.EventID(q.SessionID, c.Seq)
		}
		out = append(out, c)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
