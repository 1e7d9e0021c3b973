package core

import (
	"bytes"
	"context"
	"sync"
)

// maxBatch bounds one write transaction, so a flood of agent output is committed
// in steady slices rather than one huge transaction.
const maxBatch = 1000

// EventWriter appends a run's events in the background, in order, batching
// whatever accumulated while the previous write committed (group commit). With
// synchronous=FULL each commit is an fsync, so batching is what makes tens of
// thousands of events per second possible.
type EventWriter struct {
	store     Store
	sessionID string
	// redact is a secret that must never reach the log (the run's Cursor key).
	redact []byte

	mu      sync.Mutex
	pending []EventInput
	err     error
	wake    chan struct{}
	done    chan struct{}
	closed  bool
}

// NewEventWriter starts a writer for one session's log. redact, when non-empty,
// is replaced by "[REDACTED]" in every payload.
func NewEventWriter(store Store, sessionID string, redact string) *EventWriter {
	w := &EventWriter{store: store, sessionID: sessionID, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if redact != "" {
		w.redact = []byte(redact)
	}
	go w.loop()
	return w
}

// Emit queues an event. It never blocks on the database.
func (w *EventWriter) Emit(e EventInput) {
	if len(w.redact) > 0 && bytes.Contains(e.Payload, w.redact) {
		e.Payload = bytes.ReplaceAll(e.Payload, w.redact, []byte("[REDACTED]"))
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.pending = append(w.pending, e)
	// Signal under the lock so Close cannot close wake in between.
	select {
	case w.wake <- struct{}{}:
	default:
	}
	w.mu.Unlock()
}

// Close writes everything queued and stops the writer. It returns the first
// write error, if any.
func (w *EventWriter) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.wake)
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
			w.mu.Lock()
			n := min(len(w.pending), maxBatch)
			batch := w.pending[:n:n]
			w.pending = w.pending[n:]
			w.mu.Unlock()
			if n == 0 {
				break
			}
			if _, err := w.store.AppendEvents(context.Background(), w.sessionID, batch); err != nil {
				w.mu.Lock()
				if w.err == nil {
					w.err = err
				}
				w.mu.Unlock()
			}
		}
		if !open {
			return
		}
	}
}
