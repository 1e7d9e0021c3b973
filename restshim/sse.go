package restshim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// streamEvents serves a session's log as Server-Sent Events: every event as
// "id: <seq>", "event: <event_type>", "data: <event JSON>", flushed one by
// one. It resumes after Last-Event-ID (what a reconnecting EventSource sends)
// or ?since=, ends once the session is terminal and its last event was sent,
// sends a comment line after each quiet Heartbeat, and ends cleanly when the
// server shuts down.
func (h *Handler) streamEvents(w http.ResponseWriter, r *http.Request, a core.Actor) {
	ctx := r.Context()
	id := r.PathValue("codeSessionId")
	q, qerr := query(r, "since")
	if qerr != nil {
		h.writeError(w, r, qerr)
		return
	}
	since, perr := intParam(q, "since")
	if perr != nil {
		h.writeError(w, r, perr)
		return
	}
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		// The header wins over ?since=: a reconnecting client keeps its URL.
		n, err := strconv.ParseInt(strings.TrimSpace(last), 10, 64)
		if err != nil {
			h.writeError(w, r, core.Errorf(core.CodeValidation, "Last-Event-ID: must be an event seq (an integer)"))
			return
		}
		since = &n
	}
	if since == nil {
		zero := int64(0)
		since = &zero
	}
	// Subscribe before the first read, so nothing committed after it is
	// missed. A commit wakes the stream at once; there is no polling delay.
	changed, stopWatch := h.svc.WatchSession(id)
	defer func() { stopWatch() }()
	// Read once before answering: access, the session's existence and since
	// are checked here, and fail as ordinary JSON errors.
	limit := core.MaxEventLimit
	page, err := h.svc.ListEvents(ctx, a, id, core.EventsInput{Since: since, Limit: &limit})
	if err != nil {
		h.writeError(w, r, err)
		return
	}

	rc := http.NewResponseController(w)
	// A stream lives longer than the server's write timeout; each write has
	// its own deadline instead, so a client that stops reading is dropped
	// (with its goroutine and page) within StreamWriteTimeout.
	s := &sseWriter{w: w, rc: rc, timeout: h.opts.StreamWriteTimeout}
	rc.SetWriteDeadline(time.Now().Add(s.timeout))
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		// On shutdown a stream says goodbye and ends; one whose write is
		// blocked on a stalled client is cut after a moment.
		select {
		case <-h.closing:
		case <-stopped:
			return
		}
		select {
		case <-time.After(streamShutdownGrace):
			_ = rc.SetWriteDeadline(time.Now())
		case <-stopped:
		}
	}()
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no") // ask reverse proxies not to buffer
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}

	pos := *since
	pending := &page // the first read is sent before anything else is read
	lastWrite := time.Now()
	poll := time.NewTimer(time.Hour)
	defer poll.Stop()
	for first := true; ; first = false {
		if !first {
			stopWatch()
			changed, stopWatch = h.svc.WatchSession(id)
		}
		// The session is read before its events: every event up to its
		// last_event_seq is then in the log, so "terminal and all sent"
		// cannot skip one.
		sess, err := h.svc.GetSession(ctx, a, id)
		if err != nil {
			return // deleted, or the client is gone; a client may reconnect
		}
		for {
			if pending == nil {
				limit := core.MaxEventLimit
				p, err := h.svc.ListEvents(ctx, a, id, core.EventsInput{Since: &pos, Limit: &limit})
				if err != nil {
					return
				}
				pending = &p
			}
			for _, ev := range pending.Events {
				if !s.event(ev) {
					return
				}
				pos = ev.Seq
				lastWrite = time.Now()
			}
			// A page can end early (its byte bound): read on until one is empty.
			more := len(pending.Events) > 0
			pending = nil
			if !more {
				break
			}
		}
		if sess.Status.Terminal() && pos >= sess.LastEventSeq {
			return
		}
		if time.Since(lastWrite) >= h.opts.Heartbeat {
			if !s.comment("heartbeat") {
				return
			}
			lastWrite = time.Now()
		}
		poll.Reset(min(h.opts.StreamPoll, h.opts.Heartbeat-time.Since(lastWrite)))
		select {
		case <-ctx.Done():
			return
		case <-h.closing:
			s.comment("server shutting down; reconnect with Last-Event-ID")
			return
		case <-changed:
		case <-poll.C:
		}
	}
}

// streamShutdownGrace is how long a stream has on shutdown to write its
// goodbye before a blocked write is cut.
const streamShutdownGrace = time.Second

// sseWriter writes Server-Sent Events, flushing after each, each write with
// its own deadline.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     bytes.Buffer
}

// event writes one event; false when the client is gone.
func (s *sseWriter) event(ev core.Event) bool {
	data, err := json.Marshal(ev)
	if err != nil {
		return false
	}
	s.buf.Reset()
	s.buf.WriteString("id: ")
	s.buf.WriteString(strconv.FormatInt(ev.Seq, 10))
	s.buf.WriteString("\nevent: ")
	s.buf.WriteString(sseLine(string(ev.Type)))
	// Marshalled JSON holds no raw newline; split anyway, as the format
	// requires one data line per line.
	for _, line := range bytes.Split(data, []byte("\n")) {
		s.buf.WriteString("\ndata: ")
		s.buf.Write(line)
	}
	s.buf.WriteString("\n\n")
	return s.flush()
}

// comment writes a comment line, which clients ignore.
func (s *sseWriter) comment(text string) bool {
	s.buf.Reset()
	s.buf.WriteString(": ")
	s.buf.WriteString(sseLine(text))
	s.buf.WriteString("\n\n")
	return s.flush()
}

func (s *sseWriter) flush() bool {
	if s.rc.SetWriteDeadline(time.Now().Add(s.timeout)) != nil {
		return false
	}
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		return false
	}
	return s.rc.Flush() == nil
}

// sseLine keeps a field value on one line.
func sseLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
