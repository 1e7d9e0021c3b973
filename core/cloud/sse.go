package cloud

import (
	"bufio"
	"bytes"
	"io"
)

// maxEventBytes bounds one event's data; a larger event (a huge tool result)
// is skipped rather than held in memory.
const maxEventBytes = 8 << 20

// sseReader parses text/event-stream as the WHATWG HTML standard defines it:
// lines end in LF, CRLF or CR; "field: value" lines accumulate until a blank
// line dispatches the event; ":" starts a comment; an event with no data is
// not dispatched; an event cut off by the end of the stream is discarded.
type sseReader struct {
	sc *bufio.Scanner
	// afterCR: the last line ended in CR, so a leading LF completes a CRLF.
	afterCR bool
	// skipping: the current line was too long; its head was returned and the
	// rest is being skipped.
	skipping bool
	// cut marks the line just returned as truncated.
	cut bool
	// scanned is how much of the pending data holds no line end, so a long
	// line arriving in small reads is not searched again from its start.
	scanned int
}

func newSSEReader(r io.Reader) *sseReader {
	s := &sseReader{sc: bufio.NewScanner(r)}
	s.sc.Buffer(make([]byte, 64<<10), maxEventBytes+64<<10)
	s.sc.Split(s.split)
	return s
}

// split is a bufio.SplitFunc for SSE lines. It never returns a nil token
// after consuming a line end: at the end of the input the Scanner would stop
// there, losing the lines still buffered.
func (r *sseReader) split(data []byte, atEOF bool) (int, []byte, error) {
	skip := 0
	if r.afterCR && len(data) > 0 && data[0] == '\n' {
		skip = 1 // the LF of a CRLF whose CR ended the last line
	}
	from := max(skip, min(r.scanned, len(data)))
	if i := bytes.IndexAny(data[from:], "\r\n"); i >= 0 {
		i += from
		r.scanned, r.afterCR = 0, data[i] == '\r'
		if r.skipping {
			// The end of an oversized line, whose head was returned: a
			// comment line, which the parser ignores.
			r.skipping, r.cut = false, false
			return i + 1, []byte(":"), nil
		}
		r.cut = false
		return i + 1, data[skip:i], nil
	}
	switch {
	case r.skipping:
		r.scanned, r.afterCR = 0, false
		return len(data), nil, nil
	case len(data)-skip > maxEventBytes:
		r.skipping, r.cut, r.scanned, r.afterCR = true, true, 0, false
		return len(data), data[skip : skip+maxEventBytes+1], nil
	case atEOF:
		// An unterminated last line belongs to an incomplete event.
		r.scanned, r.afterCR = 0, false
		return len(data), nil, nil
	}
	r.scanned = len(data)
	return 0, nil, nil
}

// next returns the next dispatched event; io.EOF when the stream ended. An
// event without data is returned only when it carries an id (which moves the
// stream position all the same); a too large one comes back with TooLarge set
// and no data, so its id is not lost.
func (r *sseReader) next() (Event, error) {
	var (
		ev      Event
		data    []byte
		hasData bool
		tooBig  bool
	)
	for r.sc.Scan() {
		line := r.sc.Bytes()
		if len(line) == 0 {
			if !hasData && ev.ID == "" {
				ev = Event{}
				continue
			}
			if tooBig {
				ev.TooLarge = true
				return ev, nil
			}
			if ev.Name == "" {
				ev.Name = "message"
			}
			ev.Data = bytes.TrimSuffix(data, []byte("\n"))
			return ev, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value, found := bytes.Cut(line, []byte(":"))
		if found {
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		switch string(field) {
		case "event":
			ev.Name = string(value)
		case "data":
			hasData = true
			if r.cut || len(data)+len(value) > maxEventBytes {
				tooBig = true
				continue
			}
			data = append(data, value...)
			data = append(data, '\n')
		case "id":
			if bytes.IndexByte(value, 0) < 0 && !r.cut {
				ev.ID = string(value)
			}
		}
	}
	if err := r.sc.Err(); err != nil {
		return Event{}, err
	}
	return Event{}, io.EOF
}
