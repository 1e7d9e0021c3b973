package restshim

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// bigEvents appends n events of about size bytes each to a session.
func (e *env) bigEvents(id string, n, size int) {
	e.t.Helper()
	p, _ := json.Marshal(map[string]string{"line": strings.Repeat("x", size)})
	var in []core.EventInput
	for range n {
		in = append(in, core.EventInput{Type: core.EventStdout, Payload: p, CreatedAt: time.Now()})
	}
	if _, err := e.store.AppendEvents(context.Background(), id, in); err != nil {
		e.t.Fatal(err)
	}
}

// TestEventsPageIsBoundedInBytes: GET .../events?limit=500 on a session of
// 3 MB events answers one page of at most 4 MiB of payload (plus framing),
// and paging by last_seq gets them all.
func TestEventsPageIsBoundedInBytes(t *testing.T) {
	e := newEnv(t)
	st := e.start(e.agent(), "quick")
	e.waitStatus(st.SessionID, core.StatusFinished)
	e.bigEvents(st.SessionID, 10, 3<<20)
	since, got := int64(0), 0
	for {
		r := e.do("GET", fmt.Sprintf("/api/code-sessions/%s/events?limit=500&since=%d", st.SessionID, since), e.token, nil)
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, clip(string(r.body)))
		}
		if len(r.body) > core.MaxEventPageBytes+(64<<10) && strings.Count(string(r.body), `"seq"`) > 1 {
			t.Errorf("a page of %d bytes", len(r.body))
		}
		var page core.EventPage
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Events) == 0 {
			break
		}
		got += len(page.Events)
		since = page.LastSeq
	}
	if got < 10 {
		t.Errorf("paged %d events, want all", got)
	}
}

// TestStalledStreamClientIsDropped: an SSE client that connects and never
// reads is dropped once a write has waited StreamWriteTimeout, and its
// handler returns.
func TestStalledStreamClientIsDropped(t *testing.T) {
	e := newEnv(t, withOptions(func(o *Options) { o.StreamWriteTimeout = 300 * time.Millisecond }))
	st := e.start(e.agent(), "quick")
	e.waitStatus(st.SessionID, core.StatusFinished)
	e.bigEvents(st.SessionID, 40, 1<<20) // far more than the socket buffers hold
	var active, done atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		active.Add(1)
		defer done.Add(1)
		e.h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET /api/code-sessions/%s/events/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", st.SessionID, e.token)
	// Read the status line only, then stop reading.
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("status line %q, %v", line, err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for done.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stream's handler is still writing to a client that stopped reading")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestShutdownEndsStalledStreamsAtOnce: with a client that stopped reading,
// closing the streams (what serve does on SIGTERM) ends the handler at once,
// not after the write deadline.
func TestShutdownEndsStalledStreamsAtOnce(t *testing.T) {
	e := newEnv(t, withOptions(func(o *Options) { o.StreamWriteTimeout = time.Minute }))
	st := e.start(e.agent(), "quick")
	e.waitStatus(st.SessionID, core.StatusFinished)
	e.bigEvents(st.SessionID, 40, 1<<20)
	var done atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer done.Add(1)
		e.h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /api/code-sessions/%s/events/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", st.SessionID, e.token)
	time.Sleep(500 * time.Millisecond) // let its writes block
	start := time.Now()
	e.h.CloseStreams()
	for done.Load() == 0 {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the stalled stream outlived CloseStreams by 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
