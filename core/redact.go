package core

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// Redacted replaces a secret wherever one is found.
const Redacted = "[REDACTED]"

const (
	// MinCursorKeyLen is the shortest Cursor API key accepted. Redaction of a
	// shorter key would eat ordinary words; real keys are far longer.
	MinCursorKeyLen = 16
	// minRedactLen is the shortest secret the Redactor looks for: a shorter one
	// (a stray one-letter GITHUB_TOKEN) would mangle every text it touches.
	minRedactLen = 8
	// plainAnchor and encodedAnchor are how much of a secret's start must be
	// present for a match: a line cut in the middle of a key still loses the
	// part that is left. 16 base64 characters encode the first 12 bytes.
	plainAnchor   = 12
	encodedAnchor = 16
)

// Redactor hides secrets in anything that leaves flapjack: event payloads,
// errors, upstream messages, API responses and log records. It knows each
// secret in every form it takes on the wire or on disk: plain, base64 of the
// secret and of "secret:" (HTTP Basic, with or without "Basic "), standard and
// URL-safe, padded or not; and through JSON \uXXXX and \/ escapes and URL
// %XX escapes in any mix. A prefix of a form is enough (12 characters of the
// plain secret, 16 of an encoded one), so a cut-off secret is hidden too.
//
// A nil *Redactor redacts nothing. Methods are safe for concurrent use.
type Redactor struct {
	mu       sync.RWMutex
	secrets  map[string]int // secret → holders (permanent ones hold forever)
	patterns []pattern
}

// pattern is one form of one secret: a match starts with full[:anchor] and
// runs as far as the text keeps agreeing with full.
type pattern struct {
	full   []byte
	anchor int
}

// NewRedactor returns a Redactor that hides secrets for its whole life.
// Empty and too-short secrets are ignored.
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{secrets: map[string]int{}}
	for _, s := range secrets {
		r.Add(s)
	}
	return r
}

// Add hides secret until release is called (a run's key while the run lasts,
// so log records written during it are covered). Adding the same secret twice
// needs two releases.
func (r *Redactor) Add(secret string) (release func()) {
	if r == nil || len(secret) < minRedactLen {
		return func() {}
	}
	r.mu.Lock()
	r.secrets[secret]++
	r.rebuild()
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.secrets[secret]--; r.secrets[secret] <= 0 {
				delete(r.secrets, secret)
				r.rebuild()
			}
		})
	}
}

// With returns a new Redactor with r's secrets and more, for one caller's use
// (a cloud client that knows its own key).
func (r *Redactor) With(secrets ...string) *Redactor {
	out := NewRedactor(secrets...)
	if r != nil {
		r.mu.RLock()
		for s := range r.secrets {
			out.secrets[s]++
		}
		r.mu.RUnlock()
		out.rebuild()
	}
	return out
}

// rebuild recomputes the patterns; the caller holds mu.
func (r *Redactor) rebuild() {
	var ps []pattern
	seen := map[string]bool{}
	add := func(form string, anchor int) {
		if form == "" || seen[form] {
			return
		}
		seen[form] = true
		ps = append(ps, pattern{full: []byte(form), anchor: min(anchor, len(form))})
	}
	for s := range r.secrets {
		add(s, plainAnchor)
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			// The padded form extends the unpadded one, so matching the padded
			// form's prefix covers both.
			add(enc.EncodeToString([]byte(s)), encodedAnchor)
			add(enc.EncodeToString([]byte(s+":")), encodedAnchor)
			// Inside a longer encoded value the secret starts 1 or 2 bytes
			// into a 3-byte group ("user:key" as HTTP Basic, say): its
			// encoding is then shifted. The characters that also encode
			// the bytes before it are left out.
			for k, drop := range []int{1: 2, 2: 3} {
				if k == 0 {
					continue
				}
				shifted := enc.EncodeToString(append(make([]byte, k), s...))
				add(strings.TrimRight(shifted[drop:], "="), encodedAnchor)
			}
		}
	}
	// Longest first, so a span found by a long form is not split by a short one.
	slices.SortFunc(ps, func(a, b pattern) int { return len(b.full) - len(a.full) })
	r.patterns = ps
}

