package restshim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/coretest"
	"github.com/flapjack-dev/flapjack/store/storetest"
)

// hammer sends n GETs from a pool of keep-alive clients and returns the
// throughput and each request's latency; url picks each request's URL.
func hammer(b *testing.B, url func() string, token string, n, clients int) (float64, coretest.Latencies) {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var next atomic.Int64
	lat := make([]coretest.Latencies, clients)
	var wg sync.WaitGroup
	var failed atomic.Value
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				req, _ := http.NewRequest("GET", url(), nil)
				req.Header.Set("Authorization", "Bearer "+token)
				t0 := time.Now()
				res, err := client.Do(req)
				if err != nil {
					failed.Store(err)
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					failed.Store(fmt.Errorf("status %d", res.StatusCode))
					return
				}
				lat[c].Add(time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	var all coretest.Latencies
	for _, l := range lat {
		all = append(all, l...)
	}
	return float64(n) / elapsed.Seconds(), all
}

// floorServer answers every request with the API's answer to url, as it
// was sent (its body and headers, net/http adding the date and length):
// what net/http and the loopback cost on their own for the same bytes.
func floorServer(b *testing.B, url, token string) (*httptest.Server, []byte) {
	body, hdr := fetch(b, url, token)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for k, v := range hdr {
			h[k] = v
		}
		w.Write(body)
	}))
	b.Cleanup(srv.Close)
	return srv, body
}

// fetch returns the API's answer to url, with the headers the API set.
func fetch(b *testing.B, url, token string) ([]byte, http.Header) {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		b.Fatalf("%s: %d %s", url, res.StatusCode, body)
	}
	hdr := res.Header.Clone()
	hdr.Del("Date")
	hdr.Del("Content-Length")
	return body, hdr
}

// BenchmarkGetSessionVsFloor measures GET /api/code-sessions/{id} (16
// keep-alive clients, the real token check, the access log to a file) beside
// its floor in the same run, on a quiet database and while four other
// sessions each take 500 events a second through their EventWriters, as
// serve's runner writes them. Goals: throughput ≥ 0.8× the floor's when
// quiet; p99 ≤ 1.5× the floor's while the sessions write.
func BenchmarkGetSessionVsFloor(b *testing.B) {
	const clients, perRound, rounds = 16, 1500, 8
	for _, load := range []string{"quiet", "4-sessions-writing"} {
		b.Run(load, func(b *testing.B) {
			bs := newBenchServer(b)
			if load != "quiet" {
				stop := writeEvents(b, bs, 4, 500)
				defer stop()
			}
			url := bs.srv.URL + "/api/code-sessions/" + bs.started.SessionID
			floor, _ := floorServer(b, url, bs.token.Token)
			var apiRates, floorRates []float64
			var apiLat, floorLat coretest.Latencies
			for b.Loop() {
				for range rounds { // interleaved: drift hits both alike
					r, l := hammer(b, func() string { return url }, bs.token.Token, perRound, clients)
					apiRates, apiLat = append(apiRates, r), append(apiLat, l...)
					r, l = hammer(b, func() string { return floor.URL }, bs.token.Token, perRound, clients)
					floorRates, floorLat = append(floorRates, r), append(floorLat, l...)
				}
			}
			rate := medianOf(apiRates) / medianOf(floorRates)
			p99 := float64(apiLat.Percentile(99)) / float64(floorLat.Percentile(99))
			b.ReportMetric(medianOf(apiRates), "api-req/s")
			b.ReportMetric(medianOf(floorRates), "floor-req/s")
			b.ReportMetric(rate, "req/s-vs-floor")
			apiLat.Report(b, "api")
			floorLat.Report(b, "floor")
			b.ReportMetric(p99, "p99-vs-floor")
			if load == "quiet" && rate < 0.8 {
				b.Errorf("quiet: %.2f× the floor's throughput, goal ≥ 0.8×", rate)
			}
			if load != "quiet" && p99 > 1.5 {
				b.Errorf("while writing: p99 %.2f× the floor's, goal ≤ 1.5×", p99)
			}
		})
	}
}

