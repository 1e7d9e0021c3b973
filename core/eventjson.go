package core

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// Events are the bulk of what readers fetch (a page of 200 is ~55 KB), so
// they are written straight into one buffer instead of through reflection:
// the payload as stored, the time formatted once in place. The fields and
// their order are those of Event's tags. An Event's Payload must be valid,
// compact JSON: the store checks and compacts each one as it is appended,
// so it is not parsed again on every read.

// AppendJSON appends e as one JSON object.
func (e Event) AppendJSON(b []byte) []byte {
	var enc eventEncoder
	return enc.append(b, &e)
}

// eventEncoder writes events one after another, doing once what
// neighbours share: the events of a page nearly all have the same
// session, message, run and type (the store hands out one string for
// each), and the same second.
type eventEncoder struct {
	t timeCache
	// The last string of each field found to need no escaping.
	session, message, run, typ string
	// deriveIDs writes an empty ID as the event's EventID (the events come
	// from Store.StreamEvents); idPrefix is eventIDPrefix(idSession), and
	// idPlain whether it needs no escaping.
	deriveIDs           bool
	idSession, idPrefix string
	idPlain             bool
	// mid is the JSON from "session_id" to "payload" of the last event,
	// written for the session, type, message and run after it: the next
	// event with the same four copies it whole.
	mid                 []byte
	midSession, midType string
	midMessage, midRun  *string
	// digits[:nDigits] is the decimal of lastSeq (nDigits 0: none yet).
	digits  [20]byte
	nDigits int
	lastSeq int64
}

// sameOptional reports whether two optional strings are both absent or
// both present and equal (the same string is compared by its pointer).
func sameOptional(a, b *string) bool {
	return a == b || (a != nil && b != nil && *a == *b)
}

func (enc *eventEncoder) append(b []byte, e *Event) []byte {
	seq := enc.seqDigits(e.Seq) // for the id and the seq
	b = append(b, `{"id":`...)
	if e.ID == "" && enc.deriveIDs { // EventID, written in place
		if e.SessionID != enc.idSession || enc.idPrefix == "" {
			enc.idSession, enc.idPrefix = e.SessionID, eventIDPrefix(e.SessionID)
			enc.idPlain = plainJSON(enc.idPrefix)
		}
		if enc.idPlain {
			b = append(b, '"')
			b = append(b, enc.idPrefix...)
			b = append(b, seq...)
			b = append(b, '"')
		} else {
			b = appendJSONString(b, enc.idPrefix+string(seq))
		}
	} else {
		b = appendJSONString(b, e.ID)
	}
	if enc.mid != nil && e.SessionID == enc.midSession && string(e.Type) == enc.midType &&
		sameOptional(e.MessageID, enc.midMessage) && sameOptional(e.CursorRunID, enc.midRun) {
		b = append(b, enc.mid...)
	} else {
		start := len(b)
		b = append(b, `,"session_id":`...)
		b = appendJSONStringOnce(b, e.SessionID, &enc.session)
		b = append(b, `,"message_id":`...)
		if e.MessageID == nil {
			b = append(b, "null"...)
		} else {
			b = appendJSONStringOnce(b, *e.MessageID, &enc.message)
		}
		b = append(b, `,"cursor_run_id":`...)
		if e.CursorRunID == nil {
			b = append(b, "null"...)
		} else {
			b = appendJSONStringOnce(b, *e.CursorRunID, &enc.run)
		}
		b = append(b, `,"event_type":`...)
		b = appendJSONStringOnce(b, string(e.Type), &enc.typ)
		b = append(b, `,"payload":`...)
		enc.mid = append(enc.mid[:0], b[start:]...)
		enc.midSession, enc.midType, enc.midMessage, enc.midRun = e.SessionID, string(e.Type), e.MessageID, e.CursorRunID
	}
	if len(e.Payload) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, e.Payload...)
	}
	b = append(b, `,"seq":`...)
	b = append(b, seq...)
	b = append(b, `,"created_at":"`...)
	b = enc.t.append(b, e.CreatedAt)
	return append(b, `"}`...)
}

// seqDigits returns seq in decimal, valid until the next call. A page's
// seqs nearly all follow one another, so the last one's digits are counted
// up by one rather than formatted again.
func (enc *eventEncoder) seqDigits(seq int64) []byte {
	if enc.nDigits == 0 || seq <= 0 || seq != enc.lastSeq+1 {
		enc.nDigits = len(strconv.AppendInt(enc.digits[:0], seq, 10))
		enc.lastSeq = seq
		return enc.digits[:enc.nDigits]
	}
	d := enc.digits[:enc.nDigits] // lastSeq >= 0: digits only
	i := len(d) - 1
	for ; i >= 0 && d[i] == '9'; i-- {
		d[i] = '0'
	}
	if i >= 0 {
		d[i]++
	} else { // 9…9 + 1 has one digit more (19 at most: seq is an int64)
		copy(enc.digits[1:], d)
		enc.digits[0] = '1'
		enc.nDigits++
	}
	enc.lastSeq = seq
	return enc.digits[:enc.nDigits]
}

