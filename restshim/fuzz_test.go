package restshim

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/flapjack-dev/flapjack/core"
)

// The fuzz targets decode every request body the API takes. Seeds live in
// testdata/fuzz/<target>/ at the repository root as plain JSON files; a
// normal test run executes them, and `go test -fuzz=FuzzStartSessionBody
// ./restshim/` explores from them (new failures land in restshim/testdata/fuzz).

func FuzzCreateAgentBody(f *testing.F) {
	fuzzBody[core.CreateAgentInput](f, createAgentSpec())
}

func FuzzUpdateAgentBody(f *testing.F) { fuzzBody[core.AgentFields](f, updateAgentSpec()) }

func FuzzStartSessionBody(f *testing.F) {
	fuzzBody[core.StartSessionInput](f, startSessionSpec())
}

func FuzzUpdateSessionBody(f *testing.F) {
	fuzzBody[updateSessionBody](f, updateSessionSpec())
}

func FuzzSendMessageBody(f *testing.F) { fuzzBody[sendMessageBody](f, sendMessageSpec()) }

func FuzzEmptyBody(f *testing.F) { fuzzBody[emptyBody](f, emptySpec()) }

// fuzzBody checks decodeBody's contract on any input: it never panics; a
// refusal is a VALIDATION_ERROR with status 400 or 413; an acceptance is one
// valid JSON object (or nothing) whose keys are all allowed and spelled
// exactly, with null only where allowed, and which decodes to a value that
// survives a round trip through JSON and decodeBody again.
// Duplicate keys are not re-checked here (encoding/json cannot see them);
// the seeds and TestStrictBodies hold them.
func fuzzBody[T any](f *testing.F, spec bodySpec) {
	dir := filepath.Join("..", "testdata", "fuzz", f.Name())
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		f.Fatalf("no seeds in %s: %v", dir, err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var v T
		keys, err := decodeBody(body, spec, &v)
		if err != nil {
			status, code := errorStatus(err)
			if code != core.CodeValidation || (status != http.StatusBadRequest && status != http.StatusRequestEntityTooLarge) {
				t.Fatalf("refusal %v has status %d code %s", err, status, code)
			}
			return
		}
		trimmed := bytes.TrimSpace(body)
		if len(trimmed) == 0 {
			return
		}
		var m map[string]json.RawMessage
		if !json.Valid(trimmed) || json.Unmarshal(trimmed, &m) != nil || m == nil {
			t.Fatalf("accepted a body that is not one JSON object: %q", body)
		}
		for k, raw := range m {
			if !spec.has(k) || !keys.present[k] {
				t.Fatalf("accepted unknown or unrecorded field %q in %q", k, body)
			}
			if string(raw) == "null" && !spec.canBeNull(k) {
				t.Fatalf("accepted null for %q", k)
			}
		}
		if len(keys.present) != len(m) {
			t.Fatalf("saw %d keys, the body has %d distinct ones: %q", len(keys.present), len(m), body)
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var w T
		if _, err := decodeBody(again, spec, &w); err != nil {
			t.Fatalf("re-encoded %s is refused: %v", again, err)
		}
		// Compared as JSON: omitempty fields make {} and absent one encoding.
		if twice, _ := json.Marshal(w); !bytes.Equal(again, twice) {
			t.Fatalf("round trip changed %s into %s", again, twice)
		}
	})
}

// errorStatus is the status and code writeError would answer with.
func errorStatus(err error) (int, core.Code) {
	var se *statusError
	if errors.As(err, &se) {
		return se.status, se.err.Code
	}
	e := core.AsError(err)
	return e.Code.HTTPStatus(), e.Code
}
