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
func FormatTime(t time.Time) string { return string(AppendTime(nil, t)) }

// AppendTime appends t in TimeFormat, in UTC. The JSON of every session,
// message and event carries up to five timestamps, and time.AppendFormat,
// which reads its layout anew each time, was two thirds of writing a
// session; the digits are placed directly here for the years RFC 3339 can
// hold, which is every year a stored time has.
func AppendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, TimeFormat)
	}
	hour, minute, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond()/1e6, 3)
	return append(b, 'Z')
}

// appendDigits appends n (≥ 0) in exactly width decimal digits.
func appendDigits(b []byte, n, width int) []byte {
	var d [4]byte
	for i := width - 1; i >= 0; i-- {
		d[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, d[:width]...)
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
