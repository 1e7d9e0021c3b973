package core

import (
	"encoding/json"
	"strconv"
)

// Events are the bulk of what readers fetch (a page of 200 is ~55 KB), so
// they are written straight into one buffer instead of through reflection:
// the payload as stored, the time formatted once in place. The fields and
// their order are those of Event's tags. An Event's Payload must be valid,
// compact JSON: the store checks and compacts each one as it is appended,
// so it is not parsed again on every read.

// AppendJSON appends e as one JSON object.
func (e Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, e.ID)
	b = append(b, `,"session_id":`...)
	b = appendJSONString(b, e.SessionID)
	b = append(b, `,"message_id":`...)
	b = appendJSONStringPtr(b, e.MessageID)
	b = append(b, `,"cursor_run_id":`...)
	b = appendJSONStringPtr(b, e.CursorRunID)
	b = append(b, `,"event_type":`...)
	b = appendJSONString(b, string(e.Type))
	b = append(b, `,"payload":`...)
	if len(e.Payload) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, e.Payload...)
	}
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, e.Seq, 10)
	b = append(b, `,"created_at":"`...)
	b = AppendTime(b, e.CreatedAt)
	return append(b, `"}`...)
}

// MarshalJSON writes an Event with its time in TimeFormat.
func (e Event) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 160+len(e.Payload))), nil
}

// MarshalJSON writes the page in one buffer.
func (p EventPage) MarshalJSON() ([]byte, error) {
	size := 32
	for _, e := range p.Events {
		size += 160 + len(e.Payload)
	}
	b := append(make([]byte, 0, size), `{"events":[`...)
	for i, e := range p.Events {
		if i > 0 {
			b = append(b, ',')
		}
		b = e.AppendJSON(b)
	}
	b = append(b, `],"last_seq":`...)
	b = strconv.AppendInt(b, p.LastSeq, 10)
	return append(b, '}'), nil
}

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it (HTML characters included); ids and event types, nearly
// always plain, take the short path.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendJSONStringPtr(b []byte, s *string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	return appendJSONString(b, *s)
}
