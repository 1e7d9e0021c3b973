package cloud

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flapjack-dev/flapjack/core"
)

// TestStalledStreamIsResumed: a stream that goes silent (no heartbeat) is cut
// after the idle timeout and resumed after the last event read.
func TestStalledStreamIsResumed(t *testing.T) {
	e := newEnv(t, "stall")
	e.tweak = func(c *Config) { c.StreamIdleTimeout = 200 * time.Millisecond }
	e.startRunner()
	st := e.start("Think")
	d := e.waitStatus(st.SessionID, core.StatusFinished)
	streams := e.fake.requestsTo(routeStream)
	if len(streams) != 2 || streams[1].Header.Get("Last-Event-ID") != "1767323700000-1" {
		t.Fatalf("%d stream requests, last with Last-Event-ID %q", len(streams), streams[len(streams)-1].Header.Get("Last-Event-ID"))
	}
	run := deref(d.LatestRunID)
	want := []logLine{
		line(core.EventAssistant, `{"text":"Thinking hard."}`, run),
		line(core.EventResult, `{"run_status":"FINISHED","text":"Thought hard.","duration_ms":100}`, run),
		line(core.EventStatus, "finished", ""),
	}
	if diff := cmp.Diff(want, e.log(st.SessionID)[4:]); diff != "" {
		t.Errorf("event log after running (-want +got):\n%s", diff)
	}
}

// TestAdoptedPolledRunIsNotLoggedTwice: a run whose result was already read by
// polling (position "flapjack:polled") is polled again on adoption, without
// opening the stream and without logging the result again.
func TestAdoptedPolledRunIsNotLoggedTwice(t *testing.T) {
	e := newEnv(t, "expired")
	st := e.start("Go")
	agent := e.fake.addAgent(time.Now(), testRepo, true, true, "")
	_, run := e.fake.agentInfo(0)
	e.fake.expire(run)
	e.setUpstream(st.SessionID, agent, run)
	spec := e.spec(st.SessionID, st.MessageID)
	spec.RunID, spec.Adopted, spec.Session.StreamPosition = run, true, polledPosition
	sink := &memSink{}
	out, err := e.runtime().Execute(context.Background(), spec, sink)
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != core.MessageFinished || out.ResultText != "Refactored the parser." || out.PRURL != "https://github.com/acme/app/pull/7" {
		t.Errorf("outcome %+v", out)
	}
	if n := len(e.fake.requestsTo(routeStream)); n != 0 {
		t.Errorf("%d stream requests, want 0", n)
	}
	if ev := sink.all(); len(ev) != 0 {
		t.Errorf("logged %d events, want none", len(ev))
	}
}

// TestRunCancelledInCursor: a run cancelled in Cursor, not through flapjack,
// ends the message in error saying so (after waiting briefly for a cancel
// through flapjack to be recorded).
func TestRunCancelledInCursor(t *testing.T) {
	e := newEnv(t, "cancelled-upstream")
	e.startRunner()
	st := e.start("Go")
	d := e.waitStatus(st.SessionID, core.StatusCancelled)
	const want = "the Cursor run was cancelled outside flapjack"
	if m := d.Messages[0]; m.Status != core.MessageCancelled || deref(m.Error) != want {
		t.Errorf("message %s %q, want cancelled saying %q", m.Status, deref(m.Error), want)
	}
	evs := e.events(st.SessionID)
	if last := evs[len(evs)-1]; last.Type != core.EventStatus || !strings.Contains(string(last.Payload), want) {
		t.Errorf("the last status event does not give the reason: %s", last.Payload)
	}
}

