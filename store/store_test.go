package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/store/storetest"
)

// openAt opens the database at path and closes it when the test ends.
func openAt(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newStore opens a fresh database under t.TempDir and returns it with its path.
func newStore(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "flapjack.db")
	return openAt(t, path), path
}

func ptr[T any](v T) *T { return &v }

// at returns a fixed millisecond-precision time in UTC, offset by n seconds.
func at(n int) time.Time {
	return time.Date(2025, 3, 14, 15, 9, 26, 535_000_000, time.UTC).Add(time.Duration(n) * time.Second)
}

func userVersion(t *testing.T, s *Store) int {
	t.Helper()
	var v int
	if err := s.db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func mustOwner(t testing.TB, s *Store) core.Owner {
	t.Helper()
	o, err := s.EnsureOwner(context.Background())
	if err != nil {
		t.Fatalf("EnsureOwner: %v", err)
	}
	return o
}

func testAgent(org string, n int) core.CodeAgent {
	return core.CodeAgent{
		ID:                 core.NewID(core.PrefixAgent),
		OrgID:              org,
		Name:               fmt.Sprintf("agent %d", n),
		Description:        "does things",
		ModelID:            "claude-4-sonnet",
		ModelParams:        map[string]any{"temperature": 0.2, "tags": []any{"a", "b"}},
		DefaultRepoURL:     ptr("https://github.com/acme/app"),
		DefaultStartingRef: "main",
		AutoCreatePR:       true,
		Preamble:           "Be brief.",
		Runtime:            core.RuntimeLocal,
		CreatedBy:          "user-x",
		CreatedAt:          at(n),
		UpdatedAt:          at(n),
	}
}

func testSession(org, agent string, n int) core.Session {
	return core.Session{
		ID:          core.NewID(core.PrefixSession),
		OrgID:       org,
		CodeAgentID: agent,
		RepoURL:     "https://github.com/acme/app",
		StartingRef: "main",
		Status:      core.StatusPending,
		ModelID:     "claude-4-sonnet",
		Runtime:     core.RuntimeCloud,
		Preamble:    "Be brief.",
		CreatedBy:   "user-x",
		CreatedAt:   at(n),
	}
}

func testMessage(session string, n int) core.Message {
	return core.Message{
		ID:        core.NewID(core.PrefixMessage),
		SessionID: session,
		Role:      "user",
		Prompt:    fmt.Sprintf("prompt %d", n),
		Status:    core.MessageQueued,
		CreatedAt: at(n),
	}
}

// createSession stores s with a first message and no events.
func createSession(t testing.TB, st *Store, s core.Session) core.Message {
	t.Helper()
	m := testMessage(s.ID, 0)
	if _, err := st.CreateSession(context.Background(), s, m, nil); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return m
}

// newCache is a ReadCache over s, closed when the test ends; settle is how
// long it waits after another process's commit before reading the list again.
func newCache(t *testing.T, s *Store, path string, settle time.Duration) *ReadCache {
	t.Helper()
	c, err := NewReadCache(s, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.settle = settle
	return c
}

// withSessions is a new store holding n sessions of the owner's org, a
// second apart.
func withSessions(t *testing.T, n int) (*Store, string, []core.Session) {
	t.Helper()
	s, path := newStore(t)
	o := mustOwner(t, s)
	var out []core.Session
	for i := range n {
		sess := testSession(o.OrgID, "ca", i+1)
		createSession(t, s, sess)
		out = append(out, sess)
	}
	return s, path, out
}

func TestOpenAppliesMigrationsAndPragmas(t *testing.T) {
	s, _ := newStore(t)
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if got := userVersion(t, s); got != len(ms) {
		t.Errorf("user_version = %d, want %d", got, len(ms))
	}
	// Hold several connections at once so each is a distinct pooled one: the
	// pragmas must come from the DSN, not from whichever ran an Exec.
	ctx := context.Background()
	for i := range 3 {
		conn, err := s.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, p := range []struct {
			pragma string
			want   string
		}{
			{"journal_mode", "wal"},
			{"synchronous", "2"},
			{"foreign_keys", "1"},
			{"secure_delete", "1"},
			{"busy_timeout", "10000"},
			{"mmap_size", "0"}, // mapped pages would count in serve's resident memory
			{"page_size", "16384"},
		} {
			var got string
			if err := conn.QueryRowContext(ctx, "PRAGMA "+p.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != p.want {
				t.Errorf("conn %d: PRAGMA %s = %q, want %q", i, p.pragma, got, p.want)
			}
		}
	}
}

// openPlain opens path the way another program would: none of Open's
// pragmas, its own pool. It is closed when the test ends.
func openPlain(t *testing.T, path string) *sql.DB {
	t.Helper()
	dsn, err := dsnFor(path, "")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestOpenWhileAnotherWritesTheNewFile: while another connection (another
// process's, as when two start at once) holds the write lock on the still
// empty file, switching it to WAL fails busy at once: SQLite skips the busy
// handler when a reader asks for the write lock, as that could deadlock.
// Open waits it out, and the file still gets its page size.
func TestOpenWhileAnotherWritesTheNewFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "flapjack.db")
	if err := createPrivate(path); err != nil {
		t.Fatal(err)
	}
	other := openPlain(t, path)
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	released := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, err := conn.ExecContext(ctx, "ROLLBACK")
		released <- err
	}()
	s, err := Open(path)
	if rerr := <-released; rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatalf("Open while another connection writes the new file: %v", err)
	}
	defer s.Close()
	for pragma, want := range map[string]string{"page_size": "16384", "journal_mode": "wal"} {
		var got string
		if err := s.db.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %q, want %q", pragma, got, want)
		}
	}
}

// busyError is an error SQLite would give for a busy database.
type busyError struct{}

func (busyError) Error() string { return "database is locked (5) (SQLITE_BUSY)" }
func (busyError) Code() int     { return 5 }

// TestRetryBusyIsBoundedInTime: busy answers are retried for about
// retryBusyFor in all, however long each took (one that waited out
// busy_timeout is not retried a hundred times over), and any other answer
// is returned at once.
func TestRetryBusyIsBoundedInTime(t *testing.T) {
	calls := 0
	start := time.Now()
	err := retryBusy(func() error {
		calls++
		time.Sleep(300 * time.Millisecond) // as if it waited for a lock
		return busyError{}
	})
	elapsed := time.Since(start)
	if !isBusy(err) {
		t.Fatalf("err = %v, want the busy error", err)
	}
	if elapsed < retryBusyFor || elapsed > 3*retryBusyFor {
		t.Fatalf("gave up after %v and %d calls; want about %v", elapsed, calls, retryBusyFor)
	}
	calls = 0
	other := errors.New("not busy")
	if err := retryBusy(func() error { calls++; return other }); err != other || calls != 1 {
		t.Fatalf("a non-busy error: %v after %d calls, want it after 1", err, calls)
	}
}

