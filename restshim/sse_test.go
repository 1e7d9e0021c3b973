package restshim

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/store"
)

// stream opens the event stream and returns its events as they arrive.
type stream struct {
	res    *http.Response
	events chan sseEvent
	done   chan error // the read's end: nil for a clean end of stream
}

func openStream(t testing.TB, url, token string, headers ...string) *stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("stream = %d %s %s", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	s := &stream{res: res, events: make(chan sseEvent, 1000), done: make(chan error, 1)}
	go func() {
		defer res.Body.Close()
		defer close(s.events)
		br := bufio.NewReader(res.Body)
		var cur sseEvent
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				if err == io.EOF && line == "" {
					err = nil
				}
				s.done <- err
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "":
				cur.at = time.Now()
				s.events <- cur
				cur = sseEvent{}
			case strings.HasPrefix(line, ":"):
				cur.comment = strings.TrimSpace(line[1:])
			default:
				k, v, _ := strings.Cut(line, ": ")
				switch k {
				case "id":
					cur.id = v
				case "event":
					cur.event = v
				case "data":
					cur.data = v
				}
			}
		}
	}()
	return s
}

// collect reads the stream to its end and returns its events (comments
// dropped); it fails the test if the stream does not end cleanly.
func (s *stream) collect(t testing.TB) []core.Event {
	t.Helper()
	var out []core.Event
	for ev := range s.events {
		if ev.data == "" {
			continue
		}
		var e core.Event
		if err := json.Unmarshal([]byte(ev.data), &e); err != nil {
			t.Fatalf("event data %q: %v", ev.data, err)
		}
		if ev.id != strconv.FormatInt(e.Seq, 10) || ev.event != string(e.Type) {
			t.Errorf("id %q / event %q do not match the data %+v", ev.id, ev.event, e)
		}
		out = append(out, e)
	}
	if err := <-s.done; err != nil {
		t.Errorf("the stream did not end cleanly: %v", err)
	}
	return out
}

// checkSeqs fails unless the events are exactly from+1, from+2, ... to.
func checkSeqs(t *testing.T, evs []core.Event, from, to int64) {
	t.Helper()
	want := from
	for _, e := range evs {
		want++
		if e.Seq != want {
			t.Fatalf("seq %d where %d was due: a gap or a duplicate", e.Seq, want)
		}
	}
	if want != to {
		t.Fatalf("the stream ended at seq %d, the log at %d", want, to)
	}
}

// TestStreamFollowsALiveSessionToTheEnd: opened while the session runs, the
// stream delivers every event once, in order, and ends after the terminal
// status event.
func TestStreamFollowsALiveSessionToTheEnd(t *testing.T) {
	e := newEnv(t)
	st := e.start(e.agent(), "spam 1200")
	s := openStream(t, e.srv.URL+"/api/code-sessions/"+st.SessionID+"/events/stream", e.token)
	evs := s.collect(t)
	d := e.waitStatus(st.SessionID, core.StatusFinished)
	checkSeqs(t, evs, 0, d.LastEventSeq)
	last := evs[len(evs)-1]
	if last.Type != core.EventStatus || !strings.Contains(string(last.Payload), `"finished"`) {
		t.Errorf("last event = %+v, want the finished status", last)
	}
}

// TestStreamResumes: Last-Event-ID and ?since= resume right after the given
// seq, without gaps or duplicates; the header wins over the parameter.
func TestStreamResumes(t *testing.T) {
	e := newEnv(t)
	st := e.start(e.agent(), "spam 30")
	d := e.waitStatus(st.SessionID, core.StatusFinished)
	url := e.srv.URL + "/api/code-sessions/" + st.SessionID + "/events/stream"
	for _, k := range []int64{0, 1, 7, d.LastEventSeq - 1, d.LastEventSeq} {
		checkSeqs(t, openStream(t, url, e.token, "Last-Event-ID", fmt.Sprint(k)).collect(t), k, d.LastEventSeq)
		checkSeqs(t, openStream(t, fmt.Sprintf("%s?since=%d", url, k), e.token).collect(t), k, d.LastEventSeq)
		checkSeqs(t, openStream(t, url+"?since=3", e.token, "Last-Event-ID", fmt.Sprint(k)).collect(t), k, d.LastEventSeq)
	}
	// A client that reconnects mid-stream loses and repeats nothing.
	first := openStream(t, url, e.token)
	var got []core.Event
	for ev := range first.events {
		var x core.Event
		if json.Unmarshal([]byte(ev.data), &x) == nil {
			got = append(got, x)
		}
		if len(got) == 10 {
			break
		}
	}
	first.res.Body.Close()
	rest := openStream(t, url, e.token, "Last-Event-ID", strconv.FormatInt(got[len(got)-1].Seq, 10)).collect(t)
	checkSeqs(t, append(got, rest...), 0, d.LastEventSeq)
}

// TestStreamHeartbeatAndEnd: a quiet stream gets comment heartbeats; it ends
// after the session is cancelled and the cancelled status was sent.
func TestStreamHeartbeatAndEnd(t *testing.T) {
	e := newEnv(t, withOptions(func(o *Options) { o.Heartbeat = 50 * time.Millisecond }))
	st := e.start(e.agent(), "block")
	e.waitStatus(st.SessionID, core.StatusRunning)
	s := openStream(t, e.srv.URL+"/api/code-sessions/"+st.SessionID+"/events/stream", e.token)
	beats := 0
	for ev := range s.events {
		if ev.comment == "heartbeat" {
			beats++
		}
		if beats == 3 {
			break
		}
	}
	if beats < 3 {
		t.Fatal("no heartbeats")
	}
	e.must(200, "POST", "/api/code-sessions/"+st.SessionID+"/cancel", nil, nil)
	var last sseEvent
	for ev := range s.events {
		if ev.data != "" {
			last = ev
		}
	}
	if err := <-s.done; err != nil {
		t.Fatalf("stream end: %v", err)
	}
	if last.event != "status" || !strings.Contains(last.data, `"cancelled"`) {
		t.Errorf("last event before the end = %+v", last)
	}
}

