package core_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// TestShortCursorKeysAreRefused: a key under 16 characters is refused (its
// redaction would eat ordinary text), and no refusal quotes the key.
func TestShortCursorKeysAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name, key, env string
		wantErr        bool
	}{
		{"one character", "x", "", true},
		{"fifteen", "k23456789012345", "", true},
		{"sixteen", "k234567890123456", "", false},
		{"short key from the environment", "", "envkey", true},
		{"control character", "k2345678901234\x1b[2J", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			svc := core.NewService(core.ServiceConfig{Store: h.st, Box: h.box, Runtimes: map[string]core.Runtime{"local": h.rt},
				DefaultRuntime: "local", DefaultCursorKey: tc.env})
			_, err := svc.StartSession(context.Background(), h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "x", CursorAPIKey: tc.key})
			if (err != nil) != tc.wantErr {
				t.Fatalf("start = %v, want error %v", err, tc.wantErr)
			}
			if err == nil {
				return
			}
			var e *core.Error
			if !asError(err, &e) || e.Code != core.CodeValidation || e.Field != "cursorApiKey" {
				t.Fatalf("start = %v, want VALIDATION_ERROR on cursorApiKey", err)
			}
			for _, secret := range []string{tc.key, tc.env} {
				if secret != "" && strings.Contains(e.Message, secret) {
					t.Errorf("the refusal quotes the key: %q", e.Message)
				}
			}
			if tc.env != "" && !strings.Contains(e.Message, "CURSOR_API_KEY") {
				t.Errorf("a bad key from the environment should say so: %q", e.Message)
			}
		})
	}
}

func asError(err error, target **core.Error) bool {
	e := core.AsError(err)
	*target = e
	return e != nil
}

