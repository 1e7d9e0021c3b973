package mcp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/coretest"
	"github.com/flapjack-dev/flapjack/store"
)

// BenchmarkWaitDelivery measures flapjack_list_code_session_events with
// waitSeconds: from just before an event's append (the commit included)
// to the waiting tool call returning it, over the in-memory transport. The
// writer is the server's own Store, or another Store on the same file: a
// detached runner's commits reach the MCP server only through the file.
// Goals: p99 ≤ 10 ms in-process, ≤ 60 ms across processes; the floor is a
// line through a pipe, in the same run.
func BenchmarkWaitDelivery(b *testing.B) {
	b.Run("floor=pipe", func(b *testing.B) {
		coretest.PipeFloor(b, max(b.N, 200)).Report(b, "delivery")
	})
	goal := map[string]time.Duration{"same-process": 10 * time.Millisecond, "other-process": 60 * time.Millisecond}
	for _, writer := range []string{"same-process", "other-process"} {
		b.Run(writer, func(b *testing.B) {
			ctx := context.Background()
			dbPath := filepath.Join(b.TempDir(), "flapjack.db")
			m := newBenchMCP(b, dbPath)
			st, started, cs := m.st, m.started, m.cs
			w := st
			if writer == "other-process" {
				other, err := store.Open(dbPath)
				if err != nil {
					b.Fatal(err)
				}
				defer other.Close()
				w = other
			}

			var took coretest.Latencies
			for i := range max(b.N, 200) {
				sess, err := st.GetSession(ctx, started.SessionID)
				if err != nil {
					b.Fatal(err)
				}
				got := make(chan time.Time, 1)
				go func() {
					res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "flapjack_list_code_session_events",
						Arguments: map[string]any{"codeSessionId": started.SessionID, "since": sess.LastEventSeq, "waitSeconds": 10}})
					at := time.Now()
					if err != nil || res.IsError {
						b.Errorf("call: %v %+v", err, res)
					} else if raw, _ := json.Marshal(res.StructuredContent); !bytes.Contains(raw, fmt.Appendf(nil, `"n":%d}`, i)) {
						b.Errorf("call %d returned %s", i, raw)
					}
					got <- at
				}()
				time.Sleep(3 * time.Millisecond) // the call is waiting (not timed)
				t0 := time.Now()
				payload := json.RawMessage(fmt.Sprintf(`{"line":"compiling package %d","n":%d}`, i, i))
				if _, err := w.AppendEvents(ctx, started.SessionID, []core.EventInput{{Type: core.EventStdout, Payload: payload}}); err != nil {
					b.Fatal(err)
				}
				took.Add((<-got).Sub(t0))
			}
			took.Report(b, "delivery")
			if p99 := took.Percentile(99); p99 > goal[writer] {
				b.Errorf("p99 %v, goal ≤ %v", p99, goal[writer])
			}
		})
	}
}
