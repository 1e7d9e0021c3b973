package core

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"
)

// maxBatch bounds one write transaction, so a flood of agent output is committed
// in steady slices rather than one huge transaction.
const maxBatch = 1000

// CommitWindow is the least time between two commits of one session's
// events while they trickle in: a line the agent prints after a quiet spell
// is committed at once, the lines after it gather for the rest of the
// window. So an agent printing 500 lines a second costs at most 25 commits
// (fsyncs) a second, and a reader sees each line within the window plus a
// commit. A full batch does not wait. (20 ms would allow 50 commits a
// second, but each commit's fixed cost, locks and fsync, then dominates:
// BenchmarkPacedIngestion measured 83 µs of CPU per event at 20 ms, 58-64
// at 30 ms, 48-56 at 40 ms.)
const CommitWindow = 40 * time.Millisecond

// Bounds of the events queued and not yet being written: past them Emit
// waits, so an agent that prints faster than the disk takes it is slowed
// down through its pipe instead of filling memory.
const (
	maxPendingEvents = 4 * maxBatch
	maxPendingBytes  = 16 << 20
)

// MaxEventPayloadBytes caps one event's payload. A longer payload keeps its
// fields with the longest strings cut, and says so with "truncated": true and
// "original_bytes"; one agent line of gigabytes cannot bloat the log or a page.
const MaxEventPayloadBytes = 1 << 20

// appendBackoff is the wait before each new try of a batch that failed to
// commit (a busy or briefly failing disk); after the last, the writer gives
// up on the run.
func appendBackoff() []time.Duration {
	return []time.Duration{20 * time.Millisecond, 100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second, 5 * time.Second}
}

// EventWriter appends a run's events in the background, in order, batching
// whatever accumulated while the previous write committed or within the
// CommitWindow (group commit). With synchronous=FULL each commit is an
// fsync, so batching is what makes tens of thousands of events per second
// possible, and a trickle cheap. Its queue is bounded: Emit waits for room.
//
// Every payload passes the Redactor before anything else (so truncation can
// never leave part of a secret) and is capped at MaxEventPayloadBytes. A batch
// that fails to commit is retried; if it still cannot be committed, nothing
// after it is written either (the log and the stored stream position never
// skip an event) and Failed is closed so the run can be stopped.
type EventWriter struct {
	store     Store
	sessionID string
	redactor  *Redactor
	// sleep waits between retries; tests replace it.
	sleep func(time.Duration)

	mu           sync.Mutex
	room         *sync.Cond // signalled when the queue shrinks or the writer stops
	pending      []EventInput
	pendingBytes int
	err          error
	wake         chan struct{}
	done         chan struct{}
	failed       chan struct{}
	closed       bool
	lastCommit   time.Time // the loop's own
}

// NewEventWriter starts a writer for one session's log; r hides secrets in
// every payload (nil hides nothing).
func NewEventWriter(store Store, sessionID string, r *Redactor) *EventWriter {
	w := &EventWriter{store: store, sessionID: sessionID, redactor: r, sleep: time.Sleep,
		wake: make(chan struct{}, 1), done: make(chan struct{}), failed: make(chan struct{})}
	w.room = sync.NewCond(&w.mu)
	go w.loop()
	return w
}

// Emit queues an event. While the queue is full it waits for the writer to
// take a batch (the agent's output is then read no faster than it is
// stored); it never waits once the writer has stopped.
func (w *EventWriter) Emit(e EventInput) {
	e.Payload = capPayload(w.redactor.JSON(e.Payload), MaxEventPayloadBytes)
	w.mu.Lock()
	for !w.closed && w.err == nil && len(w.pending) > 0 &&
		(len(w.pending) >= maxPendingEvents || w.pendingBytes+len(e.Payload) > maxPendingBytes) {
		w.room.Wait()
	}
	if w.closed || w.err != nil {
		w.mu.Unlock()
		return
	}
	w.pending = append(w.pending, e)
	w.pendingBytes += len(e.Payload)
	// Signal under the lock so Close cannot close wake in between.
	select {
	case w.wake <- struct{}{}:
	default:
	}
	w.mu.Unlock()
}