// TestOpenKeepsAnExistingPageSize: a database made with 4 KiB pages (as
// every one was before newPageSize) keeps them, and its events are written
// and read as in a new one.
func TestOpenKeepsAnExistingPageSize(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "flapjack.db")
	old := openPlain(t, path)
	old.SetMaxOpenConns(1)
	for _, q := range []string{"PRAGMA page_size = 4096", "PRAGMA journal_mode = WAL", "CREATE TABLE unrelated (x)"} {
		if _, err := old.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	s := openAt(t, path)
	var size int
	if err := s.db.QueryRowContext(ctx, "PRAGMA page_size").Scan(&size); err != nil {
		t.Fatal(err)
	}
	if size != 4096 {
		t.Errorf("page_size = %d after Open, want the file's 4096", size)
	}
	o := mustOwner(t, s)
	sess := testSession(o.OrgID, "ca", 1)
	m := createSession(t, s, sess)
	payload := json.RawMessage(`{"text":"` + strings.Repeat("x", 300) + `"}`)
	storetest.AppendMany(t, s, sess.ID, m.ID, 1000, payload) // blocks over several 4 KiB pages
	evs, err := s.ListEvents(ctx, core.EventQuery{SessionID: sess.ID, Since: 400, Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 200 || evs[0].Seq != 401 || evs[199].Seq != 600 || string(evs[100].Payload) != string(payload) {
		t.Fatalf("read %d events from seq %d; want 200 from 401 with their payload", len(evs), evs[0].Seq)
	}
}

func TestReopenIsNoop(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "flapjack.db")
	s1, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	owner := mustOwner(t, s1)
	agent := testAgent(owner.OrgID, 1)
	if err := s1.InsertAgent(ctx, agent); err != nil {
		t.Fatal(err)
	}
	before := userVersion(t, s1)
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := openAt(t, path)
	if got := userVersion(t, s2); got != before {
		t.Errorf("user_version after reopen = %d, want %d", got, before)
	}
	if got := mustOwner(t, s2); got != owner {
		t.Errorf("owner after reopen = %+v, want %+v", got, owner)
	}
	got, err := s2.GetAgent(ctx, agent.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(agent, got); diff != "" {
		t.Errorf("agent after reopen (-want +got):\n%s", diff)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	s, path := newStore(t)
	if _, err := s.db.Exec("PRAGMA user_version = 999"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s2, err := Open(path); err == nil {
		s2.Close()
		t.Fatal("Open of a newer schema succeeded, want error")
	}
}

func TestConcurrentFirstOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flapjack.db")
	const n = 4
	stores := make([]*Store, n)
	owners := make([]core.Owner, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			stores[i], errs[i] = Open(path)
			if errs[i] == nil {
				owners[i], errs[i] = stores[i].EnsureOwner(context.Background())
			}
		})
	}
	wg.Wait()
	for i := range n {
		if stores[i] != nil {
			defer stores[i].Close()
		}
		if errs[i] != nil {
			t.Fatalf("store %d: %v", i, errs[i])
		}
	}
	// Every store applied nothing twice (a second 0001 would fail on CREATE
	// TABLE) and all agree on one owner.
	for i := 1; i < n; i++ {
		if owners[i] != owners[0] {
			t.Errorf("owner %d = %+v, want %+v", i, owners[i], owners[0])
		}
	}
	var orgs int
	if err := stores[0].db.QueryRow("SELECT COUNT(*) FROM orgs").Scan(&orgs); err != nil {
		t.Fatal(err)
	}
	if orgs != 1 {
		t.Errorf("orgs = %d, want 1", orgs)
	}
}

func TestOpenEscapesPath(t *testing.T) {
	for _, name := range []string{"plain", "with space", "q?mark", "hash#tag", "pct%41", "amp&eq=x"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), name)
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "flapjack.db")
			s := openAt(t, path)
			mustOwner(t, s)
			if _, err := os.Stat(path); err != nil {
				t.Errorf("database not created at %q: %v", path, err)
			}
		})
	}
}

func TestEnsureOwner(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	o1 := mustOwner(t, s)
	o2 := mustOwner(t, s)
	if o1 != o2 {
		t.Errorf("second EnsureOwner = %+v, want %+v", o2, o1)
	}
	if !bytes.HasPrefix([]byte(o1.OrgID), []byte(core.PrefixOrg)) || !bytes.HasPrefix([]byte(o1.UserID), []byte(core.PrefixUser)) {
		t.Errorf("owner ids %+v lack their prefixes", o1)
	}
	var member bool
	if err := s.db.QueryRow(`SELECT EXISTS (SELECT 1 FROM org_members WHERE org_id = ? AND user_id = ?)`,
		o1.OrgID, o1.UserID).Scan(&member); err != nil || !member {
		t.Errorf("owner membership = %v, %v; want true", member, err)
	}
	var names [2]string
	if err := s.db.QueryRow(`SELECT (SELECT name FROM orgs), (SELECT name FROM users)`).Scan(&names[0], &names[1]); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([2]string{"default", "owner"}, names); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		org  string
		want bool
	}{
		{o1.OrgID, true},
		{"org-nope", false},
		{"", false},
	} {
		got, err := s.OrgExists(ctx, tc.org)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("OrgExists(%q) = %v, want %v", tc.org, got, tc.want)
		}
	}
}

