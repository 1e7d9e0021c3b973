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