// TestStreamOutlivesWriteTimeout: the server's WriteTimeout cuts ordinary
// responses, not an event stream.
func TestStreamOutlivesWriteTimeout(t *testing.T) {
	e := newEnv(t, withOptions(func(o *Options) { o.Heartbeat = 50 * time.Millisecond }))
	st := e.start(e.agent(), "block")
	e.waitStatus(st.SessionID, core.StatusRunning)
	srv := e.serve(e.h, func(s *http.Server) { s.WriteTimeout = 300 * time.Millisecond })
	s := openStream(t, srv.URL+"/api/code-sessions/"+st.SessionID+"/events/stream", e.token)
	deadline := time.Now().Add(1200 * time.Millisecond)
	for ev := range s.events {
		if time.Now().After(deadline) {
			break
		}
		_ = ev
	}
	if time.Now().Before(deadline) {
		t.Fatalf("the stream ended early: %v", <-s.done)
	}
	e.must(200, "POST", "/api/code-sessions/"+st.SessionID+"/cancel", nil, nil)
	for range s.events {
	}
	if err := <-s.done; err != nil {
		t.Errorf("the stream broke: %v", err)
	}
}

// TestStreamClosesOnShutdown: Shutdown ends open streams cleanly (the hook
// is registered with RegisterOnShutdown), so it does not wait forever.
func TestStreamClosesOnShutdown(t *testing.T) {
	e := newEnv(t)
	st := e.start(e.agent(), "block")
	e.waitStatus(st.SessionID, core.StatusRunning)
	h := New(e.svc, NewTokenAuthenticator(e.store, nil), Options{StreamPoll: 10 * time.Millisecond})
	srv := e.serve(h, nil)
	s := openStream(t, srv.URL+"/api/code-sessions/"+st.SessionID+"/events/stream", e.token)
	<-s.events // the first event arrived: the stream is open
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Config.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with an open stream: %v", err)
	}
	var last sseEvent
	for ev := range s.events {
		last = ev
	}
	if err := <-s.done; err != nil || !strings.Contains(last.comment, "shutting down") {
		t.Errorf("stream end = %v, last %+v", err, last)
	}
	e.must(200, "POST", "/api/code-sessions/"+st.SessionID+"/cancel", nil, nil)
}

// TestCommitsWakeStreamsAndLongPolls: with the safety-net poll an hour
// away, an event committed by this process or by another one (a second
// Store on the file) still reaches an open stream and a waiting long-poll
// at once: readers are woken by the commit, not by a timer.
func TestCommitsWakeStreamsAndLongPolls(t *testing.T) {
	e := newEnv(t, withOptions(func(o *Options) { o.StreamPoll = time.Hour }))
	st := e.start(e.agent(), "block")
	e.waitStatus(st.SessionID, core.StatusRunning)
	s := openStream(t, e.srv.URL+"/api/code-sessions/"+st.SessionID+"/events/stream", e.token)
	// The fake runtime's own last event ("waiting") comes before ours.
	for ev := range s.events {
		if strings.Contains(ev.data, `"waiting"`) {
			break
		}
	}
	other, err := store.Open(e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, w := range []struct {
		name string
		st   *store.Store
	}{{"this process", e.store}, {"another process", other}} {
		// A long-poll that waits, then the commit.
		cur, err := e.store.GetSession(context.Background(), st.SessionID)
		if err != nil {
			t.Fatal(err)
		}
		polled := make(chan resp, 1)
		go func() {
			polled <- e.do("GET", fmt.Sprintf("/api/code-sessions/%s/events?since=%d&wait=20", st.SessionID, cur.LastEventSeq), e.token, nil)
		}()
		time.Sleep(100 * time.Millisecond) // the poll is waiting
		start := time.Now()
		if _, err := w.st.AppendEvents(context.Background(), st.SessionID,
			[]core.EventInput{{Type: core.EventStdout, Payload: json.RawMessage(`{"line":"` + w.name + `"}`)}}); err != nil {
			t.Fatal(err)
		}
		// The fake runtime may still log an event of its own first.
		deadline := time.After(time.Second)
	stream:
		for {
			select {
			case ev := <-s.events:
				if strings.Contains(ev.data, w.name) {
					t.Logf("%s: stream got the event after %v", w.name, time.Since(start))
					break stream
				}
			case <-deadline:
				t.Fatalf("%s: the stream did not get a committed event within 1 s", w.name)
			}
		}
		select {
		case r := <-polled:
			var page core.EventPage
			r.decode(t, &page)
			if len(page.Events) != 1 || !strings.Contains(string(page.Events[0].Payload), w.name) {
				t.Fatalf("%s: long-poll answered %+v", w.name, page)
			}
			t.Logf("%s: long-poll answered after %v", w.name, time.Since(start))
		case <-time.After(time.Second):
			t.Fatalf("%s: the long-poll did not answer within 1 s of the commit (its safety poll is 2 s)", w.name)
		}
	}
	e.must(200, "POST", "/api/code-sessions/"+st.SessionID+"/cancel", nil, nil)
}