// appendJSONStringOnce is appendJSONString that skips the check when s is
// *plain, the last string it found plain (comparing the same string is
// comparing two pointers), and remembers s when it is.
func appendJSONStringOnce(b []byte, s string, plain *string) []byte {
	if s != *plain {
		if !plainJSON(s) {
			return appendJSONString(b, s)
		}
		*plain = s
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// size is at least the length of e's JSON when its strings need no
// escaping: what a buffer for it should hold.
func (e Event) size() int {
	n := len(`{"id":"","session_id":"","message_id":null,"cursor_run_id":null,"event_type":"","payload":,"seq":,"created_at":""}`) +
		len(e.ID) + len(e.SessionID) + len(e.Type) + len(e.Payload) + 20 + len("2006-01-02T15:04:05.000Z")
	if e.MessageID != nil {
		n += len(*e.MessageID)
	}
	if e.CursorRunID != nil {
		n += len(*e.CursorRunID)
	}
	return n
}

// MarshalJSON writes an Event with its time in TimeFormat.
func (e Event) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, e.size())), nil
}

// AppendJSON appends the page as one JSON object.
func (p EventPage) AppendJSON(b []byte) []byte {
	size := 32
	for _, e := range p.Events {
		size += e.size() + 1
	}
	w := eventPageWriter{b: append(slices.Grow(b, size), eventPageStart...)}
	for i := range p.Events {
		w.add(&p.Events[i])
	}
	return w.end(p.LastSeq)
}

// eventPageStart is how a page's JSON starts.
const eventPageStart = `{"events":[`

// eventPageWriter appends a page's JSON as its events come, after
// eventPageStart.
type eventPageWriter struct {
	b    []byte
	enc  eventEncoder
	n    int   // events written
	last int64 // the last one's seq
}

func (w *eventPageWriter) add(e *Event) {
	if w.n > 0 {
		w.b = append(w.b, ',')
	}
	w.b = w.enc.append(w.b, e)
	w.n, w.last = w.n+1, e.Seq
}

// end closes the page, with its last_seq, and returns the bytes.
func (w *eventPageWriter) end(lastSeq int64) []byte {
	b := append(w.b, `],"last_seq":`...)
	b = strconv.AppendInt(b, lastSeq, 10)
	return append(b, '}')
}

// MarshalJSON writes the page in one buffer.
func (p EventPage) MarshalJSON() ([]byte, error) {
	return p.AppendJSON(nil), nil
}

// timeCache writes times in TimeFormat, formatting the date and time of
// day once per second: the events of a page nearly all share theirs with
// the one before.
type timeCache struct {
	sec    int64
	prefix []byte // "2006-01-02T15:04:05." of sec; nil: none yet
	buf    [20]byte
}

func (c *timeCache) append(b []byte, t time.Time) []byte {
	sec := t.Unix()
	if c.prefix == nil || sec != c.sec {
		full := AppendTime(c.buf[:0], t.Truncate(time.Second))
		if len(full) != len("2006-01-02T15:04:05.000Z") {
			return AppendTime(b, t) // a year RFC 3339 cannot hold
		}
		c.sec, c.prefix = sec, full[:20]
	}
	ms := t.Nanosecond() / 1e6
	b = append(b, c.prefix...)
	return append(b, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it (HTML characters included); ids and event types, nearly
// always plain, take the short path.
func appendJSONString(b []byte, s string) []byte {
	if !plainJSON(s) {
		q, _ := json.Marshal(s) // a string always marshals
		return append(b, q...)
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// plainJSON reports whether s is written in JSON as it is, between quotes:
// printable ASCII but the quote, the backslash and the three characters
// encoding/json escapes for HTML. It looks at eight bytes at a time (a
// byte is flagged when it is 0x80 or more, below 0x20, or equal to one of
// the five), since ids are most of what a page of events writes.
func plainJSON(s string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	// zero has the high bit of each byte of x that may be zero set, and
	// one at least if any byte is.
	zero := func(x uint64) uint64 { return (x - ones) & ^x & highs }
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if x&highs|(x-0x20*ones)&^x&highs|
			zero(x^'"'*ones)|zero(x^'\\'*ones)|zero(x^'<'*ones)|zero(x^'>'*ones)|zero(x^'&'*ones) != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

func appendJSONStringPtr(b []byte, s *string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	return appendJSONString(b, *s)
}