func TestAgents(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	owner := mustOwner(t, s)
	other := core.NewID(core.PrefixOrg)
	if _, err := s.db.Exec(`INSERT INTO orgs (id, name, created_at) VALUES (?, 'other', 0)`, other); err != nil {
		t.Fatal(err)
	}

	a1 := testAgent(owner.OrgID, 1)
	a2 := testAgent(owner.OrgID, 2)
	a2.ModelParams = nil
	a2.DefaultRepoURL = nil
	a2.Runtime = ""
	a3 := testAgent(other, 3)
	a3.ModelParams = map[string]any{}
	for _, a := range []core.CodeAgent{a1, a2, a3} {
		if err := s.InsertAgent(ctx, a); err != nil {
			t.Fatalf("InsertAgent: %v", err)
		}
	}

	t.Run("get", func(t *testing.T) {
		for _, want := range []core.CodeAgent{a1, a2, a3} {
			got, err := s.GetAgent(ctx, want.ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("GetAgent (-want +got):\n%s", diff)
			}
		}
	})

	t.Run("list", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			orgs []string
			want []core.CodeAgent
		}{
			{"every org", nil, []core.CodeAgent{a3, a2, a1}},
			{"owner org", []string{owner.OrgID}, []core.CodeAgent{a2, a1}},
			{"both orgs", []string{other, owner.OrgID}, []core.CodeAgent{a3, a2, a1}},
			{"no orgs", []string{}, []core.CodeAgent{}},
			{"unknown org", []string{"org-nope"}, []core.CodeAgent{}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := s.ListAgents(ctx, core.AgentFilter{OrgIDs: tc.orgs})
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("ListAgents (-want +got):\n%s", diff)
				}
			})
		}
	})

	t.Run("update", func(t *testing.T) {
		upd := a1
		upd.Name = "renamed"
		upd.Description = ""
		upd.ModelID = "gpt-5"
		upd.ModelParams = nil
		upd.DefaultRepoURL = nil
		upd.DefaultStartingRef = "dev"
		upd.AutoCreatePR = false
		upd.WorkOnCurrentBranch = true
		upd.SkipReviewerRequest = true
		upd.Preamble = ""
		upd.Runtime = core.RuntimeCloud
		upd.UpdatedAt = at(100)
		// Immutable fields are ignored.
		sent := upd
		sent.OrgID = other
		sent.CreatedBy = "someone-else"
		sent.CreatedAt = at(200)
		if err := s.UpdateAgent(ctx, sent); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetAgent(ctx, a1.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(upd, got); diff != "" {
			t.Errorf("after UpdateAgent (-want +got):\n%s", diff)
		}
	})

	t.Run("delete", func(t *testing.T) {
		if err := s.DeleteAgent(ctx, a2.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetAgent(ctx, a2.ID); !errors.Is(err, core.ErrNotFound) {
			t.Errorf("GetAgent after delete: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		missing := testAgent(owner.OrgID, 9)
		for _, tc := range []struct {
			name string
			call func() error
			want error
		}{
			{"get", func() error { _, err := s.GetAgent(ctx, missing.ID); return err }, core.ErrNotFound},
			{"update", func() error { return s.UpdateAgent(ctx, missing) }, core.ErrNotFound},
			{"delete", func() error { return s.DeleteAgent(ctx, missing.ID) }, core.ErrNotFound},
			{"delete twice", func() error { return s.DeleteAgent(ctx, a2.ID) }, core.ErrNotFound},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if err := tc.call(); !errors.Is(err, tc.want) {
					t.Errorf("err = %v, want %v", err, tc.want)
				}
			})
		}
		bad := testAgent("org-nope", 10)
		if err := s.InsertAgent(ctx, bad); err == nil {
			t.Error("InsertAgent with an unknown org succeeded, want a foreign key error")
		}
		if err := s.InsertAgent(ctx, a1); err == nil {
			t.Error("InsertAgent with a duplicate id succeeded, want error")
		}
	})
}

func TestDeleteAgentKeepsSessions(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	owner := mustOwner(t, s)
	agent := testAgent(owner.OrgID, 1)
	if err := s.InsertAgent(ctx, agent); err != nil {
		t.Fatal(err)
	}
	sess := testSession(owner.OrgID, agent.ID, 1)
	createSession(t, s, sess)
	if err := s.DeleteAgent(ctx, agent.ID); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSession(ctx, sess.ID)
	if err != nil {
		t.Fatalf("GetSession after deleting its agent: %v", err)
	}
	if diff := cmp.Diff(sess, got); diff != "" {
		t.Errorf("session after deleting its agent (-want +got):\n%s", diff)
	}
	list, err := s.ListSessions(ctx, core.SessionFilter{CodeAgentID: agent.ID})
	if err != nil || len(list) != 1 {
		t.Errorf("ListSessions by deleted agent = %d sessions, %v; want 1", len(list), err)
	}
}

func TestCreateSessionRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	owner := mustOwner(t, s)
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		paris = time.FixedZone("UTC+2", 2*3600)
	}

	full := testSession(owner.OrgID, "ca-deleted-or-not", 1)
	full.CursorAgentID = ptr("bc-123")
	full.LatestRunID = ptr("run-1")
	full.PRURL = ptr("https://github.com/acme/app/pull/1")
	full.PRBranch = ptr("cursor/fix")
	full.Error = ptr("")
	full.Archived = true
	full.WebhookURL = ptr("https://example.com/hook")
	full.ModelParams = map[string]any{"effort": "high", "n": 3.0, "nested": map[string]any{"x": true}}
	full.AutoCreatePR, full.WorkOnCurrentBranch, full.SkipReviewerRequest = true, true, true
	full.StartedAt = ptr(at(2).In(paris)) // stored as an instant, read back in UTC
	full.CompletedAt = ptr(at(3))
	full.CreatedAt = at(1).In(paris)
	full.CursorKeyCiphertext = []byte{0, 1, 2, 0xff}
	full.RunHandle = "12345"
	full.Version = 7

	bare := testSession(owner.OrgID, "ca-x", 2)
	bare.Preamble = ""
	bare.Runtime = ""

	msgFull := core.Message{
		ID: core.NewID(core.PrefixMessage), SessionID: full.ID, CursorRunID: ptr("run-1"),
		Role: "user", Prompt: "fix it", Status: core.MessageFinished, ResultText: ptr("done"),
		DurationMS: ptr(int64(1234)), PRURL: ptr("https://github.com/acme/app/pull/1"), Error: ptr("boom"),
		StartedAt: ptr(at(2)), CompletedAt: ptr(at(3)), CreatedAt: at(1),
	}
	msgBare := testMessage("", 2) // SessionID filled in by the store

	for _, tc := range []struct {
		name   string
		sess   core.Session
		msg    core.Message
		events []core.EventInput
	}{
		{"every field set", full, msgFull, []core.EventInput{
			{MessageID: msgFull.ID, CursorRunID: "run-1", Type: core.EventStatus, Payload: json.RawMessage(`{"status":"pending"}`), CreatedAt: at(4).In(paris)},
			{MessageID: msgFull.ID, Type: core.EventUserMessage, Payload: json.RawMessage(`{"text":"fix it"}`), CreatedAt: at(5)},
		}},
		{"nullable fields nil", bare, msgBare, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			events, err := s.CreateSession(ctx, tc.sess, tc.msg, tc.events)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.sess
			want.CreatedAt = want.CreatedAt.UTC()
			if want.StartedAt != nil {
				want.StartedAt = ptr(want.StartedAt.UTC())
			}
			want.LastEventSeq = int64(len(tc.events))
			if len(tc.events) > 0 {
				want.LastEventAt = ptr(tc.events[len(tc.events)-1].CreatedAt.UTC())
			}
			got, err := s.GetSession(ctx, tc.sess.ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("GetSession (-want +got):\n%s", diff)
			}
			assertUTC(t, got.CreatedAt, got.StartedAt, got.CompletedAt, got.LastEventAt)

			wantMsg := tc.msg
			wantMsg.SessionID = tc.sess.ID
			msgs, err := s.ListMessages(ctx, tc.sess.ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]core.Message{wantMsg}, msgs); diff != "" {
				t.Errorf("ListMessages (-want +got):\n%s", diff)
			}
			assertUTC(t, msgs[0].CreatedAt, msgs[0].StartedAt, msgs[0].CompletedAt)

			listed, err := s.ListEvents(ctx, core.EventQuery{SessionID: tc.sess.ID, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(events, listed); diff != "" {
				t.Errorf("ListEvents vs CreateSession's events (-want +got):\n%s", diff)
			}
			for i, e := range events {
				if e.Seq != int64(i+1) {
					t.Errorf("event %d seq = %d, want %d", i, e.Seq, i+1)
				}
				assertUTC(t, e.CreatedAt)
			}
		})
	}

	t.Run("duplicate id", func(t *testing.T) {
		if _, err := s.CreateSession(ctx, bare, testMessage(bare.ID, 3), nil); err == nil {
			t.Error("CreateSession with a duplicate id succeeded, want error")
		}
	})
}