// String returns s with every secret replaced by [REDACTED].
func (r *Redactor) String(s string) string {
	if r == nil || s == "" {
		return s
	}
	out, changed := r.redact([]byte(s))
	if !changed {
		return s
	}
	return string(out)
}

// Bytes returns b with every secret replaced by [REDACTED]: b itself when
// nothing was found, else a new slice.
func (r *Redactor) Bytes(b []byte) []byte {
	if r == nil || len(b) == 0 {
		return b
	}
	out, _ := r.redact(b)
	return out
}

// JSON redacts a JSON document. The replacement only ever lands inside what
// was a secret, so a valid document stays valid; should it not (a secret
// written as a bare token), the document is replaced by a JSON string saying
// it was withheld.
func (r *Redactor) JSON(doc json.RawMessage) json.RawMessage {
	if r == nil || len(doc) == 0 {
		return doc
	}
	out, changed := r.redact(doc)
	if changed && !json.Valid(out) {
		return json.RawMessage(`{"redacted":true}`)
	}
	return out
}

// Error returns err with its text redacted. A client-safe *Error keeps its
// code and field; its message and hidden cause are redacted. Anything else
// becomes a plain error with the redacted text (chains are not kept: this is
// for errors on their way out).
func (r *Redactor) Error(err error) error {
	if r == nil || err == nil {
		return err
	}
	var e *Error
	if errors.As(err, &e) {
		out := &Error{Code: e.Code, Field: e.Field, Message: r.String(e.Message)}
		if e.cause != nil {
			out.cause = errors.New(r.String(e.cause.Error()))
		}
		return out
	}
	if msg := err.Error(); r.String(msg) != msg {
		return errors.New(r.String(msg))
	}
	return err
}