// Failed is closed when a batch could not be committed after retries; the
// run's later events are dropped from then on, and Close returns the error.
func (w *EventWriter) Failed() <-chan struct{} { return w.failed }

// Close writes everything queued and stops the writer. It returns the error
// that stopped the log, if any.
func (w *EventWriter) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.wake)
		w.room.Broadcast()
	}
	w.mu.Unlock()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *EventWriter) loop() {
	defer close(w.done)
	for {
		_, open := <-w.wake
		for {
			w.gather(open)
			w.mu.Lock()
			n := min(len(w.pending), maxBatch)
			batch := w.pending[:n:n]
			w.pending = w.pending[n:]
			for _, e := range batch {
				w.pendingBytes -= len(e.Payload)
			}
			w.room.Broadcast()
			w.mu.Unlock()
			if n == 0 {
				break
			}
			err := w.append(batch)
			w.lastCommit = time.Now()
			if err != nil {
				w.mu.Lock()
				w.err = fmt.Errorf("could not store the run's events: %w", err)
				w.pending, w.pendingBytes = nil, 0
				w.room.Broadcast()
				w.mu.Unlock()
				close(w.failed)
				// Drain wake until Close: nothing more is written.
				for range w.wake {
				}
				return
			}
		}
		if !open {
			return
		}
	}
}

// gather waits out the rest of the CommitWindow since the last commit, so
// a trickle of events is committed together; not when a batch is already
// full, nor once Close was called (open false).
func (w *EventWriter) gather(open bool) {
	wait := CommitWindow - time.Since(w.lastCommit)
	if !open || wait <= 0 {
		return
	}
	w.mu.Lock()
	full := len(w.pending) >= maxBatch
	w.mu.Unlock()
	if !full {
		time.Sleep(wait)
	}
}

// append commits one batch, retrying with backoff.
func (w *EventWriter) append(batch []EventInput) error {
	backoff := appendBackoff()
	for i := 0; ; i++ {
		_, err := w.store.AppendEvents(context.Background(), w.sessionID, batch)
		if err == nil {
			return nil
		}
		if i == len(backoff) {
			return err
		}
		w.sleep(backoff[i])
	}
}

// capPayload returns p unchanged when it fits in limit bytes; else the same
// object with its longest strings cut until it fits, plus "truncated": true
// and "original_bytes". A payload that is not an object, or cannot be made to
// fit, becomes {"truncated":true,"original_bytes":N}.
func capPayload(p json.RawMessage, limit int) json.RawMessage {
	if len(p) <= limit {
		return p
	}
	orig := len(p)
	fallback := json.RawMessage(fmt.Sprintf(`{"truncated":true,"original_bytes":%d}`, orig))
	var obj map[string]any
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	if dec.Decode(&obj) != nil || obj == nil {
		return fallback
	}
	obj["truncated"], obj["original_bytes"] = true, orig
	for range 16 {
		out, err := marshalNoEscape(obj)
		if err != nil {
			return fallback
		}
		excess := len(out) - limit
		if excess <= 0 {
			return out
		}
		s, set := longestString(obj)
		if set == nil || len(s) == 0 {
			return fallback
		}
		// Escaping can make a string longer on the wire than in memory; cut
		// by the excess plus a margin and check again.
		keep := max(0, len(s)-excess-excess/8-64)
		for keep > 0 && !utf8.RuneStart(s[keep]) {
			keep--
		}
		set(s[:keep] + "…")
	}
	return fallback
}

func marshalNoEscape(v any) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// longestString finds the longest string value anywhere in v and returns it
// with a function that replaces it.
func longestString(v any) (string, func(string)) {
	var best string
	var set func(string)
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && len(s) > len(best) {
					best, set = s, func(n string) { x[k] = n }
				} else {
					walk(e)
				}
			}
		case []any:
			for i, e := range x {
				if s, ok := e.(string); ok && len(s) > len(best) {
					best, set = s, func(n string) { x[i] = n }
				} else {
					walk(e)
				}
			}
		}
	}
	walk(v)
	return best, set
}
