package cloud

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/coretest"
)

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// TestHostileUpstreamNeverLeaksTheKey: Cursor's API (the fake) echoes the
// request's key in every form into error codes, messages, stream events and
// the final run, on create, follow-up, cancel and archive. The key is then in
// no answer the Service gives, no event, no log line, and no byte of the data
// directory, before and after archive. Wired as cmd wires it: one Redactor
// shared by the Service, the runner and the logger.
func TestHostileUpstreamNeverLeaksTheKey(t *testing.T) {
	echo := fakeResponse{Status: 401, Error: &errorData{Code: "$BASIC", Message: "bad Authorization: $BASIC ($KEY, $KEY_JSON, $KEY_URL)"}}
	cases := []struct {
		name, scenario string
		// queue sets up the fake's echoes; run drives the session and
		// returns the errors the Service answered with.
		queue func(f *fakeCursor)
		run   func(t *testing.T, e *env, id string) []error
		want  core.Status
	}{
		{"create refused", "echo-key", func(f *fakeCursor) { f.queue(routeCreate, echo) }, nil, core.StatusError},
		{"run stream and result", "echo-key", func(*fakeCursor) {}, nil, core.StatusError},
		{"follow-up refused", "echo-key", func(*fakeCursor) {}, func(t *testing.T, e *env, id string) []error {
			e.waitStatus(id, core.StatusError)
			e.fake.queue(routeRuns, echo, echo, echo, echo, echo, echo)
			if _, err := e.svc.SendMessage(context.Background(), e.actor, id, "again"); err != nil {
				t.Fatal(err)
			}
			e.waitFor(id, "the follow-up failed", func(d core.SessionDetail) bool {
				return len(d.Messages) == 2 && d.Messages[1].Status == core.MessageError
			})
			return nil
		}, core.StatusError},
		{"cancel and archive refused", "echo-cancel", func(f *fakeCursor) { f.closeGate("mid") }, func(t *testing.T, e *env, id string) []error {
			ctx := context.Background()
			<-e.fake.reached("mid")
			e.waitStatus(id, core.StatusRunning)
			var errs []error
			e.fake.queue(routeCancel, echo)
			_, err := e.svc.Cancel(ctx, e.actor, id)
			if core.ErrorCode(err) != core.CodeCursorCancelFailed {
				t.Errorf("cancel = %v, want cursor_cancel_failed", err)
			}
			errs = append(errs, err)
			if _, err := e.svc.Cancel(ctx, e.actor, id); err != nil {
				t.Fatal(err)
			}
			e.waitStatus(id, core.StatusCancelled)
			e.fake.queue(routeArchive, echo)
			_, err = e.svc.Archive(ctx, e.actor, id)
			if core.ErrorCode(err) != core.CodeArchiveFailed {
				t.Errorf("archive = %v, want archive_failed", err)
			}
			return append(errs, err)
		}, core.StatusCancelled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.scenario)
			logs := &syncBuffer{}
			red := core.NewRedactor()
			logger := slog.New(core.RedactHandler(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}), red))
			e.tweak = func(c *Config) { c.Logger = logger }
			e.svc = core.NewService(core.ServiceConfig{Store: e.st, Box: e.box, Runtimes: map[string]core.Runtime{core.RuntimeCloud: e.runtime()},
				DefaultRuntime: core.RuntimeCloud, Logger: logger, Redactor: red})
			tc.queue(e.fake)
			ctx := context.Background()
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			r := core.NewRunner(core.RunnerConfig{Store: e.st, Box: e.box, Runtimes: map[string]core.Runtime{core.RuntimeCloud: e.runtime()},
				PollInterval: 5 * time.Millisecond, Logger: logger, Redactor: red})
			go func() { defer close(done); r.Run(runCtx) }()
			stop := func() { cancel(); <-done }
			defer stop()

			st := e.start("Fix it")
			var answers []error
			if tc.run != nil {
				answers = tc.run(t, e, st.SessionID)
			}
			e.waitStatus(st.SessionID, tc.want)

			var leaks []string
			for _, err := range answers {
				leaks = append(leaks, coretest.FindLeaks("service answer", []byte(fmt.Sprint(err)), fakeKey)...)
			}
			check := func(when string) {
				d, err := e.svc.GetSession(ctx, e.actor, st.SessionID)
				if err != nil {
					t.Fatal(err)
				}
				dj, _ := json.Marshal(d)
				leaks = append(leaks, coretest.FindLeaks(when+" session", dj, fakeKey)...)
				page, err := e.svc.ListEvents(ctx, e.actor, st.SessionID, core.EventsInput{Limit: ptr(core.MaxEventLimit)})
				if err != nil {
					t.Fatal(err)
				}
				ej, _ := json.Marshal(page)
				leaks = append(leaks, coretest.FindLeaks(when+" events", ej, fakeKey)...)
				if !bytes.Contains(ej, []byte(core.Redacted)) && tc.name != "cancel and archive refused" {
					t.Errorf("%s: no event says [REDACTED]; did the echo reach the log at all? %s", when, ej)
				}
			}
			check("before archive")
			stop()
			if _, err := e.svc.Archive(ctx, e.actor, st.SessionID); err != nil {
				t.Fatal(err)
			}
			check("after archive")
			leaks = append(leaks, coretest.FindLeaks("log", logs.Bytes(), fakeKey)...)
			e.st.Close()
			fileLeaks, n, err := coretest.FindLeaksInDir(e.dataDir, fakeKey)
			if err != nil || n == 0 {
				t.Fatalf("scanning the data directory: %d files, %v", n, err)
			}
			leaks = append(leaks, fileLeaks...)
			if len(leaks) > 0 {
				t.Errorf("the key leaked:\n%s", strings.Join(leaks, "\n"))
			}
		})
	}
}
