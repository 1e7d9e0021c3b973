package core_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flapjack-dev/flapjack/core"
)

// tagReference is v as encoding/json writes it from the struct tags alone,
// every time.Time (also behind a pointer) in TimeFormat: what the
// hand-written JSON of sessions and messages must equal.
func tagReference(t *testing.T, v reflect.Value) any {
	t.Helper()
	var walk func(v reflect.Value) any
	walk = func(v reflect.Value) any {
		switch {
		case v.Type() == reflect.TypeFor[time.Time]():
			return core.FormatTime(v.Interface().(time.Time))
		case v.Kind() == reflect.Pointer && v.Type().Elem() == reflect.TypeFor[time.Time]():
			if v.IsNil() {
				return nil
			}
			return walk(v.Elem())
		case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
			if v.IsNil() {
				return nil
			}
			out := []any{}
			for i := range v.Len() {
				out = append(out, walk(v.Index(i)))
			}
			return out
		case v.Kind() == reflect.Struct && v.Type() != reflect.TypeFor[core.Usage]():
			out := map[string]any{}
			for i := range v.NumField() {
				f := v.Type().Field(i)
				if f.Anonymous {
					for k, x := range walk(v.Field(i)).(map[string]any) {
						out[k] = x
					}
					continue
				}
				name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				if name == "-" || !f.IsExported() {
					continue
				}
				out[name] = walk(v.Field(i))
			}
			return out
		}
		raw, err := json.Marshal(v.Interface())
		if err != nil {
			t.Fatal(err)
		}
		var x any
		json.Unmarshal(raw, &x)
		return x
	}
	return walk(v)
}

// fill sets every field of the struct v points to, recursively, to a
// non-zero value built from s (a hostile string); a field of a kind it does
// not know fails the test, so a new field cannot go unchecked.
func fill(t *testing.T, v reflect.Value, s string) {
	t.Helper()
	switch {
	case v.Type() == reflect.TypeFor[time.Time]():
		v.Set(reflect.ValueOf(time.UnixMilli(1_780_000_123_456).In(time.FixedZone("x", -5*3600))))
		return
	case v.Type() == reflect.TypeFor[map[string]any]():
		v.Set(reflect.ValueOf(map[string]any{"temperature": 0.25, "note": s, "nested": map[string]any{"n": 3}}))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int64:
		v.SetInt(1_234_567_890_123)
	case reflect.Float64:
		v.SetFloat(0.0125)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), s)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			v.SetBytes([]byte(s))
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		fill(t, v.Index(0), s)
		fill(t, v.Index(1), s+"2")
	case reflect.Struct:
		for i := range v.NumField() {
			fill(t, v.Field(i), s)
		}
	default:
		t.Fatalf("fill: a field of kind %s (%s): teach fill and the hand-written JSON about it", v.Kind(), v.Type())
	}
}

// TestSessionJSONMatchesTheTags: sessions, session details and messages
// written in one buffer are valid JSON equal to what encoding/json makes of
// their tags, with every field set (hostile strings included) and with
// every pointer nil; HTML characters are escaped as encoding/json does.
func TestSessionJSONMatchesTheTags(t *testing.T) {
	hostile := []string{"plain", `q"uote`, `back\slash`, "ctl\x00\x1f\n\t", "<script>alert(1)</script>", "a&b", "é ✓ 🚀", "bad\xffutf8", "\u2028\u2029"}
	check := func(t *testing.T, v any, raw []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(raw) {
			t.Fatalf("not JSON: %s", raw)
		}
		if strings.ContainsAny(string(raw), "<>&\u2028\u2029") {
			t.Errorf("HTML characters or line separators are not escaped: %s", raw)
		}
		var got any
		json.Unmarshal(raw, &got)
		if diff := cmp.Diff(tagReference(t, reflect.ValueOf(v)), got); diff != "" {
			t.Errorf("differs from encoding/json's (-want +got):\n%s", diff)
		}
	}
	for _, s := range hostile {
		var full core.SessionDetail
		fill(t, reflect.ValueOf(&full).Elem(), s)
		raw, err := full.MarshalJSON()
		check(t, full, raw, err)
		raw, err = full.Session.MarshalJSON()
		check(t, full.Session, raw, err)
		raw, err = full.Messages[0].MarshalJSON()
		check(t, full.Messages[0], raw, err)
		// Through encoding/json, as the MCP SDK and a list encode them.
		raw, err = json.Marshal([]core.Session{full.Session})
		if err != nil {
			t.Fatal(err)
		}
		var list []any
		json.Unmarshal(raw, &list)
		if len(list) != 1 || cmp.Diff(tagReference(t, reflect.ValueOf(full.Session)), list[0]) != "" {
			t.Errorf("a session inside a list differs: %s", raw)
		}
	}
	// Every pointer nil, no messages: nulls where encoding/json writes them.
	var empty core.SessionDetail
	raw, err := empty.MarshalJSON()
	check(t, empty, raw, err)
	empty.Messages = []core.Message{{}}
	raw, err = empty.MarshalJSON()
	check(t, empty, raw, err)
}
