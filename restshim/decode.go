package restshim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/flapjack-dev/flapjack/core"
)

// MaxBodyBytes bounds every request body; larger bodies get 413.
const MaxBodyBytes = 1 << 20

// bodySpec says which top-level fields a request body may have, spelled
// exactly, and which of them may be null.
type bodySpec struct {
	fields   []string
	nullable []string
}

func (s bodySpec) has(name string) bool {
	for _, f := range s.fields {
		if f == name {
			return true
		}
	}
	return false
}

func (s bodySpec) canBeNull(name string) bool {
	for _, f := range s.nullable {
		if f == name {
			return true
		}
	}
	return false
}

// errTooLarge is the 413 answer; its code is VALIDATION_ERROR like every
// other malformed request, its status says what is wrong.
func errTooLarge() error {
	return &statusError{status: http.StatusRequestEntityTooLarge,
		err: core.Errorf(core.CodeValidation, "request body: must be at most %d bytes", MaxBodyBytes)}
}

func badBody(format string, args ...any) *core.Error {
	return core.Errorf(core.CodeValidation, "request body: "+format, args...)
}

// readBody reads at most MaxBodyBytes of a JSON request body.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge()
		}
		return nil, badBody("could not be read")
	}
	if ct := r.Header.Get("Content-Type"); len(bytes.TrimSpace(b)) > 0 && ct != "" && !isJSON(ct) {
		return nil, &statusError{status: http.StatusUnsupportedMediaType,
			err: core.Errorf(core.CodeValidation, "Content-Type: must be application/json")}
	}
	return b, nil
}

// isJSON reports whether a Content-Type names JSON (parameters allowed).
func isJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}

// bodyKeys are the top-level keys a body had, and which of them were null:
// for PATCH, absent means "leave alone" and null means "clear".
type bodyKeys struct {
	present map[string]bool
	null    map[string]bool
}

// decodeBody decodes a JSON object strictly into dst (a pointer to a
// struct): before anything is stored, it rejects invalid UTF-8, anything but
// one object, trailing data, unknown fields, fields spelled in another case,
// duplicate keys (at any depth; at the top level also keys that differ only
// in case, which encoding/json would silently merge), nulls where a field is
// not nullable, and values of the wrong type. An empty body is {}.
func decodeBody(body []byte, spec bodySpec, dst any) (bodyKeys, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if len(body) > MaxBodyBytes {
		return bodyKeys{}, errTooLarge()
	}
	if !utf8.Valid(body) {
		return bodyKeys{}, badBody("must be UTF-8")
	}
	keys, cerr := checkTokens(body, spec)
	if cerr != nil {
		return bodyKeys{}, cerr
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return bodyKeys{}, typeError(err)
	}
	return keys, nil
}

// checkTokens walks the body's tokens once, checking its structure and keys.
func checkTokens(body []byte, spec bodySpec) (bodyKeys, *core.Error) {
	keys := bodyKeys{present: map[string]bool{}, null: map[string]bool{}}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return keys, badBody("is not valid JSON")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return keys, badBody("must be a JSON object")
	}
	// One frame per open object or array. Objects remember their keys; the
	// top level compares them case-folded.
	type frame struct {
		object   bool
		keys     map[string]bool
		needsKey bool
	}
	stack := []frame{{object: true, keys: map[string]bool{}, needsKey: true}}
	var topKey string
	for len(stack) > 0 {
		tok, err := dec.Token()
		if err != nil {
			return keys, badBody("is not valid JSON")
		}
		top := &stack[len(stack)-1]
		if top.object && top.needsKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				if len(stack) > 0 {
					stack[len(stack)-1].needsKey = stack[len(stack)-1].object
				}
				continue
			}
			key, ok := tok.(string)
			if !ok {
				return keys, badBody("is not valid JSON")
			}
			k := key
			if len(stack) == 1 {
				k = foldKey(key)
			}
			if top.keys[k] {
				if len(stack) == 1 {
					return keys, badBody("duplicate field %q (field names are compared ignoring case)", clip(key))
				}
				return keys, badBody("duplicate key %q", clip(key))
			}
			top.keys[k] = true
			if len(stack) == 1 {
				if !spec.has(key) {
					return keys, badBody("unknown field %q%s", clip(key), suggestion(spec, key))
				}
				topKey = key
				keys.present[key] = true
			}
			top.needsKey = false
			continue
		}
		// A value: in an object it is followed by a key again.
		if top.object {
			top.needsKey = true
		}
		if len(stack) == 1 && tok == nil && spec.canBeNull(topKey) {
			// null on a field where it means something (a webhook URL
			// cleared); anywhere else null means omitted, as over MCP.
			keys.null[topKey] = true
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{':
				stack = append(stack, frame{object: true, keys: map[string]bool{}, needsKey: true})
			case '[':
				stack = append(stack, frame{})
			case ']':
				stack = stack[:len(stack)-1]
				if len(stack) > 0 {
					stack[len(stack)-1].needsKey = stack[len(stack)-1].object
				}
			}
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return keys, badBody("must hold exactly one JSON object (found data after it)")
	}
	return keys, nil
}

