package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/google/go-cmp/cmp"
)

// TestLeanEventsMigration: a database made by the schema of migration 8
// (a row per event, with its id and message indexes) is brought up to date
// at open, through 0009 (message ranges) and 0010 (events packed into
// blocks): every event keeps its id, seq, type, message, run, time and
// payload, a message's events are found by its range, and appends go on
// from there.
func TestLeanEventsMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "flapjack.db")
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	old, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:8] {
		if _, err := old.Exec(m.sql); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
	}
	mustExec := func(q string, args ...any) {
		t.Helper()
		if _, err := old.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	mustExec(`PRAGMA user_version = 8`)
	mustExec(`INSERT INTO orgs (id, name, created_at) VALUES ('org-a', 'a', 1)`)
	mustExec(`INSERT INTO sessions (id, org_id, code_agent_id, repo_url, starting_ref, status, model_id,
		auto_create_pr, work_on_current_branch, skip_reviewer_request, runtime, preamble, created_by, created_at, last_event_seq)
		VALUES ('cs-a', 'org-a', 'ca-a', 'r', 'main', 'finished', 'auto', 0, 0, 0, 'local', '', 'u', 1, 30)`)
	for i, m := range []string{"msg-1", "msg-2"} {
		mustExec(`INSERT INTO messages (id, session_id, ordinal, role, prompt, status, created_at) VALUES (?, 'cs-a', ?, 'user', 'p', 'finished', 1)`, m, i+1)
	}
	want := map[int64]string{}
	for seq := int64(1); seq <= 30; seq++ {
		msg := any("msg-1")
		switch {
		case seq > 20:
			msg = "msg-2"
		case seq%7 == 0:
			msg = nil // a status event between a message's events
		}
		id := "evt-legacy" + strconv.FormatInt(seq, 10)
		want[seq] = id
		mustExec(`INSERT INTO events (session_id, seq, id, message_id, event_type, payload, created_at) VALUES ('cs-a', ?, ?, ?, 'stdout', ?, ?)`,
			seq, id, msg, `{"n":`+strconv.FormatInt(seq, 10)+`}`, seq)
	}
	// A second session, long enough to fill blocks, with a gap in its seqs
	// (none of flapjack's making; a hand-edited file may have one).
	mustExec(`INSERT INTO sessions (id, org_id, code_agent_id, repo_url, starting_ref, status, model_id,
		auto_create_pr, work_on_current_branch, skip_reviewer_request, runtime, preamble, created_by, created_at, last_event_seq)
		VALUES ('cs-b', 'org-a', 'ca-a', 'r', 'main', 'finished', 'auto', 0, 0, 0, 'local', '', 'u', 2, 300)`)
	for seq := int64(1); seq <= 300; seq++ {
		if seq == 151 {
			continue
		}
		mustExec(`INSERT INTO events (session_id, seq, id, message_id, cursor_run_id, event_type, payload, created_at) VALUES ('cs-b', ?, ?, NULL, 'run-b', ?, '{}', ?)`,
			seq, "evt-b"+strconv.FormatInt(seq, 10), []string{"stdout", "assistant"}[seq%2], 1000+seq)
	}
	old.Close()

	s := openAt(t, path)
	if v := userVersion(t, s); v != len(ms) {
		t.Fatalf("user_version %d after open, want %d", v, len(ms))
	}
	var tables int
	s.db.QueryRow(`SELECT COUNT(*) FROM sqlite_schema WHERE tbl_name = 'events'`).Scan(&tables)
	if tables != 0 {
		t.Errorf("the events table or its indexes remain (%d) after packing into blocks", tables)
	}
	b, err := s.ListEvents(ctx, core.EventQuery{SessionID: "cs-b"})
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 299 {
		t.Fatalf("cs-b has %d events after the migration, want 299", len(b))
	}
	for i, e := range b {
		seq := int64(i + 1)
		if seq >= 151 {
			seq++
		}
		if e.Seq != seq || e.ID != "evt-b"+strconv.FormatInt(seq, 10) || e.MessageID != nil || *e.CursorRunID != "run-b" ||
			string(e.Type) != []string{"stdout", "assistant"}[seq%2] || e.CreatedAt.UnixMilli() != 1000+seq {
			t.Fatalf("cs-b's event %d after the migration: %+v", seq, e)
		}
	}
	if page, err := s.ListEvents(ctx, core.EventQuery{SessionID: "cs-b", Since: 149, Limit: 3}); err != nil || len(page) != 3 || page[1].Seq != 152 {
		t.Errorf("the page across the gap: %+v, %v", page, err)
	}
	all, err := s.ListEvents(ctx, core.EventQuery{SessionID: "cs-a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 30 {
		t.Fatalf("%d events after the migration, want 30", len(all))
	}
	for _, e := range all {
		if e.ID != want[e.Seq] || string(e.Payload) != `{"n":`+strconv.FormatInt(e.Seq, 10)+`}` {
			t.Fatalf("event %d: id %s payload %s; want id %s", e.Seq, e.ID, e.Payload, want[e.Seq])
		}
	}
	// StreamEvents gives each stored id as it is.
	if streamed := streamAll(t, s, core.EventQuery{SessionID: "cs-a"}); !reflect.DeepEqual(all, streamed) {
		t.Errorf("StreamEvents (+) differs from ListEvents (-):\n%s", cmp.Diff(all, streamed))
	}
	count := func(msg string, since int64, limit int) []int64 {
		t.Helper()
		evs, err := s.ListEvents(ctx, core.EventQuery{SessionID: "cs-a", MessageID: msg, Since: since, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int64
		for _, e := range evs {
			if *e.MessageID != msg {
				t.Fatalf("event %d of %s in %s's list", e.Seq, *e.MessageID, msg)
			}
			seqs = append(seqs, e.Seq)
		}
		return seqs
	}
	if got := count("msg-1", 0, 0); len(got) != 18 || got[0] != 1 || got[len(got)-1] != 20 {
		t.Errorf("msg-1's events = %v, want the 18 of 1..20 but 7 and 14", got)
	}
	if got := count("msg-2", 5, 3); len(got) != 3 || got[0] != 21 {
		t.Errorf("msg-2's first 3 after 5 = %v, want 21 22 23", got)
	}
	if got := count("msg-1", 20, 0); len(got) != 0 {
		t.Errorf("msg-1's events after its last = %v, want none", got)
	}
	if got := count("msg-nope", 0, 0); len(got) != 0 {
		t.Errorf("an unknown message has events %v", got)
	}

	// Appends go on from seq 30 and extend the message's range.
	if _, err := s.AppendEvents(ctx, "cs-a", []core.EventInput{{MessageID: "msg-1", Type: core.EventStdout, Payload: json.RawMessage(`{"late":1}`)}}); err != nil {
		t.Fatal(err)
	}
	if got := count("msg-1", 20, 0); len(got) != 1 || got[0] != 31 {
		t.Errorf("msg-1's events after 20 = %v, want [31]", got)
	}
}

// TestEventStorageIsLean: 100,000 events of a 36-byte payload take at most
// 150 bytes each beyond the payload in the database file (issue 13, goal 7).
func TestEventStorageIsLean(t *testing.T) {
	if beyond := eventBytesBeyondPayload(t); beyond > 150 {
		t.Errorf("%.1f bytes per event beyond the payload, want at most 150", beyond)
	}
}

// BenchmarkEventStorage reports the same figure for make bench.
func BenchmarkEventStorage(b *testing.B) {
	var beyond float64
	for b.Loop() {
		beyond = eventBytesBeyondPayload(b)
	}
	b.ReportMetric(beyond, "file-bytes/event-beyond-payload")
}

// eventBytesBeyondPayload appends 100,000 events of a 36-byte payload (one
// message, one run, as an agent's output is) and returns the database
// file's size per event, less the payload, after a checkpoint.
func eventBytesBeyondPayload(tb testing.TB) float64 {
	ctx := context.Background()
	s, path := newStore(tb)
	o := mustOwner(tb, s)
	sess := testSession(o.OrgID, "ca", 1)
	m := createSession(tb, s, sess)
	payload := json.RawMessage(`{"text":"Looking at src/auth.ts ok"}`)
	const n = 100_000
	for i := 0; i < n; i += 1000 {
		batch := make([]core.EventInput, 1000)
		for j := range batch {
			batch[j] = core.EventInput{MessageID: m.ID, CursorRunID: "run-abcdefghijklmnopqrst", Type: core.EventAssistant, Payload: payload}
		}
		if _, err := s.AppendEvents(ctx, sess.ID, batch); err != nil {
			tb.Fatal(err)
		}
	}
	if err := s.checkpoint(ctx); err != nil {
		tb.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	beyond := float64(st.Size())/n - float64(len(payload))
	tb.Logf("%d events of %d bytes: file %d bytes, %.1f bytes per event beyond its payload", n, len(payload), st.Size(), beyond)
	return beyond
}

// TestPayloadsAreStoredCompact: a payload with insignificant whitespace is
// stored compacted (readers write payloads as stored, and an SSE data line
// must not break), and an invalid one is refused with nothing written.
func TestPayloadsAreStoredCompact(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	o := mustOwner(t, s)
	sess := testSession(o.OrgID, "ca", 1)
	createSession(t, s, sess)
	out, err := s.AppendEvents(ctx, sess.ID, []core.EventInput{{Type: core.EventStdout, Payload: json.RawMessage("{ \"line\" :\n \"a  b\" ,\t\"n\": [1, 2] }")}})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"line":"a  b","n":[1,2]}`
	got, err := s.ListEvents(ctx, core.EventQuery{SessionID: sess.ID})
	if err != nil {
		t.Fatal(err)
	}
	if string(out[0].Payload) != want || len(got) != 1 || string(got[0].Payload) != want {
		t.Fatalf("payload returned %s, stored %s; want %s", out[0].Payload, got[0].Payload, want)
	}
	if _, err := s.AppendEvents(ctx, sess.ID, []core.EventInput{{Type: core.EventStdout, Payload: json.RawMessage(`{"a":`)}}); err == nil {
		t.Fatal("an invalid payload was stored")
	}
	if after, _ := s.ListEvents(ctx, core.EventQuery{SessionID: sess.ID}); len(after) != 1 {
		t.Fatalf("%d events after a refused append, want 1", len(after))
	}
}
