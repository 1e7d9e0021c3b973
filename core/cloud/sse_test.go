package cloud

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

type sseGot struct {
	ID, Name, Data string
	TooLarge       bool
}

func readAll(t *testing.T, r io.Reader) ([]sseGot, error) {
	t.Helper()
	sr := newSSEReader(r)
	var out []sseGot
	for {
		ev, err := sr.next()
		if err != nil {
			return out, err
		}
		out = append(out, sseGot{ev.ID, ev.Name, string(ev.Data), ev.TooLarge})
	}
}

// TestSSEReader: the event-stream format as the HTML standard defines it.
func TestSSEReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []sseGot
	}{{
		name: "fields, comments, default name",
		in:   ": hello\nid: 1\nevent: assistant\ndata: {\"text\":\"a\"}\n\ndata: plain\n\n",
		want: []sseGot{{"1", "assistant", `{"text":"a"}`, false}, {"", "message", "plain", false}},
	}, {
		name: "multi-line data, no space after colon, unknown field",
		in:   "event:x\ndata:line1\ndata: line2\nretry: 100\nfoo: bar\n\n",
		want: []sseGot{{"", "x", "line1\nline2", false}},
	}, {
		name: "CRLF and CR line ends",
		in:   "id: 1\r\nevent: a\r\ndata: x\r\n\r\nid: 2\revent: b\rdata: y\r\r",
		want: []sseGot{{"1", "a", "x", false}, {"2", "b", "y", false}},
	}, {
		name: "an id alone moves the position; a block without data or id is skipped",
		in:   "id: 7\nevent: heartbeat\n\nevent: heartbeat\n\n",
		want: []sseGot{{"7", "heartbeat", "", false}},
	}, {
		name: "an id with NUL is ignored",
		in:   "id: a\x00b\ndata: x\n\n",
		want: []sseGot{{"", "message", "x", false}},
	}, {
		name: "an event cut off by the end of the stream is dropped",
		in:   "id: 1\ndata: x\n\nid: 2\ndata: partial",
		want: []sseGot{{"1", "message", "x", false}},
	}, {
		name: "an oversized event keeps its id and drops its data",
		in:   "id: 9\nevent: tool_call\ndata: " + strings.Repeat("x", maxEventBytes+10) + "\n\nid: 10\ndata: ok\n\n",
		want: []sseGot{{"9", "tool_call", "", true}, {"10", "message", "ok", false}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []io.Reader{strings.NewReader(tt.in), iotest.OneByteReader(strings.NewReader(tt.in))} {
				got, err := readAll(t, r)
				if !errors.Is(err, io.EOF) {
					t.Errorf("ended with %v, want EOF", err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("events (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestSSEReaderBrokenConnection: a read error is returned as is.
func TestSSEReaderBrokenConnection(t *testing.T) {
	boom := errors.New("connection reset")
	got, err := readAll(t, io.MultiReader(strings.NewReader("id: 1\ndata: x\n\nid: 2\nda"), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) || len(got) != 1 {
		t.Errorf("got %v, %v", got, err)
	}
}
