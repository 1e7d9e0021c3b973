package core

import (
	"errors"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOnlyTransitionsAssignStatus type-checks package core and fails on any
// assignment to a Session's or Message's Status, or a Session's Archived,
// outside transitions.go: every status change goes through a transition
// function. (This is how a reader can check that no status is assigned
// anywhere else: run it.)
func TestOnlyTransitionsAssignStatus(t *testing.T) {
	fset := token.NewFileSet()
	var files []*ast.File
	names, _ := filepath.Glob("*.go")
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}}
	conf := types.Config{Importer: importer.ForCompiler(fset, "source", nil)}
	if _, err := conf.Check("github.com/flapjack-dev/flapjack/core", fset, files, info); err != nil {
		t.Fatal(err)
	}
	guarded := map[string][]string{"Session": {"Status", "Archived"}, "Message": {"Status"}}
	found := 0
	for _, f := range files {
		file := filepath.Base(fset.Position(f.Pos()).Filename)
		ast.Inspect(f, func(n ast.Node) bool {
			as, ok := n.(*ast.AssignStmt)
			if !ok {
				return true
			}
			for _, lhs := range as.Lhs {
				sel, ok := lhs.(*ast.SelectorExpr)
				if !ok {
					continue
				}
				tv, ok := info.Types[sel.X]
				if !ok {
					continue
				}
				typ := tv.Type
				if p, ok := typ.(*types.Pointer); ok {
					typ = p.Elem()
				}
				named, ok := typ.(*types.Named)
				if !ok {
					continue
				}
				for _, field := range guarded[named.Obj().Name()] {
					if sel.Sel.Name != field {
						continue
					}
					found++
					if file != "transitions.go" {
						t.Errorf("%s: %s.%s assigned outside the transition functions", fset.Position(as.Pos()), named.Obj().Name(), field)
					}
				}
			}
			return true
		})
	}
	if found == 0 {
		t.Fatal("found no status assignment at all: the check is broken")
	}
}

// TestTransitionFunctions runs every operation on every status (archived or
// not): each either makes a change the table allows, or answers its
// documented error.
func TestTransitionFunctions(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	msgs := func(statuses ...MessageStatus) []Message {
		var out []Message
		for i, st := range statuses {
			out = append(out, Message{ID: "msg-" + string(rune('a'+i)), Status: st})
		}
		return out
	}
	type op struct {
		name   string
		decide func(Session) (Change, error)
		// allowed says for which statuses (unarchived) it must succeed;
		// code is the error it gives otherwise ("" for any internal one).
		allowed []Status
		code    Code
	}
	ops := []op{
		{"follow-up", func(s Session) (Change, error) { return decideFollowUp(s, Message{ID: "msg-new"}, now) },
			[]Status{StatusPending, StatusCreating, StatusRunning, StatusFinished, StatusError, StatusCancelled}, CodeSessionExpired},
		{"cancel", func(s Session) (Change, error) { return decideCancel(s, msgs(MessageRunning, MessageQueued), now) },
			[]Status{StatusPending, StatusCreating, StatusRunning}, CodeSessionNotActive},
		{"archive", func(s Session) (Change, error) { return decideArchive(s, now) },
			[]Status{StatusFinished, StatusError, StatusCancelled, StatusExpired}, CodeSessionActive},
		{"expire", func(s Session) (Change, error) { return decideExpire(s, now, "ttl") },
			[]Status{StatusFinished, StatusError, StatusCancelled}, ""},
		{"prepare", func(s Session) (Change, error) { return decidePrepare(s, now) },
			[]Status{StatusPending}, ""},
		{"resume queued", func(s Session) (Change, error) { return decideResumeQueued(s, now) },
			[]Status{StatusFinished, StatusError, StatusCancelled}, ""},
		{"run start", func(s Session) (Change, error) {
			ch, _, _, err := decideRunStart(s, Message{ID: "msg-a", Status: MessageQueued}, "run-1", "", now)
			return ch, err
		}, []Status{StatusCreating, StatusRunning}, ""},
		{"outcome finished", func(s Session) (Change, error) {
			return decideOutcome(s, msgs(MessageRunning), "msg-a", RunOutcome{Status: MessageFinished}, now)
		}, AllStatuses(), ""},
		{"outcome expired upstream", func(s Session) (Change, error) {
			return decideOutcome(s, msgs(MessageRunning, MessageQueued), "msg-a", RunOutcome{Status: MessageError, Expired: true, Error: "expired"}, now)
		}, AllStatuses(), ""},
		{"end in error", func(s Session) (Change, error) { return decideEnd(s, StatusError, "no message", now) },
			[]Status{StatusPending, StatusCreating, StatusRunning}, ""},
	}
	for _, o := range ops {
		for _, st := range AllStatuses() {
			for _, archived := range []bool{false, true} {
				s := Session{ID: "cs-1", Status: st, Archived: archived}
				ch, err := o.decide(s)
				want := !archived && contains(o.allowed, st)
				if o.name == "archive" && archived {
					want = false // already archived: errNoChange
				}
				if o.name == "follow-up" && archived {
					want = false
				}
				if strings.HasPrefix(o.name, "outcome") {
					// Recorded whatever the session's state, as long as
					// the table allows the move it makes.
					if err != nil && !errors.Is(err, errBadTransition) {
						t.Errorf("%s on %s: %v", o.name, st, err)
					}
					continue
				}
				switch {
				case want && err != nil:
					t.Errorf("%s on %s (archived %v) = %v, want a change", o.name, st, archived, err)
				case !want && err == nil:
					t.Errorf("%s on %s (archived %v) made a change, want a refusal", o.name, st, archived)
				case !want && o.code != "" && !archived && st != StatusExpired && ErrorCode(err) != o.code && o.name != "follow-up":
					t.Errorf("%s on %s = %v, want %s", o.name, st, err, o.code)
				}
				if err == nil && ch.Session.Status != st && !CanTransition(st, ch.Session.Status) {
					t.Errorf("%s moved %s → %s, which the table does not allow", o.name, st, ch.Session.Status)
				}
			}
		}
	}
	// Specific outcomes.
	ch, _ := decideOutcome(Session{Status: StatusRunning}, msgs(MessageRunning, MessageQueued), "msg-a", RunOutcome{Status: MessageError, Expired: true, Error: "the run expired"}, now)
	if ch.Session.Status != StatusExpired || len(ch.Messages) != 2 || ch.Messages[1].Status != MessageCancelled {
		t.Errorf("expired upstream: session %s, messages %+v", ch.Session.Status, ch.Messages)
	}
	ch, _ = decideOutcome(Session{Status: StatusRunning}, msgs(MessageRunning, MessageQueued), "msg-a", RunOutcome{Status: MessageFinished}, now)
	if ch.Session.Status != StatusRunning {
		t.Errorf("a queued message keeps the session running, got %s", ch.Session.Status)
	}
	ch, _ = decideOutcome(Session{Status: StatusRunning}, msgs(MessageRunning), "msg-a", RunOutcome{Status: MessageCancelled, Error: "cancelled in Cursor"}, now)
	if ch.Session.Status != StatusCancelled || !strings.Contains(string(ch.Events[len(ch.Events)-1].Payload), "cancelled in Cursor") {
		t.Errorf("cancelled upstream: %s %s", ch.Session.Status, ch.Events[len(ch.Events)-1].Payload)
	}
}

