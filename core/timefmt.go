package core

import (
	"encoding/json"
	"time"
)

// TimeFormat is how every timestamp is written: RFC 3339 in UTC with exactly
// three fractional digits (2026-05-06T12:00:00.000Z), as the spec's examples
// are. encoding/json's default drops trailing zeros ("…:44.67Z").
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// FormatTime writes t in TimeFormat, in UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

func formatTimePtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := FormatTime(*t)
	return &s
}

// The MarshalJSON methods write the same fields as the struct tags say, with
// the timestamps in TimeFormat. (Reading accepts any RFC 3339 time.)

// MarshalJSON writes a CodeAgent with its times in TimeFormat.
func (a CodeAgent) MarshalJSON() ([]byte, error) {
	type plain CodeAgent
	return json.Marshal(struct {
		plain
		CreatedAt string `json:"created_at"`
		UpdatedAt string `json:"updated_at"`
	}{plain(a), FormatTime(a.CreatedAt), FormatTime(a.UpdatedAt)})
}

// MarshalJSON writes a Session with its times in TimeFormat.
func (s Session) MarshalJSON() ([]byte, error) {
	type plain Session
	return json.Marshal(struct {
		plain
		LastEventAt *string `json:"last_event_at"`
		CreatedAt   string  `json:"created_at"`
		StartedAt   *string `json:"started_at"`
		CompletedAt *string `json:"completed_at"`
	}{plain(s), formatTimePtr(s.LastEventAt), FormatTime(s.CreatedAt), formatTimePtr(s.StartedAt), formatTimePtr(s.CompletedAt)})
}

// MarshalJSON writes a SessionDetail (a Session and its messages) with its
// times in TimeFormat; without it, Session's method would drop the messages.
func (d SessionDetail) MarshalJSON() ([]byte, error) {
	type plain Session
	s := d.Session
	return json.Marshal(struct {
		plain
		LastEventAt *string   `json:"last_event_at"`
		CreatedAt   string    `json:"created_at"`
		StartedAt   *string   `json:"started_at"`
		CompletedAt *string   `json:"completed_at"`
		Messages    []Message `json:"messages"`
	}{plain(s), formatTimePtr(s.LastEventAt), FormatTime(s.CreatedAt), formatTimePtr(s.StartedAt), formatTimePtr(s.CompletedAt), d.Messages})
}

// MarshalJSON writes a Message with its times in TimeFormat.
func (m Message) MarshalJSON() ([]byte, error) {
	type plain Message
	return json.Marshal(struct {
		plain
		StartedAt   *string `json:"started_at"`
		CompletedAt *string `json:"completed_at"`
		CreatedAt   string  `json:"created_at"`
	}{plain(m), formatTimePtr(m.StartedAt), formatTimePtr(m.CompletedAt), FormatTime(m.CreatedAt)})
}