func assertUTC(t *testing.T, times ...any) {
	t.Helper()
	for _, v := range times {
		var tm time.Time
		switch v := v.(type) {
		case time.Time:
			tm = v
		case *time.Time:
			if v == nil {
				continue
			}
			tm = *v
		}
		if tm.Location() != time.UTC {
			t.Errorf("time %v is in %v, want UTC", tm, tm.Location())
		}
	}
}

func TestGetSessionNotFound(t *testing.T) {
	s, _ := newStore(t)
	if _, err := s.GetSession(context.Background(), "cs-nope"); !errors.Is(err, core.ErrNotFound) {
		t.Errorf("err = %v, want ErrNotFound", err)
	}
}

func TestListSessions(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	owner := mustOwner(t, s)
	other := core.NewID(core.PrefixOrg)
	if _, err := s.db.Exec(`INSERT INTO orgs (id, name, created_at) VALUES (?, 'other', 0)`, other); err != nil {
		t.Fatal(err)
	}
	mk := func(n int, org, agent string, st core.Status, archived bool) core.Session {
		sess := testSession(org, agent, n)
		sess.Status, sess.Archived = st, archived
		createSession(t, s, sess)
		sess.LastEventSeq = 0
		return sess
	}
	s1 := mk(1, owner.OrgID, "ca-a", core.StatusRunning, false)
	s2 := mk(2, owner.OrgID, "ca-b", core.StatusFinished, true)
	s3 := mk(3, other, "ca-a", core.StatusPending, false)
	s4 := mk(3, owner.OrgID, "ca-a", core.StatusError, false) // same created_at as s3: id breaks the tie
	byTime := []core.Session{s1, s2, s3, s4}
	if s4.ID < s3.ID {
		byTime = []core.Session{s1, s2, s4, s3}
	}
	rev := func(ss ...core.Session) []core.Session {
		out := make([]core.Session, len(ss))
		for i, x := range ss {
			out[len(ss)-1-i] = x
		}
		return out
	}
	keep := func(pred func(core.Session) bool, ss []core.Session) []core.Session {
		out := []core.Session{}
		for _, x := range ss {
			if pred(x) {
				out = append(out, x)
			}
		}
		return out
	}

	for _, tc := range []struct {
		name string
		f    core.SessionFilter
		want []core.Session
	}{
		{"all newest first", core.SessionFilter{}, rev(byTime...)},
		{"all oldest first", core.SessionFilter{OldestFirst: true}, byTime},
		{"one org", core.SessionFilter{OrgIDs: []string{other}}, []core.Session{s3}},
		{"no orgs", core.SessionFilter{OrgIDs: []string{}}, []core.Session{}},
		{"agent", core.SessionFilter{CodeAgentID: "ca-a", OldestFirst: true},
			keep(func(x core.Session) bool { return x.CodeAgentID == "ca-a" }, byTime)},
		{"statuses", core.SessionFilter{Statuses: []core.Status{core.StatusRunning, core.StatusPending, core.StatusCreating}},
			keep(func(x core.Session) bool { return x.Status.Active() }, rev(byTime...))},
		{"archived", core.SessionFilter{Archived: ptr(true)}, []core.Session{s2}},
		{"not archived", core.SessionFilter{Archived: ptr(false), OldestFirst: true},
			keep(func(x core.Session) bool { return !x.Archived }, byTime)},
		{"combined", core.SessionFilter{OrgIDs: []string{owner.OrgID}, CodeAgentID: "ca-a",
			Statuses: []core.Status{core.StatusError}, Archived: ptr(false)}, []core.Session{s4}},
		{"nothing matches", core.SessionFilter{Statuses: []core.Status{core.StatusExpired}}, []core.Session{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListSessions(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ListSessions (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApply(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	owner := mustOwner(t, s)

	setup := func(t *testing.T) (core.Session, core.Message) {
		sess := testSession(owner.OrgID, "ca-a", 1)
		sess.CursorKeyCiphertext = []byte("sealed")
		first := testMessage(sess.ID, 1)
		if _, err := s.CreateSession(ctx, sess, first, []core.EventInput{{Type: core.EventStatus, CreatedAt: at(1)}}); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetSession(ctx, sess.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got, first
	}

	t.Run("writes session, messages and events", func(t *testing.T) {
		sess, first := setup(t)
		ch := sess
		ch.Status = core.StatusRunning
		ch.CursorAgentID = ptr("bc-1")
		ch.LatestRunID = ptr("run-9")
		ch.PRURL = ptr("https://github.com/acme/app/pull/2")
		ch.PRBranch = ptr("cursor/b")
		ch.Error = ptr("partial")
		ch.Archived = true
		ch.WebhookURL = ptr("https://example.com/h")
		ch.StartedAt = ptr(at(5))
		ch.CompletedAt = ptr(at(6))
		ch.CursorKeyCiphertext = nil
		ch.RunHandle = "4242"
		// Not mutable through Apply: ignored.
		sent := ch
		sent.RepoURL = "https://evil.example/repo"
		sent.OrgID = "org-other"
		sent.Preamble = "changed"
		sent.LastEventSeq = 99
		sent.CreatedAt = at(99)

		updFirst := first
		updFirst.Status = core.MessageFinished
		updFirst.CursorRunID = ptr("run-9")
		updFirst.ResultText = ptr("ok")
		updFirst.DurationMS = ptr(int64(50))
		updFirst.StartedAt, updFirst.CompletedAt = ptr(at(5)), ptr(at(6))
		sentFirst := updFirst
		sentFirst.Prompt = "rewritten" // immutable: ignored
		second := testMessage("", 7)
		third := testMessage(sess.ID, 8)

		events, err := s.Apply(ctx, core.Change{
			Session:  sent,
			Messages: []core.Message{sentFirst, second, third},
			Events: []core.EventInput{
				{MessageID: first.ID, CursorRunID: "run-9", Type: core.EventResult, Payload: json.RawMessage(`{"ok":true}`), CreatedAt: at(6)},
				{Type: core.EventStatus, CreatedAt: at(7)},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		wantEvents := []core.Event{
			{SessionID: sess.ID, MessageID: ptr(first.ID), CursorRunID: ptr("run-9"), Type: core.EventResult, Payload: json.RawMessage(`{"ok":true}`), Seq: 2, CreatedAt: at(6)},
			{SessionID: sess.ID, Type: core.EventStatus, Payload: json.RawMessage(`{}`), Seq: 3, CreatedAt: at(7)},
		}
		if diff := cmp.Diff(wantEvents, events, ignoreEventIDs()); diff != "" {
			t.Errorf("Apply events (-want +got):\n%s", diff)
		}

		want := ch
		want.Version = sess.Version + 1
		want.LastEventSeq = 3
		want.LastEventAt = ptr(at(7))
		got, err := s.GetSession(ctx, sess.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("session after Apply (-want +got):\n%s", diff)
		}

		second.SessionID = sess.ID
		msgs, err := s.ListMessages(ctx, sess.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]core.Message{updFirst, second, third}, msgs); diff != "" {
			t.Errorf("messages after Apply (-want +got):\n%s", diff)
		}

		// The caller's copy is now stale: the same Change conflicts.
		if _, err := s.Apply(ctx, core.Change{Session: sent}); !errors.Is(err, core.ErrConflict) {
			t.Errorf("second Apply with the old version: err = %v, want ErrConflict", err)
		}
	})

	failures := []struct {
		name   string
		change func(sess core.Session, first core.Message) core.Change
		want   error // nil: any error
	}{
		{"stale version", func(sess core.Session, first core.Message) core.Change {
			sess.Version--
			return conflictingChange(sess, first)
		}, core.ErrConflict},
		{"future version", func(sess core.Session, first core.Message) core.Change {
			sess.Version += 5
			return conflictingChange(sess, first)
		}, core.ErrConflict},
		{"missing session", func(sess core.Session, first core.Message) core.Change {
			sess.ID = "cs-nope"
			return conflictingChange(sess, first)
		}, core.ErrNotFound},
		{"bad event payload rolls back", func(sess core.Session, first core.Message) core.Change {
			c := conflictingChange(sess, first)
			c.Events = append(c.Events, core.EventInput{Type: core.EventStdout, Payload: json.RawMessage(`{not json`)})
			return c
		}, nil},
		{"message of another session rolls back", func(sess core.Session, first core.Message) core.Change {
			c := conflictingChange(sess, first)
			c.Messages = append(c.Messages, core.Message{ID: "msg-x", SessionID: "cs-other", Role: "user", Status: core.MessageQueued})
			return c
		}, nil},
	}
	for _, tc := range failures {
		t.Run(tc.name+" writes nothing", func(t *testing.T) {
			sess, first := setup(t)
			beforeMsgs, err := s.ListMessages(ctx, sess.ID)
			if err != nil {
				t.Fatal(err)
			}
			beforeEvents, err := s.ListEvents(ctx, core.EventQuery{SessionID: sess.ID})
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Apply(ctx, tc.change(sess, first))
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Apply: err = %v, want %v", err, tc.want)
			}
			if tc.want == nil && (errors.Is(err, core.ErrConflict) || errors.Is(err, core.ErrNotFound)) {
				t.Errorf("Apply: err = %v, want an internal error", err)
			}
			got, err := s.GetSession(ctx, sess.ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(sess, got); diff != "" {
				t.Errorf("session changed (-want +got):\n%s", diff)
			}
			msgs, err := s.ListMessages(ctx, sess.ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(beforeMsgs, msgs); diff != "" {
				t.Errorf("messages changed (-want +got):\n%s", diff)
			}
			events, err := s.ListEvents(ctx, core.EventQuery{SessionID: sess.ID})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(beforeEvents, events); diff != "" {
				t.Errorf("events changed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApplyRefusesMessageOfAnotherSession(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	owner := mustOwner(t, s)
	a := testSession(owner.OrgID, "ca-a", 1)
	b := testSession(owner.OrgID, "ca-a", 2)
	createSession(t, s, a)
	bFirst := createSession(t, s, b)
	stolen := bFirst
	stolen.SessionID = "" // the store fills in a's id; the row belongs to b
	stolen.Status = core.MessageCancelled
	if _, err := s.Apply(ctx, core.Change{Session: a, Messages: []core.Message{stolen}}); err == nil {
		t.Fatal("Apply upserting another session's message succeeded, want error")
	}
	msgs, err := s.ListMessages(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]core.Message{bFirst}, msgs); diff != "" {
		t.Errorf("other session's messages (-want +got):\n%s", diff)
	}
	got, err := s.GetSession(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != a.Version {
		t.Errorf("version = %d, want %d (rolled back)", got.Version, a.Version)
	}
}

// conflictingChange is a Change that would alter everything it can.
func conflictingChange(sess core.Session, first core.Message) core.Change {
	sess.Status = core.StatusCancelled
	sess.Error = ptr("lost the race")
	sess.CursorKeyCiphertext = nil
	first.Status = core.MessageCancelled
	return core.Change{
		Session:  sess,
		Messages: []core.Message{first, testMessage(sess.ID, 9)},
		Events:   []core.EventInput{{Type: core.EventStatus, MessageID: first.ID}},
	}
}

// ignoreEventIDs blanks the random ids so events compare by content.
func ignoreEventIDs() cmp.Option {
	return cmp.Transformer("eventsWithoutIDs", func(es []core.Event) []core.Event {
		out := make([]core.Event, len(es))
		for i, e := range es {
			e.ID = ""
			out[i] = e
		}
		return out
	})
}

func TestSetRunHandle(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	owner := mustOwner(t, s)
	sess := testSession(owner.OrgID, "ca-a", 1)
	sess.Version = 3
	createSession(t, s, sess)

	// Each call bumps Version, so an Apply from a copy read earlier conflicts
	// instead of erasing the handle.
	for i, handle := range []string{"777", ""} {
		if err := s.SetRunHandle(ctx, sess.ID, handle); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetSession(ctx, sess.ID)
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(4 + i); got.RunHandle != handle || got.Version != want {
			t.Errorf("after SetRunHandle(%q): handle %q, version %d; want %q, %d", handle, got.RunHandle, got.Version, handle, want)
		}
	}
	if _, err := s.Apply(ctx, core.Change{Session: sess}); !errors.Is(err, core.ErrConflict) {
		t.Errorf("Apply from a copy read before SetRunHandle: err = %v, want ErrConflict", err)
	}
	if err := s.SetRunHandle(ctx, "cs-nope", "1"); !errors.Is(err, core.ErrNotFound) {
		t.Errorf("SetRunHandle on a missing session: err = %v, want ErrNotFound", err)
	}
}

func TestAppendAndListEvents(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	owner := mustOwner(t, s)
	sess := testSession(owner.OrgID, "ca-a", 1)
	sess.Version = 4
	m1 := createSession(t, s, sess)
	m2 := testMessage(sess.ID, 2)
	if _, err := s.Apply(ctx, core.Change{Session: sess, Messages: []core.Message{m2}}); err != nil {
		t.Fatal(err)
	}

	var in []core.EventInput
	for i := range 10 {
		e := core.EventInput{Type: core.EventAssistant, Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), CreatedAt: at(10 + i)}
		switch i % 3 {
		case 0:
			e.MessageID, e.CursorRunID = m1.ID, "run-1"
		case 1:
			e.MessageID = m2.ID
		}
		in = append(in, e)
	}
	var all []core.Event
	for _, batch := range [][]core.EventInput{in[:1], in[1:6], in[6:]} {
		got, err := s.AppendEvents(ctx, sess.ID, batch)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, got...)
	}
	ids := map[string]bool{}
	for i, e := range all {
		want := core.Event{SessionID: sess.ID, Type: core.EventAssistant, Payload: in[i].Payload, Seq: int64(i + 1), CreatedAt: at(10 + i)}
		if in[i].MessageID != "" {
			want.MessageID = ptr(in[i].MessageID)
		}
		if in[i].CursorRunID != "" {
			want.CursorRunID = ptr(in[i].CursorRunID)
		}
		if diff := cmp.Diff(want, e, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".ID" }, cmp.Ignore())); diff != "" {
			t.Errorf("event %d (-want +got):\n%s", i, diff)
		}
		if !bytes.HasPrefix([]byte(e.ID), []byte(core.PrefixEvent)) || ids[e.ID] {
			t.Errorf("event %d id %q: want a fresh %s id", i, e.ID, core.PrefixEvent)
		}
		ids[e.ID] = true
	}

	got, err := s.GetSession(ctx, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != sess.Version+1 || got.LastEventSeq != 10 || !got.LastEventAt.Equal(at(19)) {
		t.Errorf("session version %d, last_event_seq %d, last_event_at %v; want %d, 10, %v",
			got.Version, got.LastEventSeq, got.LastEventAt, sess.Version+1, at(19))
	}

	sel := func(pred func(e core.Event) bool) []core.Event {
		out := []core.Event{}
		for _, e := range all {
			if pred(e) {
				out = append(out, e)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		q    core.EventQuery
		want []core.Event
	}{
		{"all", core.EventQuery{SessionID: sess.ID, Limit: 100}, all},
		{"no limit", core.EventQuery{SessionID: sess.ID}, all},
		{"since", core.EventQuery{SessionID: sess.ID, Since: 7, Limit: 100}, all[7:]},
		{"limit", core.EventQuery{SessionID: sess.ID, Since: 2, Limit: 3}, all[2:5]},
		{"past the end", core.EventQuery{SessionID: sess.ID, Since: 10, Limit: 3}, []core.Event{}},
		{"message", core.EventQuery{SessionID: sess.ID, MessageID: m1.ID, Limit: 100},
			sel(func(e core.Event) bool { return e.MessageID != nil && *e.MessageID == m1.ID })},
		{"message since limit", core.EventQuery{SessionID: sess.ID, MessageID: m2.ID, Since: 2, Limit: 2},
			sel(func(e core.Event) bool { return e.MessageID != nil && *e.MessageID == m2.ID && e.Seq > 2 })[:2]},
		{"unknown session", core.EventQuery{SessionID: "cs-nope", Limit: 10}, []core.Event{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListEvents(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ListEvents(%+v) (-want +got):\n%s", tc.q, diff)
			}
		})
	}

	t.Run("defaults", func(t *testing.T) {
		before := time.Now().UTC().Truncate(time.Millisecond)
		got, err := s.AppendEvents(ctx, sess.ID, []core.EventInput{{Type: core.EventStdout}, {Type: core.EventStderr, Payload: json.RawMessage{}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range got {
			if string(e.Payload) != "{}" || e.MessageID != nil || e.CursorRunID != nil {
				t.Errorf("event %+v: want payload {}, nil message and run", e)
			}
			if e.CreatedAt.Before(before) || e.CreatedAt.Location() != time.UTC {
				t.Errorf("event created_at %v: want now, in UTC", e.CreatedAt)
			}
		}
		recs := blockRecords(t, s, sess.ID)
		for _, r := range recs[len(recs)-2:] {
			if string(r.payload) != "{}" || r.messageID != nil || r.runID != nil || r.id != nil {
				t.Errorf("stored %+v: want payload {}, no message, run or id", r)
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			session string
			events  []core.EventInput
			want    error
		}{
			{"missing session", "cs-nope", []core.EventInput{{Type: core.EventStdout}}, core.ErrNotFound},
			{"missing session, empty batch", "cs-nope", nil, core.ErrNotFound},
			{"invalid payload", sess.ID, []core.EventInput{{Type: core.EventStdout}, {Type: core.EventStdout, Payload: json.RawMessage(`nope`)}}, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before, err := s.GetSession(ctx, sess.ID)
				if err != nil {
					t.Fatal(err)
				}
				_, err = s.AppendEvents(ctx, tc.session, tc.events)
				if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
					t.Errorf("err = %v, want %v", err, tc.want)
				}
				after, err := s.GetSession(ctx, sess.ID)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(before, after); diff != "" {
					t.Errorf("session changed by a failed append (-want +got):\n%s", diff)
				}
			})
		}
		got, err := s.AppendEvents(ctx, sess.ID, nil)
		if err != nil || len(got) != 0 {
			t.Errorf("AppendEvents(empty) = %v, %v; want no events, no error", got, err)
		}
	})
}

// TestConcurrentAppend writes from goroutines sharing a Store and from a second
// Store on the same file (the cross-process case: separate pools and locks).
func TestConcurrentAppend(t *testing.T) {
	ctx := context.Background()
	s1, path := newStore(t)
	s2 := openAt(t, path)
	owner := mustOwner(t, s1)
	sess := testSession(owner.OrgID, "ca-a", 1)
	createSession(t, s1, sess)

	const workersPerStore, batches, batchSize = 3, 15, 4
	var wg sync.WaitGroup
	errs := make(chan error, 2*workersPerStore)
	for si, st := range []*Store{s1, s2} {
		for w := range workersPerStore {
			wg.Go(func() {
				for b := range batches {
					in := make([]core.EventInput, batchSize)
					for i := range in {
						in[i] = core.EventInput{Type: core.EventStdout,
							Payload: json.RawMessage(fmt.Sprintf(`{"w":%d,"n":%d}`, si*workersPerStore+w, b*batchSize+i))}
					}
					got, err := st.AppendEvents(ctx, sess.ID, in)
					if err != nil {
						errs <- err
						return
					}
					for i := 1; i < len(got); i++ {
						if got[i].Seq != got[i-1].Seq+1 {
							errs <- fmt.Errorf("batch seqs not consecutive: %d then %d", got[i-1].Seq, got[i].Seq)
							return
						}
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	const total = 2 * workersPerStore * batches * batchSize
	events, err := s2.ListEvents(ctx, core.EventQuery{SessionID: sess.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != total {
		t.Fatalf("got %d events, want %d", len(events), total)
	}
	ids := map[string]bool{}
	lastN := map[int]int{}
	for i, e := range events {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d: want contiguous seqs from 1", i, e.Seq)
		}
		if ids[e.ID] {
			t.Errorf("duplicate event id %s", e.ID)
		}
		ids[e.ID] = true
		var p struct{ W, N int }
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			t.Fatal(err)
		}
		if n, ok := lastN[p.W]; ok && p.N != n+1 {
			t.Errorf("writer %d: event %d follows %d; want each writer's events in its order", p.W, p.N, n)
		}
		lastN[p.W] = p.N
	}
	got, err := s1.GetSession(ctx, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.LastEventSeq != total || got.Version != sess.Version {
		t.Errorf("last_event_seq %d, version %d; want %d, %d", got.LastEventSeq, got.Version, total, sess.Version)
	}
}

func TestHasCiphertext(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	owner := mustOwner(t, s)
	check := func(want bool) {
		t.Helper()
		got, err := s.HasCiphertext(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("HasCiphertext = %v, want %v", got, want)
		}
	}
	check(false)
	createSession(t, s, testSession(owner.OrgID, "ca-a", 1)) // no key
	check(false)
	sess := testSession(owner.OrgID, "ca-a", 2)
	sess.CursorKeyCiphertext = []byte("sealed")
	createSession(t, s, sess)
	check(true)
	sess.CursorKeyCiphertext = []byte{} // empty is "no key"
	if _, err := s.Apply(ctx, core.Change{Session: sess}); err != nil {
		t.Fatal(err)
	}
	check(false)
}

// TestScrub checks that a wiped secret leaves every file of the database: the
// secure_delete pragma zeroes it in the page, and Scrub's checkpoint removes
// the WAL frames that still hold the old page. Without Scrub the WAL keeps it,
// which is what makes the test meaningful.
func TestScrub(t *testing.T) {
	canary := []byte("FLAPJACK-CANARY-5f1b7c2e-d00d-SECRET")
	files := func(path string) []string { return []string{path, path + "-wal", path + "-shm"} }
	scan := func(t *testing.T, path string) []string {
		t.Helper()
		var found []string
		for _, f := range files(path) {
			b, err := os.ReadFile(f)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, canary) {
				found = append(found, filepath.Base(f))
			}
		}
		return found
	}

	// A real sealed key is ~100 bytes; the larger sizes put the secret where
	// SQLite's reuse of the freed cell does not happen to cover it (a 1 KiB
	// in-page value) and on overflow pages (6 KiB).
	for _, size := range []int{100, 1024, 6 * 1024} {
		for _, tc := range []struct {
			scrub         bool
			wantWhileOpen bool
		}{
			{scrub: true, wantWhileOpen: false},
			{scrub: false, wantWhileOpen: true},
		} {
			t.Run(fmt.Sprintf("size=%d/scrub=%v", size, tc.scrub), func(t *testing.T) {
				ctx := context.Background()
				path := filepath.Join(t.TempDir(), "flapjack.db")
				s, err := Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				owner := mustOwner(t, s)
				sess := testSession(owner.OrgID, "ca-a", 1)
				sess.Status = core.StatusFinished
				sess.CursorKeyCiphertext = append([]byte{1}, canary...)
				sess.CursorKeyCiphertext = append(sess.CursorKeyCiphertext, bytes.Repeat([]byte{0xa5}, size-len(sess.CursorKeyCiphertext))...)
				createSession(t, s, sess)
				// A later row on the same page keeps the secret's cell away from the
				// page's free gap, so its bytes stay put unless secure_delete zeroes them.
				createSession(t, s, testSession(owner.OrgID, "ca-a", 2))
				if found := scan(t, path); len(found) == 0 {
					t.Fatal("canary not on disk after insert: the scan proves nothing")
				}

				sess.Archived = true
				sess.CursorKeyCiphertext = nil
				events, err := s.Apply(ctx, core.Change{Session: sess, Scrub: tc.scrub,
					Events: []core.EventInput{{Type: core.EventStatus, Payload: json.RawMessage(`{"archived":true}`)}}})
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				if len(events) != 1 {
					t.Errorf("Apply returned %d events, want 1", len(events))
				}
				found := scan(t, path)
				if got := len(found) > 0; got != tc.wantWhileOpen {
					t.Errorf("while open, canary found in %v; want found = %v", found, tc.wantWhileOpen)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if found := scan(t, path); len(found) > 0 {
					t.Errorf("after Close, canary found in %v", found)
				}
			})
		}
	}
}

func TestDataVersion(t *testing.T) {
	ctx := context.Background()
	s1, path := newStore(t)
	s2 := openAt(t, path)
	v := func(s *Store) int64 {
		t.Helper()
		n, err := s.DataVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	start := v(s1)
	if again := v(s1); again != start {
		t.Errorf("DataVersion changed without a write: %d then %d", start, again)
	}
	owner := mustOwner(t, s1) // this process's own pool writes
	afterOwn := v(s1)
	if afterOwn == start {
		t.Error("DataVersion unchanged after a write through the same Store")
	}
	if err := s2.InsertAgent(ctx, testAgent(owner.OrgID, 1)); err != nil {
		t.Fatal(err)
	}
	if afterOther := v(s1); afterOther == afterOwn {
		t.Error("DataVersion unchanged after a write through another Store")
	}
}

func TestCloseTwice(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "flapjack.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestMigrationsNumbered(t *testing.T) {
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].name != "0001_init.sql" {
		t.Errorf("migrations start with %+v, want 0001_init.sql", ms)
	}
}

// TestQueryPlans pins the hot reads to their indexes: a keyset page must be a
// range search, never a scan or a sort.
func TestQueryPlans(t *testing.T) {
	s, _ := newStore(t)
	for _, tc := range []struct {
		name  string
		query string
		args  []any
		want  string
	}{
		{"events", listEventsSQL, []any{"cs-a", 5}, "SEARCH event_blocks USING INDEX event_blocks_seq (session_id=? AND last_seq>?)"},
		{"events of a message", listMessageEventsSQL, []any{"cs-a", 5, "msg-a"},
			"SEARCH event_blocks USING INDEX event_blocks_seq (session_id=? AND last_seq>? AND last_seq<?)"},
		{"a session's last block", lastBlockSQL, []any{"cs-a"}, "SEARCH event_blocks USING INDEX event_blocks_seq (session_id=?)"},
		{"sealed rows", `SELECT EXISTS (SELECT 1 FROM sessions WHERE cursor_key_ciphertext IS NOT NULL)`, nil,
			"SCAN sessions USING INDEX sessions_sealed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := s.db.Query("EXPLAIN QUERY PLAN "+tc.query, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var details []string
			for rows.Next() {
				var id, parent, notused int
				var detail string
				if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
					t.Fatal(err)
				}
				details = append(details, detail)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, d := range details {
				found = found || d == tc.want
				if strings.Contains(d, "TEMP B-TREE") {
					t.Errorf("plan sorts: %q", d)
				}
			}
			if !found {
				t.Errorf("plan %q does not contain %q", details, tc.want)
			}
		})
	}
}

// Environment of the helper process that TestMultiProcess starts.
const (
	helperEnvPath    = "FLAPJACK_STORE_HELPER_DB"
	helperEnvSession = "FLAPJACK_STORE_HELPER_SESSION"
	helperEnvWorker  = "FLAPJACK_STORE_HELPER_WORKER"
)

// TestHelperProcess is not a test: it is the body of the child processes of
// TestMultiProcess. It opens the database, prints the owner org, and appends
// numbered events when given a session.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnvPath)
	if path == "" {
		t.Skip("helper process only")
	}
	ctx := context.Background()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	o, err := s.EnsureOwner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("owner=%s\n", o.OrgID)
	sessionID := os.Getenv(helperEnvSession)
	if sessionID == "" {
		return
	}
	worker := os.Getenv(helperEnvWorker)
	for b := range 20 {
		in := make([]core.EventInput, 5)
		for i := range in {
			in[i] = core.EventInput{Type: core.EventStdout,
				Payload: json.RawMessage(fmt.Sprintf(`{"w":%s,"n":%d}`, worker, b*len(in)+i))}
		}
		if _, err := s.AppendEvents(ctx, sessionID, in); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMultiProcess runs the cross-process cases with real processes: two first
// opens of a fresh file race on the migrations and the owner, then two
// processes append to one session.
func TestMultiProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	path := filepath.Join(t.TempDir(), "flapjack.db")
	run := func(sessionID string) []string {
		t.Helper()
		const n = 2
		cmds := make([]*exec.Cmd, n)
		outs := make([]bytes.Buffer, n)
		for i := range cmds {
			cmds[i] = exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
			cmds[i].Env = append(os.Environ(), helperEnvPath+"="+path, helperEnvSession+"="+sessionID,
				fmt.Sprintf("%s=%d", helperEnvWorker, i))
			cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
			if err := cmds[i].Start(); err != nil {
				t.Fatal(err)
			}
		}
		var owners []string
		for i, c := range cmds {
			if err := c.Wait(); err != nil {
				t.Fatalf("helper %d: %v\n%s", i, err, outs[i].String())
			}
			for _, line := range strings.Split(outs[i].String(), "\n") {
				if o, ok := strings.CutPrefix(line, "owner="); ok {
					owners = append(owners, o)
				}
			}
		}
		return owners
	}

	owners := run("")
	if len(owners) != 2 || owners[0] != owners[1] {
		t.Fatalf("owners printed by the two processes = %q, want two equal", owners)
	}

	s := openAt(t, path)
	if got := mustOwner(t, s); got.OrgID != owners[0] {
		t.Errorf("owner = %s, want %s", got.OrgID, owners[0])
	}
	sess := testSession(owners[0], "ca-a", 1)
	createSession(t, s, sess)
	run(sess.ID)

	events, err := s.ListEvents(context.Background(), core.EventQuery{SessionID: sess.ID})
	if err != nil {
		t.Fatal(err)
	}
	const want = 2 * 20 * 5
	if len(events) != want {
		t.Fatalf("got %d events, want %d", len(events), want)
	}
	ids := map[string]bool{}
	for i, e := range events {
		if e.Seq != int64(i+1) || ids[e.ID] {
			t.Fatalf("event %d: seq %d, id %s (seen before: %v); want contiguous seqs and unique ids", i, e.Seq, e.ID, ids[e.ID])
		}
		ids[e.ID] = true
	}
}

// TestStreamPositionMovesWithItsEvents: the upstream stream position is stored
// in the transaction of the events it covers, a batch without one keeps it, and
// Apply (a new run) may reset it.
func TestStreamPositionMovesWithItsEvents(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	owner := mustOwner(t, s)
	sess := testSession(owner.OrgID, "ca-a", 1)
	createSession(t, s, sess)
	steps := []struct {
		events []core.EventInput
		want   string
	}{
		{[]core.EventInput{{Type: core.EventAssistant, StreamPosition: "1700-1"}, {Type: core.EventToolCall, StreamPosition: "1700-2"}}, "1700-2"},
		{[]core.EventInput{{Type: core.EventStdout}}, "1700-2"},
		{[]core.EventInput{{Type: core.EventAssistant, StreamPosition: "1700-9"}, {Type: core.EventStdout}}, "1700-9"},
	}
	for i, st := range steps {
		if _, err := s.AppendEvents(ctx, sess.ID, st.events); err != nil {
			t.Fatal(err)
		}
		got, _ := s.GetSession(ctx, sess.ID)
		if got.StreamPosition != st.want {
			t.Errorf("step %d: stream position %q, want %q", i, got.StreamPosition, st.want)
		}
	}
	got, _ := s.GetSession(ctx, sess.ID)
	got.StreamPosition = ""
	if _, err := s.Apply(ctx, core.Change{Session: got}); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.GetSession(ctx, sess.ID); again.StreamPosition != "" {
		t.Errorf("after Apply: stream position %q, want it reset", again.StreamPosition)
	}
}

// TestOpenNamesThePathLimit: a database path whose journal SQLite could not
// open is refused with a message naming the limit, and one byte shorter works.
func TestOpenNamesThePathLimit(t *testing.T) {
	base := t.TempDir()
	dirFor := func(n int) string {
		d := base
		for len(d) < n {
			d += "/" + strings.Repeat("d", min(100, n-len(d)-1))
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		return d
	}
	limit := 511 - len("/flapjack.db-journal")
	if s, err := Open(filepath.Join(dirFor(limit), "flapjack.db")); err != nil {
		t.Errorf("a data directory of %d bytes: %v", limit, err)
	} else {
		s.Close()
	}
	base = t.TempDir()
	_, err := Open(filepath.Join(dirFor(limit+1), "flapjack.db"))
	if err == nil || !strings.Contains(err.Error(), "too long for SQLite") || !strings.Contains(err.Error(), strconv.Itoa(limit)+" bytes") {
		t.Errorf("a data directory of %d bytes: %v", limit+1, err)
	}
}

// TestEventPagesAndCancellation: a cancelled caller gets no page; a page
// once begun is read to its end, since finishing it costs less than
// watching for the cancellation would; a read without a limit still stops
// when its caller goes away.
func TestEventPagesAndCancellation(t *testing.T) {
	s, _ := newStore(t)
	o := mustOwner(t, s)
	sess := testSession(o.OrgID, "ca", 1)
	m := createSession(t, s, sess)
	storetest.AppendMany(t, s, sess.ID, m.ID, 1000, json.RawMessage(`{"line":"a line of output"}`))

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, limit := range []int{200, 0} {
		if _, err := s.ListEvents(cancelled, core.EventQuery{SessionID: sess.ID, Limit: limit}); !errors.Is(err, context.Canceled) {
			t.Errorf("ListEvents with limit %d after cancel: %v, want context.Canceled", limit, err)
		}
		n := 0
		err := s.StreamEvents(cancelled, core.EventQuery{SessionID: sess.ID, Limit: limit}, func(*core.Event) bool { n++; return true })
		if !errors.Is(err, context.Canceled) || n != 0 {
			t.Errorf("StreamEvents with limit %d after cancel: %d events, %v; want none and context.Canceled", limit, n, err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	err := s.StreamEvents(ctx, core.EventQuery{SessionID: sess.ID, Since: 100, Limit: 500}, func(*core.Event) bool {
		n++
		cancel()
		time.Sleep(50 * time.Microsecond) // room for anything watching ctx to act
		return true
	})
	if err != nil || n != 500 {
		t.Errorf("a page whose caller went away while it was read: %d events, %v; want all 500", n, err)
	}
}