func contains(list []Status, s Status) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestArchiveMark: a mark holds follow-ups off while it is fresh and lapses
// after ArchiveLease; only its own archiver removes it; the archive clears
// it; an active or archived session is not marked.
func TestArchiveMark(t *testing.T) {
	now := time.Date(2026, 5, 6, 12, 0, 0, 123456789, time.UTC)
	s := Session{ID: "cs-1", Status: StatusFinished}
	ch, err := decideArchiveMark(s, now)
	if err != nil {
		t.Fatal(err)
	}
	mark := *ch.Session.ArchivingAt
	if !mark.Equal(now.Truncate(time.Millisecond)) || len(ch.Events) != 0 {
		t.Fatalf("mark %v, events %v", mark, ch.Events)
	}
	marked := ch.Session
	if _, err := decideFollowUp(marked, Message{ID: "m"}, now.Add(ArchiveLease-time.Second)); ErrorCode(err) != CodeSessionArchived {
		t.Errorf("follow-up under a fresh mark = %v, want SESSION_ARCHIVED", err)
	}
	if _, err := decideFollowUp(marked, Message{ID: "m"}, now.Add(ArchiveLease)); err != nil {
		t.Errorf("follow-up after the mark lapsed = %v", err)
	}
	if _, err := decideArchiveUnmark(marked, mark.Add(time.Millisecond)); !errors.Is(err, errNoChange) {
		t.Errorf("another archiver's unmark = %v, want no change", err)
	}
	ch, err = decideArchiveUnmark(marked, mark)
	if err != nil || ch.Session.ArchivingAt != nil {
		t.Errorf("own unmark = %+v, %v", ch.Session.ArchivingAt, err)
	}
	ch, err = decideArchive(marked, now)
	if err != nil || ch.Session.ArchivingAt != nil || !ch.Session.Archived {
		t.Errorf("archive of a marked session = %+v, %v", ch.Session, err)
	}
	for _, st := range []Status{StatusPending, StatusCreating, StatusRunning} {
		if _, err := decideArchiveMark(Session{Status: st}, now); ErrorCode(err) != CodeSessionActive {
			t.Errorf("mark of a %s session = %v, want SESSION_ACTIVE", st, err)
		}
	}
	if _, err := decideArchiveMark(Session{Status: StatusFinished, Archived: true}, now); !errors.Is(err, errNoChange) {
		t.Errorf("mark of an archived session = %v, want no change", err)
	}
}