// foldKey maps a key to one spelling for all its case variants, with the
// same Unicode simple folding encoding/json uses to match field names (so
// "ſkipReviewerRequest", with a long s, counts as a variant too).
func foldKey(s string) string {
	var b strings.Builder
	for _, r := range s {
		low := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			low = min(low, f)
		}
		b.WriteRune(low)
	}
	return b.String()
}

// suggestion names the field a wrongly spelled key probably meant.
func suggestion(spec bodySpec, key string) string {
	for _, f := range spec.fields {
		if foldKey(f) == foldKey(key) {
			return fmt.Sprintf(" (did you mean %q?)", f)
		}
	}
	return ""
}

// typeError turns a decoding error into a VALIDATION_ERROR naming the field.
func typeError(err error) *core.Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		field := te.Field
		if i := strings.LastIndexByte(field, '.'); i >= 0 {
			field = field[i+1:]
		}
		// te.Value can carry the literal ("number 123..."): name only its kind,
		// since the field may be a secret (cursorApiKey) given the wrong type.
		kind, _, _ := strings.Cut(te.Value, " ")
		return core.Errorf(core.CodeValidation, "%s: must be %s, not %s", field, jsonKind(te.Type), kind)
	}
	return badBody("is not valid for this operation")
}

// jsonKind names the JSON type a Go type is decoded from.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Float64:
		return "a number"
	}
	return "another type"
}

// clip bounds a client-supplied string quoted in a message.
func clip(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return strings.ToValidUTF8(s[:limit], "") + "…"
}

// query reads the query string strictly: only the named parameters, each at
// most once, so a typo is an error instead of a silently ignored filter.
func query(r *http.Request, allowed ...string) (url.Values, *core.Error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, core.Errorf(core.CodeValidation, "query string: is malformed")
	}
	for k, v := range q {
		known := false
		for _, a := range allowed {
			known = known || a == k
		}
		if !known {
			if len(allowed) == 0 {
				return nil, core.Errorf(core.CodeValidation, "%s: unknown query parameter; this operation takes none", clip(k))
			}
			return nil, core.Errorf(core.CodeValidation, "%s: unknown query parameter; this operation takes %s", clip(k), strings.Join(allowed, ", "))
		}
		if len(v) > 1 {
			return nil, core.Errorf(core.CodeValidation, "%s: must be given at most once", k)
		}
	}
	return q, nil
}

// intParam parses an optional integer query parameter.
func intParam(q url.Values, name string) (*int64, *core.Error) {
	if !q.Has(name) {
		return nil, nil
	}
	n, err := strconv.ParseInt(q.Get(name), 10, 64)
	if err != nil {
		return nil, core.Errorf(core.CodeValidation, "%s: must be an integer", name)
	}
	return &n, nil
}

// boolParam parses an optional "true"/"false" query parameter.
func boolParam(q url.Values, name string) (*bool, *core.Error) {
	if !q.Has(name) {
		return nil, nil
	}
	switch q.Get(name) {
	case "true":
		v := true
		return &v, nil
	case "false":
		v := false
		return &v, nil
	}
	return nil, core.Errorf(core.CodeValidation, "%s: must be \"true\" or \"false\"", name)
}
