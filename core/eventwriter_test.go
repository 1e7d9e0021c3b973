package core_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

const key = "crsr_live_0123456789abcdefghijklmnop"

// TestEventWriterRedactsBeforeCapping: a line cut short of a key (as the
// local runtime cuts a 4 MiB line) and a payload over the cap keep no part of
// the key of 12 characters or more; the capped payload is valid JSON that
// says it was truncated.
func TestEventWriterRedactsBeforeCapping(t *testing.T) {
	h := newHarness(t)
	st := h.start(t)
	w := core.NewEventWriter(h.st, st.SessionID, core.NewRedactor(key))
	cut := strings.Repeat("a", 100) + key[:19] // the rest fell off at the line limit
	huge := strings.Repeat("b", core.MaxEventPayloadBytes) + key + strings.Repeat("c", 1000)
	emit := func(text string) {
		b, _ := json.Marshal(map[string]any{"text": text, "args": map[string]string{"k": `\u0063` + key[1:]}})
		w.Emit(core.EventInput{Type: core.EventStdout, Payload: b, CreatedAt: time.Now()})
	}
	emit(cut)
	emit(huge)
	emit(strings.Repeat("\u00e9", core.MaxEventPayloadBytes)) // cut inside runes
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	evs, err := h.st.ListEvents(context.Background(), core.EventQuery{SessionID: st.SessionID, Since: 2, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	for i, e := range evs {
		if bytes.Contains(e.Payload, []byte(key[:12])) || bytes.Contains(e.Payload, []byte(key[1:13])) {
			t.Errorf("event %d keeps part of the key", i)
		}
		if !json.Valid(e.Payload) {
			t.Errorf("event %d: invalid JSON", i)
		}
		if len(e.Payload) > core.MaxEventPayloadBytes {
			t.Errorf("event %d: %d bytes, over the cap", i, len(e.Payload))
		}
	}
	var capped struct {
		Truncated     bool   `json:"truncated"`
		OriginalBytes int    `json:"original_bytes"`
		Text          string `json:"text"`
	}
	if err := json.Unmarshal(evs[1].Payload, &capped); err != nil {
		t.Fatal(err)
	}
	if !capped.Truncated || capped.OriginalBytes <= core.MaxEventPayloadBytes || !strings.HasPrefix(capped.Text, "bbbb") {
		t.Errorf("capped payload = truncated %v, original %d, text %.10q", capped.Truncated, capped.OriginalBytes, capped.Text)
	}
}

func TestCapPayload(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want string // exact output, or "" to check shape only
	}{
		{"fits", `{"a":"b"}`, `{"a":"b"}`},
		{"not an object", `"` + strings.Repeat("x", 200) + `"`, `{"truncated":true,"original_bytes":202}`},
		{"array", `[` + strings.Repeat(`"x",`, 50) + `"x"]`, `{"truncated":true,"original_bytes":205}`},
		{"nested longest", `{"a":{"b":["` + strings.Repeat("y", 300) + `"]},"c":"keep"}`, ""},
		{"escapes grow", `{"a":"` + strings.Repeat(`\u0001`, 100) + `"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := core.CapPayload(json.RawMessage(tc.in), 128)
			if tc.want != "" {
				if string(got) != tc.want {
					t.Errorf("got %s, want %s", got, tc.want)
				}
				return
			}
			if len(got) > 128 || !json.Valid(got) || !bytes.Contains(got, []byte(`"truncated":true`)) {
				t.Errorf("got %d bytes %s", len(got), got)
			}
		})
	}
}

// flakyStore fails AppendEvents a number of times (or always).
type flakyStore struct {
	core.Store
	mu        sync.Mutex
	failures  int
	always    bool
	attempted int
}

func (s *flakyStore) AppendEvents(ctx context.Context, id string, evs []core.EventInput) ([]core.Event, error) {
	s.mu.Lock()
	s.attempted++
	fail := s.always || s.failures > 0
	if s.failures > 0 {
		s.failures--
	}
	s.mu.Unlock()
	if fail {
		return nil, errors.New("disk I/O error")
	}
	return s.Store.AppendEvents(ctx, id, evs)
}

// TestEventWriterRetriesAndNeverSkips: a batch that fails to commit is tried
// again; one that never commits stops the log there, so no later event (and
// no later stream position) is written past the lost ones.
func TestEventWriterRetriesAndNeverSkips(t *testing.T) {
	for _, tc := range []struct {
		name     string
		store    func(core.Store) *flakyStore
		wantErr  bool
		wantSeqs int
	}{
		{"transient", func(s core.Store) *flakyStore { return &flakyStore{Store: s, failures: 3} }, false, 50},
		{"permanent", func(s core.Store) *flakyStore { return &flakyStore{Store: s, always: true} }, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			ctx := context.Background()
			st := h.start(t)
			fs := tc.store(h.st)
			w := core.NewEventWriter(fs, st.SessionID, nil)
			w.SetRetrySleep(func(time.Duration) {})
			for i := range 50 {
				w.Emit(core.EventInput{Type: core.EventStdout, Payload: json.RawMessage(`{"i":` + string(rune('0'+i%10)) + `}`),
					CreatedAt: time.Now(), StreamPosition: "pos"})
			}
			err := w.Close()
			if (err != nil) != tc.wantErr {
				t.Fatalf("Close = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				select {
				case <-w.Failed():
				default:
					t.Error("Failed not closed after a lost batch")
				}
			}
			evs, _ := h.st.ListEvents(ctx, core.EventQuery{SessionID: st.SessionID, Since: 2, Limit: 500})
			if len(evs) != tc.wantSeqs {
				t.Errorf("%d events stored, want %d", len(evs), tc.wantSeqs)
			}
			for i, e := range evs {
				if e.Seq != int64(i+3) {
					t.Fatalf("event %d has seq %d: a gap", i, e.Seq)
				}
			}
			ss, _ := h.st.GetSession(ctx, st.SessionID)
			if tc.wantErr && ss.StreamPosition != "" {
				t.Errorf("stream position %q advanced past lost events", ss.StreamPosition)
			}
		})
	}
}

// countingStore counts AppendEvents calls (one commit, one fsync each) and
// can hold them until released.
type countingStore struct {
	core.Store
	mu      sync.Mutex
	commits int
	hold    chan struct{} // when not nil, appends wait for it to close
}

func (s *countingStore) AppendEvents(ctx context.Context, id string, evs []core.EventInput) ([]core.Event, error) {
	s.mu.Lock()
	hold := s.hold
	s.commits++
	s.mu.Unlock()
	if hold != nil {
		<-hold
	}
	return s.Store.AppendEvents(ctx, id, evs)
}

// timingStore tells when each AppendEvents starts.
type timingStore struct {
	core.Store
	started chan time.Time
}

func (s *timingStore) AppendEvents(ctx context.Context, id string, evs []core.EventInput) ([]core.Event, error) {
	select {
	case s.started <- time.Now():
	default:
	}
	return s.Store.AppendEvents(ctx, id, evs)
}

// TestEventWriterPacesCommits: events trickling in at 500 a second are
// committed at most once per CommitWindow, all of them, in order; the first
// event after a quiet spell does not wait for the window.
func TestEventWriterPacesCommits(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	st := h.start(t)
	cs := &countingStore{Store: h.st}
	w := core.NewEventWriter(cs, st.SessionID, nil)
	const n = 250
	start := time.Now()
	tick := time.NewTicker(2 * time.Millisecond)
	for i := range n {
		<-tick.C
		w.Emit(core.EventInput{Type: core.EventStdout, Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
	}
	tick.Stop()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	maxCommits := int(elapsed/core.CommitWindow) + 2
	if cs.commits > maxCommits || cs.commits < 2 {
		t.Fatalf("%d events over %v took %d commits; want 2 to %d (one per %v at most)", n, elapsed, cs.commits, maxCommits, core.CommitWindow)
	}
	t.Logf("%d events over %v: %d commits", n, elapsed, cs.commits)
	evs, err := h.st.ListEvents(ctx, core.EventQuery{SessionID: st.SessionID, Since: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if string(e.Payload) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("event %d is %s", i, e.Payload)
		}
	}
	if len(evs) != n {
		t.Fatalf("%d events stored, want %d", len(evs), n)
	}

	// After a quiet spell, one event goes to the database at once (timed to
	// the append's start: the commit's own fsync is not the window's).
	started := make(chan time.Time, 1)
	ts := &timingStore{Store: h.st, started: started}
	w = core.NewEventWriter(ts, st.SessionID, nil)
	defer w.Close()
	time.Sleep(2 * core.CommitWindow)
	t0 := time.Now()
	w.Emit(core.EventInput{Type: core.EventStdout, Payload: json.RawMessage(`{"n":"alone"}`)})
	if took := (<-started).Sub(t0); took >= core.CommitWindow {
		t.Errorf("a lone event waited %v before its append; it should not wait for the %v window", took, core.CommitWindow)
	}
}

// TestEventWriterQueueIsBounded: while the database is stalled, Emit stops
// taking events once the queue is full (by count, and by bytes), so a fast
// agent is slowed through its pipe; once the database moves, everything
// queued is written, in order.
func TestEventWriterQueueIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload string
		// most is the most events taken while one batch is stuck in the
		// database and the queue is full.
		most int
	}{
		{"by count", `{"line":"x"}`, 1000 + 4000 + 1},
		{"by bytes", `{"line":"` + strings.Repeat("y", 1<<20) + `"}`, 1 + 16 + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			ctx := context.Background()
			st := h.start(t)
			cs := &countingStore{Store: h.st, hold: make(chan struct{})}
			w := core.NewEventWriter(cs, st.SessionID, nil)
			const total = 20_000
			var emitted atomic.Int64
			done := make(chan struct{})
			go func() {
				defer close(done)
				for range total {
					w.Emit(core.EventInput{Type: core.EventStdout, Payload: json.RawMessage(tc.payload)})
					emitted.Add(1)
					if tc.most < 100 && emitted.Load() > int64(tc.most)+5 {
						return // the byte bound failed; do not fill memory
					}
				}
			}()
			time.Sleep(300 * time.Millisecond)
			if n := emitted.Load(); n > int64(tc.most) {
				t.Fatalf("%d events taken while the database was stalled; want at most %d", n, tc.most)
			}
			select {
			case <-done:
				t.Fatal("Emit never waited while the database was stalled")
			default:
			}
			close(cs.hold)
			<-done
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.most < 100 {
				return
			}
			ss, err := h.st.GetSession(ctx, st.SessionID)
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(total + 2); ss.LastEventSeq != want {
				t.Fatalf("last seq %d, want %d: events were lost", ss.LastEventSeq, want)
			}
		})
	}
}