// TestSealedKeyThatCannotBeOpenedFailsTheSession: a runner whose master key
// is not the one the session's key was sealed with fails the session with a
// clear reason; the agent never runs, keyless or otherwise.
func TestSealedKeyThatCannotBeOpenedFailsTheSession(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	st, err := h.svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "x", CursorAPIKey: "crsr_sealed_0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := core.NewBox(make([]byte, 32))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	r := core.NewRunner(core.RunnerConfig{Store: h.st, Box: other, Runtimes: map[string]core.Runtime{"local": h.rt}, PollInterval: 5 * time.Millisecond})
	go func() { defer close(done); r.Run(runCtx) }()
	defer func() { stop(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, _ := h.svc.GetSession(ctx, h.actor, st.SessionID)
		if d.Status == core.StatusError {
			if d.Error == nil || !strings.Contains(*d.Error, "cannot be decrypted") {
				t.Errorf("error = %v, want it to say the key cannot be decrypted", d.Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session still %s", d.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.rt.mu.Lock()
	defer h.rt.mu.Unlock()
	if len(h.rt.prepared) != 0 || len(h.rt.executed) != 0 {
		t.Errorf("the runtime was asked to prepare %d and execute %d runs without the session's key", len(h.rt.prepared), len(h.rt.executed))
	}
}

func TestBoxCheckValue(t *testing.T) {
	a, _ := core.NewBox(make([]byte, 32))
	k := make([]byte, 32)
	k[0] = 1
	b, _ := core.NewBox(k)
	if err := a.Verify(a.CheckValue()); err != nil {
		t.Errorf("own check value refused: %v", err)
	}
	if err := b.Verify(a.CheckValue()); !errors.Is(err, core.ErrWrongMasterKey) {
		t.Errorf("another key's check value = %v, want ErrWrongMasterKey", err)
	}
	if bytes.Contains(a.CheckValue(), make([]byte, 8)) {
		t.Error("the check value looks like the key")
	}
}

// TestNamesRefuseControlCharacters: a template's name and description
// cannot carry escape sequences to other users' terminals.
func TestNamesRefuseControlCharacters(t *testing.T) {
	h := newHarness(t)
	bad := "x\x1b]52;c;cHduZWQ=\x07"
	repo := "/srv/repo"
	for _, f := range []core.AgentFields{{Name: &bad, DefaultRepoURL: &repo}, {Description: &bad, DefaultRepoURL: &repo}} {
		_, err := h.svc.CreateAgent(context.Background(), h.actor, core.CreateAgentInput{AgentFields: f})
		var e *core.Error
		if !asError(err, &e) || e.Code != core.CodeValidation || (e.Field != "name" && e.Field != "description") {
			t.Errorf("create with %+v = %v, want VALIDATION_ERROR on the field", f, err)
		}
	}
	multi := "line one\nline two\twith a tab"
	if _, err := h.svc.CreateAgent(context.Background(), h.actor, core.CreateAgentInput{AgentFields: core.AgentFields{Description: &multi, DefaultRepoURL: &repo}}); err != nil {
		t.Errorf("a multi-line description was refused: %v", err)
	}
}

// TestUsageIsKeptAndSummed: what a runtime reports is kept on each message
// and summed on the session, fields unknown in every run staying null.
func TestUsageIsKeptAndSummed(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	n := 0
	h.rt.run = func(context.Context, core.RunSpec, core.RunSink) (core.RunOutcome, error) {
		n++
		in, out, cost := int64(100*n), int64(10*n), 0.25*float64(n)
		u := &core.Usage{InputTokens: &in, OutputTokens: &out}
		if n == 2 {
			u.CostUSD = &cost
		}
		return core.RunOutcome{Status: core.MessageFinished, Usage: u}, nil
	}
	h.runRunner(t)
	st, err := h.svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "one"})
	if err != nil {
		t.Fatal(err)
	}
	waitFinished := func(msgs int) core.SessionDetail {
		deadline := time.Now().Add(10 * time.Second)
		for {
			d, _ := h.svc.GetSession(ctx, h.actor, st.SessionID)
			if d.Status == core.StatusFinished && len(d.Messages) == msgs && d.Messages[msgs-1].Status == core.MessageFinished {
				return d
			}
			if time.Now().After(deadline) {
				t.Fatalf("session %s", d.Status)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFinished(1)
	if _, err := h.svc.SendMessage(ctx, h.actor, st.SessionID, "two"); err != nil {
		t.Fatal(err)
	}
	d := waitFinished(2)
	u := d.Usage
	if u == nil || *u.InputTokens != 300 || *u.OutputTokens != 30 || u.CostUSD == nil || *u.CostUSD != 0.5 || u.DurationMS != nil {
		t.Errorf("session usage = %+v", u)
	}
	if m := d.Messages[0].Usage; m == nil || *m.InputTokens != 100 || m.CostUSD != nil {
		t.Errorf("first message usage = %+v", m)
	}
}

// TestArchiveWithAReaderIsNotAnError: an archive whose key wipe cannot be
// checkpointed at once (a reader holds the WAL) is committed and answered as
// a success; once the reader is gone the runner's next scrub leaves no byte
// of the sealed key in the database, WAL or SHM file.
func TestArchiveWithAReaderIsNotAnError(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	st, err := h.svc.StartSession(ctx, h.actor, core.StartSessionInput{CodeAgentID: h.agent.ID, Prompt: "x", CursorAPIKey: "crsr_scrub_0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Cancel(ctx, h.actor, st.SessionID); err != nil {
		t.Fatal(err)
	}
	ss, _ := h.st.GetSession(ctx, st.SessionID)
	sealed := ss.CursorKeyCiphertext
	if len(sealed) == 0 {
		t.Fatal("no sealed key")
	}
	// A reader holding a snapshot blocks the truncating checkpoint.
	reader, err := sql.Open("sqlite", "file:"+h.dbPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	tx, err := reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRow("SELECT count(*) FROM sessions").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Archive(ctx, h.actor, st.SessionID); err != nil {
		t.Fatalf("archive with a reader holding the WAL = %v, want success", err)
	}
	tx.Rollback()
	if err := h.st.Scrub(ctx); err != nil {
		t.Fatalf("scrub after the reader left: %v", err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		b, _ := os.ReadFile(h.dbPath + suffix)
		if bytes.Contains(b, sealed[len(sealed)-16:]) {
			t.Errorf("flapjack.db%s still holds the sealed key", suffix)
		}
	}
}