// TestRunExpiredInCursor: a run that ends EXPIRED makes the session expired
// (the spec maps run statuses one to one); follow-ups are then refused.
func TestRunExpiredInCursor(t *testing.T) {
	e := newEnv(t, "expired-run")
	e.startRunner()
	st := e.start("Go")
	d := e.waitStatus(st.SessionID, core.StatusExpired)
	if m := d.Messages[0]; m.Status != core.MessageError || !strings.Contains(deref(m.Error), "expired") {
		t.Errorf("message %s %q", m.Status, deref(m.Error))
	}
	if _, err := e.svc.SendMessage(context.Background(), e.actor, st.SessionID, "again"); core.ErrorCode(err) != core.CodeSessionExpired {
		t.Errorf("follow-up on an expired session = %v, want SESSION_EXPIRED", err)
	}
}

// TestExecuteWithoutWhatItNeeds: no agent or no key is an error outcome, not
// a panic or a hang.
func TestExecuteWithoutWhatItNeeds(t *testing.T) {
	e := newEnv(t, "empty")
	st := e.start("Go")
	spec := e.spec(st.SessionID, st.MessageID)
	out, err := e.runtime().Execute(context.Background(), spec, &memSink{})
	if err != nil || out.Status != core.MessageError || out.Error == "" {
		t.Errorf("no agent: %+v, %v", out, err)
	}
	e.setUpstream(st.SessionID, "bc-1", "run-1")
	spec = e.spec(st.SessionID, st.MessageID)
	spec.RunID, spec.CursorAPIKey = "run-1", ""
	out, err = e.runtime().Execute(context.Background(), spec, &memSink{})
	if err != nil || out.Status != core.MessageError || out.Error != errNoKey {
		t.Errorf("no key: %+v, %v", out, err)
	}
	if r := e.fake.allRequests(); len(r) != 0 {
		t.Errorf("%d calls to Cursor", len(r))
	}
}

// TestIngestPositions: each logged event carries the id of the last stream
// event it covers; a coalesced message the id of its last fragment; ignored
// events move no position.
func TestIngestPositions(t *testing.T) {
	sink := &memSink{}
	in := &ingest{sink: sink, clock: core.SystemClock{}, messageID: "msg-1", runID: "run-1"}
	evs := []Event{
		{Name: evStatus, Data: []byte(`{"status":"RUNNING"}`)},
		{ID: "1", Name: evAssistant, Data: []byte(`{"text":"a"}`)},
		{ID: "2", Name: evHeartbeat, Data: []byte(`{}`)},
		{ID: "3", Name: evAssistant, Data: []byte(`{"text":"b"}`)},
		{ID: "4", Name: evInteraction, Data: []byte(`{}`)},
		{ID: "5", Name: evThinking, Data: []byte(`{"text":"t"}`)},
		{ID: "6", Name: evToolCall, Data: []byte(`{"callId":"c","name":"n","status":"running"}`)},
		{ID: "7", Name: evAssistant, Data: []byte(`{"text":"x"}`)},
		{Name: evStatus, Data: []byte(`{"status":"RUNNING"}`)}, // a re-sent status: no flush
		{ID: "8", Name: evAssistant, Data: []byte(`{"text":"y"}`)},
		{ID: "9", Name: "brand_new_event", Data: []byte(`{}`)},
		{ID: "10", Name: evStatus, Data: []byte(`{"status":"FINISHED"}`)},
		{ID: "11", Name: evDone, Data: []byte(`{}`)},
	}
	for i, ev := range evs {
		if done := in.handle(ev); done != (i == len(evs)-1) {
			t.Fatalf("event %d: done = %v", i, done)
		}
	}
	type got struct {
		Type    core.EventType
		Payload string
		Pos     string
	}
	var gots []got
	for _, ev := range sink.all() {
		gots = append(gots, got{ev.Type, string(ev.Payload), ev.StreamPosition})
	}
	want := []got{
		{core.EventAssistant, `{"text":"ab"}`, "3"},
		{core.EventThinking, `{"text":"t"}`, "5"},
		{core.EventToolCall, `{"call_id":"c","name":"n","tool":"n","status":"running","args":null,"result":null,"truncated":false}`, "6"},
		{core.EventAssistant, `{"text":"xy"}`, "8"},
	}
	if diff := cmp.Diff(want, gots); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}
