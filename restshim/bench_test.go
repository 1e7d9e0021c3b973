package restshim

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/store"
)

// BenchmarkGetSession measures GET /api/code-sessions/{id} with a valid
// token: a real database, the real token authenticator, the access log
// formatted (to io.Discard), a real listener on 127.0.0.1, and a pool of
// keep-alive clients on the same machine. Target: ≥ 10,000 requests/s on 2
// cores. Reports req/s and the p50/p99 latency seen by the clients.
func BenchmarkGetSession(b *testing.B) {
	bs := newBenchServer(b)
	srv, started, m := bs.srv, bs.started, bs.token
	const clients = 16
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := srv.URL + "/api/code-sessions/" + started.SessionID
	get := func() error {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+m.Token)
		res, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			return &httpStatusError{res.StatusCode}
		}
		return nil
	}
	for range clients { // warm the connections and the database pool
		if err := get(); err != nil {
			b.Fatal(err)
		}
	}

	b.ResetTimer()
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	var failed atomic.Value
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := get(); err != nil {
					failed.Store(err)
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
}

// benchServer is flapjack serve's REST stack on a real database, without
// a runner (sessions stay pending) or a response validator: what a
// benchmark needs and nothing that would cost CPU of its own.
type benchServer struct {
	dbPath  string
	agentID string
	st      *store.Store
	svc     *core.Service
	actor   core.Actor
	started core.StartResult
	token   MintedToken
	srv     *httptest.Server
}

func newBenchServer(b *testing.B) *benchServer {
	ctx := context.Background()
	dbPath := filepath.Join(b.TempDir(), "flapjack.db")
	st, err := store.Open(dbPath)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	owner, err := st.EnsureOwner(ctx)
	if err != nil {
		b.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cached, err := store.NewReadCache(st, dbPath) // as flapjack serve wires it
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cached.Close() })
	svc := core.NewService(core.ServiceConfig{Store: cached, Runtimes: map[string]core.Runtime{"fake": &fakeRuntime{}}, DefaultRuntime: "fake", Logger: logger})
	actor := core.Actor{UserID: owner.UserID, OrgIDs: []string{owner.OrgID}, DefaultOrgID: owner.OrgID}
	ag, err := svc.CreateAgent(ctx, actor, core.CreateAgentInput{AgentFields: core.AgentFields{DefaultRepoURL: ptr("https://github.com/acme/app")}})
	if err != nil {
		b.Fatal(err)
	}
	started, err := svc.StartSession(ctx, actor, core.StartSessionInput{CodeAgentID: ag.ID, Prompt: "Fix the login bug"})
	if err != nil {
		b.Fatal(err)
	}
	m := NewToken()
	if _, err := st.CreateToken(ctx, store.NewToken{UserID: owner.UserID, Name: "bench", Prefix: m.Prefix, Hash: m.Hash[:]}); err != nil {
		b.Fatal(err)
	}
	// The access log goes to a file through a LogBuffer, as serve's does.
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	accessOut := NewLogBuffer(devNull, 100*time.Millisecond)
	access := slog.New(slog.NewTextHandler(accessOut, nil))
	h := New(svc, NewTokenAuthenticator(cached, logger), Options{Logger: logger, AccessLog: access})
	srv := httptest.NewServer(h)
	b.Cleanup(func() {
		h.CloseStreams()
		srv.Close()
		accessOut.Close()
		devNull.Close()
	})
	return &benchServer{dbPath: dbPath, agentID: ag.ID, st: st, svc: svc, actor: actor, started: started, token: m, srv: srv}
}

type httpStatusError struct{ status int }

func (e *httpStatusError) Error() string { return http.StatusText(e.status) }

func ptr[T any](v T) *T { return &v }
