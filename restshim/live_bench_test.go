package restshim

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/coretest"
	"github.com/flapjack-dev/flapjack/store"
)

// BenchmarkLiveDelivery measures how long a new event takes to reach a
// reader: an SSE stream and a REST long-poll (?wait=), written by this
// process (flapjack serve's own runner) and by another Store on the same
// file (another process: its commits are seen only through the database
// file, as a detached runner's are). Each timing runs from just before the
// append (so it includes the commit itself) to the reader having the whole
// event. The floor is one line through a pipe, measured in the same run.
// Goals: p99 ≤ 10 ms in-process, ≤ 60 ms across processes.
func BenchmarkLiveDelivery(b *testing.B) {
	goal := map[string]time.Duration{"same-process": 10 * time.Millisecond, "other-process": 60 * time.Millisecond}
	b.Run("floor=pipe", func(b *testing.B) {
		coretest.PipeFloor(b, max(b.N, 200)).Report(b, "delivery")
	})
	for _, writer := range []string{"same-process", "other-process"} {
		b.Run("sse/"+writer, func(b *testing.B) {
			e, sessionID, w := liveEnv(b, writer)
			s := openStream(b, e.srv.URL+"/api/code-sessions/"+sessionID+"/events/stream", e.token)
			last, err := e.store.GetSession(context.Background(), sessionID)
			if err != nil {
				b.Fatal(err)
			}
			for seen := int64(0); seen < last.LastEventSeq; {
				fmt.Sscan((<-s.events).id, &seen)
			}
			var took, commit coretest.Latencies
			for i := range max(b.N, 200) {
				t0 := time.Now()
				appendLine(b, w, sessionID, i)
				commit.Add(time.Since(t0))
				for {
					ev := <-s.events
					if strings.Contains(ev.data, fmt.Sprintf(`"n":%d}`, i)) {
						took.Add(ev.at.Sub(t0))
						break
					}
				}
			}
			took.Report(b, "delivery")
			commit.Report(b, "commit")
			if p99 := took.Percentile(99); p99 > goal[writer] {
				b.Errorf("p99 %v, goal ≤ %v", p99, goal[writer])
			}
		})
		b.Run("long-poll/"+writer, func(b *testing.B) {
			e, sessionID, w := liveEnv(b, writer)
			var took, commit coretest.Latencies
			for i := range max(b.N, 200) {
				cur, err := e.store.GetSession(context.Background(), sessionID)
				if err != nil {
					b.Fatal(err)
				}
				got := make(chan time.Time, 1)
				go func() {
					r := e.do("GET", fmt.Sprintf("/api/code-sessions/%s/events?since=%d&wait=10", sessionID, cur.LastEventSeq), e.token, nil)
					if r.status != 200 || !strings.Contains(string(r.body), fmt.Sprintf(`"n":%d}`, i)) {
						b.Errorf("long-poll answered %d %s", r.status, r.body)
					}
					got <- time.Now()
				}()
				time.Sleep(3 * time.Millisecond) // the poll is waiting (not timed)
				t0 := time.Now()
				appendLine(b, w, sessionID, i)
				commit.Add(time.Since(t0))
				took.Add((<-got).Sub(t0))
			}
			took.Report(b, "delivery")
			commit.Report(b, "commit")
			if p99 := took.Percentile(99); p99 > goal[writer] {
				b.Errorf("p99 %v, goal ≤ %v", p99, goal[writer])
			}
		})
	}
}

// liveEnv is a REST server with one running session and the store that
// writes its events: the server's own, or another Store on the same file.
func liveEnv(b *testing.B, writer string) (*env, string, *store.Store) {
	e := newEnv(b, withOptions(func(o *Options) { o.StreamPoll = time.Hour }))
	st := e.start(e.agent(), "block")
	e.waitStatus(st.SessionID, core.StatusRunning)
	// The fake runtime's own event ("waiting") is in before any measured one.
	for !strings.Contains(string(e.do("GET", "/api/code-sessions/"+st.SessionID+"/events", e.token, nil).body), `"waiting"`) {
		time.Sleep(5 * time.Millisecond)
	}
	b.Cleanup(func() { e.do("POST", "/api/code-sessions/"+st.SessionID+"/cancel", e.token, nil) })
	if writer == "same-process" {
		return e, st.SessionID, e.store
	}
	other, err := store.Open(e.dbPath)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { other.Close() })
	return e, st.SessionID, other
}

func appendLine(b *testing.B, st *store.Store, sessionID string, n int) {
	payload := json.RawMessage(fmt.Sprintf(`{"line":"compiling package %d","n":%d}`, n, n))
	if _, err := st.AppendEvents(context.Background(), sessionID, []core.EventInput{{Type: core.EventStdout, Payload: payload}}); err != nil {
		b.Fatal(err)
	}
}
