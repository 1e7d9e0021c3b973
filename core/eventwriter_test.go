package core_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
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
	st, err := h.svc.StartSession(context.Background(), h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "x"})
	if err != nil {
		t.Fatal(err)
	}
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
			st, err := h.svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "x"})
			if err != nil {
				t.Fatal(err)
			}
			fs := tc.store(h.st)
			w := core.NewEventWriter(fs, st.SessionID, nil)
			w.SetRetrySleep(func(time.Duration) {})
			for i := range 50 {
				w.Emit(core.EventInput{Type: core.EventStdout, Payload: json.RawMessage(`{"i":` + string(rune('0'+i%10)) + `}`),
					CreatedAt: time.Now(), StreamPosition: "pos"})
			}
			err = w.Close()
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
