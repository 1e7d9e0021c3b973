package restshim

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core/coretest"
)

// BenchmarkListSessions measures GET /api/code-sessions on a database of
// 20,000 sessions: a page of 50 (?limit=50; goal p50 ≤ 5 ms) and the whole
// array (no limit, streamed; goal ≤ 3× its floor), each beside its floor in
// the same run: net/http serving the same bytes from memory.
func BenchmarkListSessions(b *testing.B) {
	const total = 20_000
	bs := newBenchServer(b)
	seedSessions(b, bs, total)
	base := bs.srv.URL + "/api/code-sessions"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	get := func(url string) (body []byte, firstByte, took time.Duration) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+bs.token.Token)
		t0 := time.Now()
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer res.Body.Close()
		var buf bytes.Buffer
		one := make([]byte, 1)
		if _, err := io.ReadFull(res.Body, one); err != nil {
			b.Fatal(err)
		}
		firstByte = time.Since(t0)
		buf.Write(one)
		if _, err := buf.ReadFrom(res.Body); err != nil {
			b.Fatal(err)
		}
		if res.StatusCode != 200 {
			b.Fatalf("%s: %d %s", url, res.StatusCode, buf.Bytes())
		}
		return buf.Bytes(), firstByte, time.Since(t0)
	}
	for _, tc := range []struct {
		name, query string
		goalRatio   float64 // vs the floor's p50; 0: an absolute goal
		goalP50     time.Duration
	}{
		{"page-of-50", "?limit=50", 0, 5 * time.Millisecond},
		{"whole-array", "", 3, 0},
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		body, _, _ := get(base + tc.query)
		runtime.GC()
		runtime.ReadMemStats(&after)
		// What the server keeps after answering (the whole list, for the
		// whole array), beyond the answer this benchmark holds.
		kept := int64(after.HeapAlloc) - int64(before.HeapAlloc) - int64(len(body))
		if n := strings.Count(string(body), `"id":"cs-`); (tc.query == "" && n != total) || (tc.query != "" && n != 50) {
			b.Fatalf("%s: %d sessions in the answer", tc.name, n)
		}
		floor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		}))
		var real, floorLat, firstBytes coretest.Latencies
		b.Run(tc.name, func(b *testing.B) {
			for range max(b.N, 20) {
				// Interleaved, so drift on a shared machine hits both alike.
				_, fb, took := get(base + tc.query)
				real.Add(took)
				firstBytes.Add(fb)
				_, _, took = get(floor.URL)
				floorLat.Add(took)
			}
			real.Report(b, "api")
			floorLat.Report(b, "floor")
			firstBytes.Report(b, "first-byte")
			b.ReportMetric(float64(len(body))/1e6, "body-MB")
			b.ReportMetric(float64(kept)/total, "kept-B/session")
			ratio := float64(real.Percentile(50)) / float64(floorLat.Percentile(50))
			b.ReportMetric(ratio, "p50-vs-floor")
			if tc.goalRatio > 0 && ratio > tc.goalRatio {
				b.Errorf("p50 %.2f× the floor, goal ≤ %.1f×", ratio, tc.goalRatio)
			}
			if tc.goalP50 > 0 && real.Percentile(50) > tc.goalP50 {
				b.Errorf("p50 %v, goal ≤ %v", real.Percentile(50), tc.goalP50)
			}
		})
		floor.Close()
	}
}

// seedSessions copies the bench server's session n-1 times inside SQLite
// (new ids, one millisecond apart): building them through the API would
// dominate the benchmark's set-up.
func seedSessions(b *testing.B, bs *benchServer, n int) {
	b.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+bs.dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT name FROM pragma_table_info('sessions')`)
	if err != nil {
		b.Fatal(err)
	}
	var cols, sel []string
	for rows.Next() {
		var c string
		rows.Scan(&c)
		cols = append(cols, c)
		switch c {
		case "id":
			sel = append(sel, `printf('cs-bench%012d', x)`)
		case "created_at":
			sel = append(sel, `created_at - x`)
		default:
			sel = append(sel, c)
		}
	}
	rows.Close()
	q := fmt.Sprintf(`WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < %d)
		INSERT INTO sessions (%s) SELECT %s FROM n, sessions WHERE id = ?`, n-1, strings.Join(cols, ", "), strings.Join(sel, ", "))
	if _, err := db.ExecContext(ctx, q, bs.started.SessionID); err != nil {
		b.Fatal(err)
	}
}