// redact finds every secret form in b and replaces it.
func (r *Redactor) redact(b []byte) ([]byte, bool) {
	r.mu.RLock()
	ps := r.patterns
	r.mu.RUnlock()
	if len(ps) == 0 {
		return b, false
	}
	text, offs := b, []int(nil)
	// Escapes inside escapes (JSON in a JSON string) need a pass per level.
	for range maxUnescapePasses {
		if bytes.IndexByte(text, '\\') < 0 && bytes.IndexByte(text, '%') < 0 {
			break
		}
		next, noffs := unescape(text)
		if len(next) == len(text) {
			break
		}
		if offs != nil {
			for i, o := range noffs {
				noffs[i] = offs[o]
			}
		}
		text, offs = next, noffs
	}
	var spans [][2]int
	for _, p := range ps {
		anchor := p.full[:p.anchor]
		for from := 0; ; {
			i := bytes.Index(text[from:], anchor)
			if i < 0 {
				break
			}
			start := from + i
			end := start + p.anchor
			for k := p.anchor; k < len(p.full) && end < len(text) && text[end] == p.full[k]; k++ {
				end++
			}
			spans = append(spans, [2]int{start, end})
			from = end
		}
	}
	if len(spans) == 0 {
		return b, false
	}
	if offs != nil {
		for i, s := range spans {
			spans[i] = [2]int{offs[s[0]], originalEnd(offs, s[1])}
		}
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	var out bytes.Buffer
	out.Grow(len(b))
	last := 0
	for _, s := range spans {
		if s[1] <= last {
			continue
		}
		if s[0] < last {
			s[0] = last
		} else {
			out.Write(b[last:s[0]])
			out.WriteString(Redacted)
		}
		last = s[1]
	}
	out.Write(b[last:])
	return out.Bytes(), true
}

// originalEnd maps the end of a span in the unescaped text to the original: a
// span ending inside the bytes of one escape takes the whole escape.
func originalEnd(offs []int, end int) int {
	if end == 0 {
		return offs[0]
	}
	start := offs[end-1]
	for end < len(offs)-1 && offs[end] == start {
		end++
	}
	return offs[end]
}

// maxUnescapePasses bounds how many levels of nested escaping are undone.
const maxUnescapePasses = 4

// unescape decodes JSON \uXXXX (surrogate pairs too), \/, \\ and \" escapes and URL
// %XX escapes, wherever they are, and returns the decoded bytes with, for each
// decoded byte, the offset in b where its source starts (plus len(b) at the
// end). Decoding regardless of context can only make more text match.
func unescape(b []byte) ([]byte, []int) {
	out := make([]byte, 0, len(b))
	offs := make([]int, 0, len(b)+1)
	emit := func(at int, bs ...byte) {
		for _, c := range bs {
			out = append(out, c)
			offs = append(offs, at)
		}
	}
	for i := 0; i < len(b); {
		switch {
		case b[i] == '\\' && i+1 < len(b) && (b[i+1] == '/' || b[i+1] == '\\' || b[i+1] == '"'):
			emit(i, b[i+1])
			i += 2
		case b[i] == '\\' && i+5 < len(b) && b[i+1] == 'u' && isHex4(b[i+2:i+6]):
			r1 := rune(hex4(b[i+2 : i+6]))
			n := 6
			if utf16.IsSurrogate(r1) && i+11 < len(b) && b[i+6] == '\\' && b[i+7] == 'u' && isHex4(b[i+8:i+12]) {
				if r := utf16.DecodeRune(r1, rune(hex4(b[i+8:i+12]))); r != utf8.RuneError {
					r1, n = r, 12
				}
			}
			emit(i, utf8.AppendRune(nil, r1)...)
			i += n
		case b[i] == '%' && i+2 < len(b) && isHex(b[i+1]) && isHex(b[i+2]):
			emit(i, byte(hexVal(b[i+1])<<4|hexVal(b[i+2])))
			i += 3
		default:
			emit(i, b[i])
			i++
		}
	}
	offs = append(offs, len(b))
	return out, offs
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func hexVal(c byte) int {
	switch {
	case c <= '9':
		return int(c - '0')
	case c >= 'a':
		return int(c-'a') + 10
	default:
		return int(c-'A') + 10
	}
}

func isHex4(b []byte) bool {
	return len(b) == 4 && isHex(b[0]) && isHex(b[1]) && isHex(b[2]) && isHex(b[3])
}

func hex4(b []byte) int {
	return hexVal(b[0])<<12 | hexVal(b[1])<<8 | hexVal(b[2])<<4 | hexVal(b[3])
}

// RedactHandler wraps a slog.Handler so that no record it writes carries a
// secret: the message and every string, error and Stringer attribute (in
// groups too) pass through r.
func RedactHandler(h slog.Handler, r *Redactor) slog.Handler {
	return &redactHandler{next: h, r: r}
}

type redactHandler struct {
	next slog.Handler
	r    *Redactor
}

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	// Nearly every record holds no secret: it goes on as it is instead of
	// being rebuilt attribute by attribute (a server's access log writes
	// one per request).
	if h.clean(rec) {
		return h.next.Handle(ctx, rec)
	}
	out := slog.NewRecord(rec.Time, rec.Level, h.r.String(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

// clean reports whether the redactor leaves rec's message and every
// attribute as they are: strings it finds nothing in, and numbers, bools,
// durations and times. A group, an error or any other value takes the
// full path, which resolves and redacts it.
func (h *redactHandler) clean(rec slog.Record) bool {
	if h.r.String(rec.Message) != rec.Message {
		return false
	}
	ok := true
	rec.Attrs(func(a slog.Attr) bool {
		switch a.Value.Kind() {
		case slog.KindString:
			s := a.Value.String()
			ok = h.r.String(s) == s
		case slog.KindInt64, slog.KindUint64, slog.KindFloat64, slog.KindBool, slog.KindDuration, slog.KindTime:
		default:
			ok = false
		}
		return ok
	})
	return ok
}

func (h *redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = h.attr(a)
	}
	return &redactHandler{next: h.next.WithAttrs(red), r: h.r}
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{next: h.next.WithGroup(name), r: h.r}
}

func (h *redactHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.r.String(v.String()))
	case slog.KindGroup:
		g := v.Group()
		red := make([]any, len(g))
		for i, ga := range g {
			red[i] = h.attr(ga)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, h.r.String(x.Error()))
		case interface{ String() string }:
			return slog.String(a.Key, h.r.String(x.String()))
		case []byte:
			return slog.String(a.Key, h.r.String(string(x)))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