// BenchmarkEventsPage measures GET /api/code-sessions/{id}/events?limit=200
// at random depths of a session of 1,000,000 events, beside the floor
// serving one such page from memory. Goal: p50 ≤ 2× the floor's.
func BenchmarkEventsPage(b *testing.B) {
	const total, clients, perRound, rounds = 1_000_000, 4, 1000, 6
	bs := newBenchServer(b)
	storetest.AppendMany(b, bs.st, bs.started.SessionID, bs.started.MessageID, total-2, json.RawMessage(`{"text":"Looking at src/auth.ts to find where the JWT expiry is computed."}`)) // after the start's two
	base := bs.srv.URL + "/api/code-sessions/" + bs.started.SessionID + "/events?limit=200&since="
	floor, page := floorServer(b, base+"500000", bs.token.Token)
	var probe core.EventPage
	if err := json.Unmarshal(page, &probe); err != nil || len(probe.Events) != 200 {
		b.Fatalf("a page holds %d events (%v)", len(probe.Events), err)
	}
	var apiLat, floorLat, storeLat coretest.Latencies
	for b.Loop() {
		for range rounds {
			_, l := hammer(b, func() string { return base + fmt.Sprint(rand.IntN(total-200)) }, bs.token.Token, perRound, clients)
			apiLat = append(apiLat, l...)
			_, l = hammer(b, func() string { return floor.URL }, bs.token.Token, perRound, clients)
			floorLat = append(floorLat, l...)
			storeLat = append(storeLat, readPages(b, bs, total, perRound/4)...)
		}
	}
	ratio := float64(apiLat.Percentile(50)) / float64(floorLat.Percentile(50))
	apiLat.Report(b, "api")
	floorLat.Report(b, "floor")
	// What no server on this store can go below: the page's rows alone,
	// read one page at a time with nothing else running.
	storeLat.Report(b, "store-read")
	b.ReportMetric(float64(storeLat.Percentile(50))/float64(floorLat.Percentile(50)), "store-read-p50-vs-floor")
	b.ReportMetric(float64(len(page))/1024, "page-KiB")
	b.ReportMetric(ratio, "p50-vs-floor")
	if ratio > 2 {
		b.Errorf("p50 %v, %.2f× the floor's %v; goal ≤ 2× (the store's read alone: p50 %v, %.2f×)", apiLat.Percentile(50), ratio, floorLat.Percentile(50),
			storeLat.Percentile(50), float64(storeLat.Percentile(50))/float64(floorLat.Percentile(50)))
	}
}

// readPages reads n pages of 200 events at random depths straight from the
// store, one at a time, and returns how long each took.
func readPages(b *testing.B, bs *benchServer, total, n int) coretest.Latencies {
	var lat coretest.Latencies
	for range n {
		t0 := time.Now()
		evs, err := bs.st.ListEvents(context.Background(), core.EventQuery{SessionID: bs.started.SessionID, Since: int64(rand.IntN(total - 200)), Limit: 200})
		if err != nil || len(evs) != 200 {
			b.Fatalf("%d events, %v", len(evs), err)
		}
		lat.Add(time.Since(t0))
	}
	return lat
}

// writeEvents starts n more sessions, each taking perSecond events a second
// through its own EventWriter, until stop.
func writeEvents(b *testing.B, bs *benchServer, n, perSecond int) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range n {
		st, err := bs.svc.StartSession(ctx, bs.actor, core.StartSessionInput{CodeAgentID: bs.agentID, Prompt: "write"})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := core.NewEventWriter(bs.st, st.SessionID, nil)
			defer w.Close()
			t := time.NewTicker(time.Second / time.Duration(perSecond))
			defer t.Stop()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					w.Emit(core.EventInput{MessageID: st.MessageID, Type: core.EventStdout,
						Payload: json.RawMessage(fmt.Sprintf(`{"line":"step %d"}`, i))})
				}
			}
		}()
	}
	return func() { cancel(); wg.Wait() }
}

func medianOf(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
