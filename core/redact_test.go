package core

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"
)

const canary = "crsr_CANARY0123456789abcdefXYZ/+q"

// jsonEscapeAll writes every character of s as a \uXXXX escape.
func jsonEscapeAll(s string) string {
	var b strings.Builder
	for _, r := range s {
		fmt.Fprintf(&b, `\u%04x`, r)
	}
	return b.String()
}

// percentAll writes every byte of s as %XX.
func percentAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}

// LeakForms lists every form of key that must never be seen; tests elsewhere
// scan for the same list (see coretest-style helpers in other packages).
func leakForms(key string) map[string]string {
	basic := base64.StdEncoding.EncodeToString([]byte(key + ":"))
	return map[string]string{
		"plain":            key,
		"basic":            "Basic " + basic,
		"basic-base64":     basic,
		"basic-url":        base64.URLEncoding.EncodeToString([]byte(key + ":")),
		"base64":           base64.StdEncoding.EncodeToString([]byte(key)),
		"base64-raw":       base64.RawStdEncoding.EncodeToString([]byte(key)),
		"base64-url":       base64.URLEncoding.EncodeToString([]byte(key)),
		"base64-url-raw":   base64.RawURLEncoding.EncodeToString([]byte(key)),
		"json-escaped":     jsonEscapeAll(key),
		"json-first-char":  jsonEscapeAll(key[:1]) + key[1:],
		"json-marshal":     strings.Trim(string(mustJSON(key)), `"`),
		"url-query":        url.QueryEscape(key),
		"url-path":         url.PathEscape(key),
		"url-all":          percentAll(key),
		"prefix-12":        key[:12],
		"prefix-19":        key[:19],
		"basic-prefix-16":  basic[:16],
		"escaped-slash":    strings.ReplaceAll(key, "/", `\/`),
		"mixed-escapes":    key[:3] + `\u00` + fmt.Sprintf("%02x", key[3]) + "%" + fmt.Sprintf("%02X", key[4]) + key[5:],
		"json-in-json":     strings.Trim(string(mustJSON(`{"k":"`+jsonEscapeAll(key)+`"}`)), `"`),
		"surrogate-padded": key + "\U0001F600",
		"basic-user-1":     base64.StdEncoding.EncodeToString([]byte("u:" + key + ":")),
		"basic-user-2":     base64.StdEncoding.EncodeToString([]byte("us:" + key)),
		"url-base64-off-1": base64.RawURLEncoding.EncodeToString([]byte("xy" + key)),
	}
}

func TestRedactorHidesEveryForm(t *testing.T) {
	r := NewRedactor(canary)
	for name, form := range leakForms(canary) {
		t.Run(name, func(t *testing.T) {
			text := "before " + form + " after"
			got := r.String(text)
			if !strings.Contains(got, Redacted) {
				t.Fatalf("no redaction in %q", got)
			}
			if !strings.HasPrefix(got, "before ") || !strings.HasSuffix(got, " after") && name != "surrogate-padded" {
				t.Errorf("text around the secret changed: %q", got)
			}
			for fname, f := range leakForms(canary) {
				if strings.Contains(got, f) {
					t.Errorf("form %s still present in %q", fname, got)
				}
			}
		})
	}
}

func TestRedactorKeepsJSONValid(t *testing.T) {
	r := NewRedactor(canary)
	for name, form := range leakForms(canary) {
		doc, _ := json.Marshal(map[string]any{"args": map[string]string{"header": "Authorization: " + form}, "n": 1})
		// Also the escaped form as it would appear if the agent wrote it in JSON.
		raw := json.RawMessage(`{"a":"` + strings.ReplaceAll(form, `"`, `\"`) + `"}`)
		for _, d := range []json.RawMessage{doc, raw} {
			if !json.Valid(d) {
				continue
			}
			got := r.JSON(d)
			if !json.Valid(got) {
				t.Errorf("%s: invalid JSON after redaction: %s", name, got)
			}
			if bytes.Contains(got, []byte(canary[:12])) {
				t.Errorf("%s: key prefix left in %s", name, got)
			}
		}
	}
}

