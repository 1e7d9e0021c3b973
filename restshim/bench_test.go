package restshim

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/store"
)

// BenchmarkGetSession measures GET /api/code-sessions/{id} with a valid
// token: a real database, the real token authenticator, the access log to a
// file through a LogBuffer, a real listener on 127.0.0.1, and 16 keep-alive
// clients on the same machine. Target: ≥ 10,000 requests/s on 2 cores.
// Reports req/s and the p50/p99 latency seen by the clients
// (BenchmarkGetSessionVsFloor sets them beside their floor).
func BenchmarkGetSession(b *testing.B) {
	bs := newBenchServer(b)
	url := bs.srv.URL + "/api/code-sessions/" + bs.started.SessionID
	hammer(b, func() string { return url }, bs.token.Token, 16, 16) // warm the connections
	b.ResetTimer()
	rate, lat := hammer(b, func() string { return url }, bs.token.Token, b.N, 16)
	b.StopTimer()
	b.ReportMetric(rate, "req/s")
	b.ReportMetric(float64(lat.Percentile(50))/1e6, "p50-ms")
	b.ReportMetric(float64(lat.Percentile(99))/1e6, "p99-ms")
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
	b.Cleanup(TuneRuntime()) // as flapjack serve runs
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
	// The access log goes to a file through a LogBuffer, the redactor and
	// the request id, as serve's does, with a key to look for as a serve
	// that took one.
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	accessOut := NewLogBuffer(devNull, 100*time.Millisecond)
	access := slog.New(LogHandler(core.RedactHandler(slog.NewTextHandler(accessOut, nil), core.NewRedactor("key_bench_0123456789abcdef0123456789abcdef"))))
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

func ptr[T any](v T) *T { return &v }