func TestRedactorLeavesOtherTextAlone(t *testing.T) {
	r := NewRedactor(canary, "short")
	for _, s := range []string{"", "hello world", "crsr_", canary[:11], `{"x":"\u0063rs"}`, "100%", `C:\users\`} {
		if got := r.String(s); got != s {
			t.Errorf("String(%q) = %q, want unchanged", s, got)
		}
	}
	// A one-letter secret is ignored rather than eating that letter everywhere.
	r2 := NewRedactor("e")
	if got := r2.String("every letter e"); got != "every letter e" {
		t.Errorf("short secret redacted: %q", got)
	}
	var nilR *Redactor
	if got := nilR.String(canary); got != canary {
		t.Errorf("nil redactor changed text")
	}
}

func TestRedactorAddRelease(t *testing.T) {
	r := NewRedactor()
	key := "session_key_0123456789abcdef"
	release := r.Add(key)
	release2 := r.Add(key)
	if got := r.String(key); got != Redacted {
		t.Fatalf("added key not redacted: %q", got)
	}
	release()
	release() // a second call of the same release does nothing
	if got := r.String(key); got != Redacted {
		t.Fatalf("key released while still held: %q", got)
	}
	release2()
	if got := r.String(key); got != key {
		t.Fatalf("released key still redacted: %q", got)
	}
	w := r.With(key)
	if got := w.String(key); got != Redacted {
		t.Fatalf("With key not redacted: %q", got)
	}
}

func TestRedactorError(t *testing.T) {
	r := NewRedactor(canary)
	e := &Error{Code: CodeCursorCancelFailed, Message: "upstream said " + canary, cause: errors.New("Basic " + base64.StdEncoding.EncodeToString([]byte(canary+":")))}
	got := r.Error(e)
	var ge *Error
	if !errors.As(got, &ge) || ge.Code != CodeCursorCancelFailed {
		t.Fatalf("code lost: %v", got)
	}
	if strings.Contains(ge.Message, canary) || strings.Contains(errors.Unwrap(ge).Error(), "Basic Y3") {
		t.Errorf("secret left: %q / %q", ge.Message, errors.Unwrap(ge))
	}
	plain := r.Error(fmt.Errorf("wrapped: %s", canary))
	if strings.Contains(plain.Error(), canary) {
		t.Errorf("plain error kept secret: %v", plain)
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

func TestRedactHandler(t *testing.T) {
	var buf bytes.Buffer
	r := NewRedactor(canary)
	log := slog.New(RedactHandler(slog.NewJSONHandler(&buf, nil), r))
	log = log.With("pre", "k="+canary)
	log.Info("msg "+canary, "err", errors.New(canary), "s", canary, "str", stringer(canary), "b", []byte(canary),
		slog.Group("g", "inner", base64.StdEncoding.EncodeToString([]byte(canary+":"))))
	log.WithGroup("grp").Warn("x", "v", jsonEscapeAll(canary))
	out := buf.String()
	for name, f := range leakForms(canary) {
		if strings.Contains(out, f) {
			t.Errorf("form %s in log: %s", name, out)
		}
	}
	if strings.Count(out, Redacted) < 7 {
		t.Errorf("expected at least 7 redactions, got log %s", out)
	}
}

// TestRedactHandlerPassesCleanRecords: a record with no secret reaches the
// next handler as the full path would have written it, and a secret in any
// one place of an otherwise clean record (the message, the last of many
// attributes, a value of any kind) is still redacted.
func TestRedactHandlerPassesCleanRecords(t *testing.T) {
	r := NewRedactor(canary)
	at := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	clean := []any{"method", "GET", "path", "/api/code-sessions/cs-1", "status", 200, "ms", 1.5, "bytes", int64(12),
		"ok", true, "took", time.Second, "at", at, "n", uint64(7)}
	var fast, full bytes.Buffer
	slog.New(RedactHandler(slog.NewJSONHandler(&fast, nil), r)).Info("request", clean...)
	// The full path, forced by an attribute it must resolve: the same line
	// but for that attribute.
	slog.New(RedactHandler(slog.NewJSONHandler(&full, nil), r)).Info("request", append(clean, "g", slog.GroupValue())...)
	if got, want := fast.String(), strings.Replace(full.String(), `,"g":{}`, "", 1); stripTime(got) != stripTime(want) {
		t.Errorf("a clean record came out as\n%s\nwant\n%s", got, want)
	}
	for i, secretAt := range []func([]any) (string, []any){
		func(a []any) (string, []any) { return "request " + canary, a },
		func(a []any) (string, []any) { return "request", append(a, "last", "x"+canary) },
		func(a []any) (string, []any) { return "request", append(a, "err", errors.New(canary)) },
		func(a []any) (string, []any) { return "request", append(a, "str", stringer(canary)) },
		func(a []any) (string, []any) { return "request", append(a, "b", []byte(canary)) },
		func(a []any) (string, []any) { return "request", append(a, slog.Group("g", "k", canary)) },
	} {
		var buf bytes.Buffer
		msg, attrs := secretAt(append([]any(nil), clean...))
		slog.New(RedactHandler(slog.NewTextHandler(&buf, nil), r)).Info(msg, attrs...)
		if strings.Contains(buf.String(), canary) || !strings.Contains(buf.String(), Redacted) {
			t.Errorf("case %d: %s", i, buf.String())
		}
	}
}

// stripTime drops the "time" field of a JSON log line.
func stripTime(line string) string {
	if i := strings.Index(line, `"time":"`); i >= 0 {
		if j := strings.Index(line[i+8:], `"`); j >= 0 {
			return line[:i] + line[i+8+j+1:]
		}
	}
	return line
}

func FuzzRedactor(f *testing.F) {
	f.Add("x " + canary + " y")
	f.Add(jsonEscapeAll(canary))
	f.Add(`\u` + canary)
	f.Add("%")
	f.Fuzz(func(t *testing.T, s string) {
		r := NewRedactor(canary)
		got := r.String(s)
		if strings.Contains(got, canary) {
			t.Fatalf("canary survived: %q", got)
		}
		if !strings.Contains(s, canary[:12]) && !strings.ContainsAny(s, `\%`) && got != s {
			// Without a prefix or an escape, nothing can match a base64 form
			// unless it is there literally.
			b := base64.StdEncoding.EncodeToString([]byte(canary))
			u := base64.URLEncoding.EncodeToString([]byte(canary))
			if !strings.Contains(s, b[:16]) && !strings.Contains(s, u[:16]) {
				t.Fatalf("changed text without a secret: %q -> %q", s, got)
			}
		}
	})
}

func BenchmarkRedactorEvent(b *testing.B) {
	r := NewRedactor(canary, "ghp_0123456789abcdefghijABCDEFGHIJ0123", "bWFzdGVya2V5bWFzdGVya2V5bWFzdGVya2V5MTIzNA==")
	plain := []byte(`{"text":"I will now edit the file main.go and run the tests; all 42 tests pass."}`)
	escaped := []byte(`{"text":"if a \u003c b \u0026\u0026 c \u003e d { return }","path":"a\/b"}`)
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.JSON(plain)
		}
	})
	b.Run("escaped", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.JSON(escaped)
		}
	})
}
