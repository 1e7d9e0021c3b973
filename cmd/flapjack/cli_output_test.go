//go:build unix

package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

func TestPrinterFormatAndColour(t *testing.T) {
	tests := []struct {
		format       string
		tty, noColor bool
		wantFormat   string
		wantColor    bool
	}{
		{"", true, false, formatText, true},
		{"", true, true, formatText, false},
		{"", false, false, formatJSON, false},
		{"text", false, false, formatText, false},
		{"jsonl", true, false, formatJSONL, false},
		{"json", true, false, formatJSON, false},
	}
	for _, tt := range tests {
		p, err := printerFor(tt.format, &bytes.Buffer{}, tt.tty, tt.noColor)
		if err != nil || p.format != tt.wantFormat || p.color != tt.wantColor {
			t.Errorf("printerFor(%q, tty=%v, NO_COLOR=%v) = %+v, %v; want %s colour=%v", tt.format, tt.tty, tt.noColor, p, err, tt.wantFormat, tt.wantColor)
		}
	}
	if _, err := printerFor("yaml", &bytes.Buffer{}, true, false); err == nil {
		t.Error("-o yaml accepted")
	}
	var out bytes.Buffer
	p, _ := printerFor("", &out, true, false)
	p.event(core.Event{Seq: 3, Type: core.EventStatus, Payload: json.RawMessage(`{"status":"finished","previous_status":"running"}`), CreatedAt: time.Now()})
	if !strings.Contains(out.String(), "\033[32m") || !strings.Contains(out.String(), "running → finished") {
		t.Errorf("coloured event line = %q", out.String())
	}
}

func TestSpinner(t *testing.T) {
	var off bytes.Buffer
	s := startSpinner(&off, false, "cs-1")
	s.set("running")
	s.end()
	if off.Len() != 0 {
		t.Errorf("disabled spinner wrote %q", off.String())
	}
	var buf lockedBuffer
	s = startSpinner(&buf, true, "cs-1")
	s.set("running")
	time.Sleep(250 * time.Millisecond)
	s.pause(func() {})
	s.end()
	got := buf.String()
	if !strings.Contains(got, "cs-1 running") || !strings.Contains(got, "0s") || !strings.HasSuffix(got, "\r\033[K") {
		t.Errorf("spinner output = %q", got)
	}
}

// TestTextOutputIsTerminalSafe: escape sequences and other controls from
// agents, prompts and users are shown, not executed, in every text renderer;
// JSON keeps them as they are.
func TestTextOutputIsTerminalSafe(t *testing.T) {
	hostile := "ok\x1b]52;c;cHduZWQ=\x07\x1b[2J\x1b]0;title\x07\u202egnp.exe\u009b31m\x7f"
	for _, tc := range []struct {
		name string
		got  string
	}{
		{"safeText", safeText(hostile)},
		{"oneLine", oneLine(hostile)},
		{"event", func() string {
			var b strings.Builder
			p, _ := printerFor("text", &b, false, true)
			payload, _ := json.Marshal(map[string]string{"line": hostile})
			p.event(core.Event{Seq: 1, Type: core.EventStdout, Payload: payload})
			return b.String()
		}()},
		{"table", func() string {
			var b strings.Builder
			agentsTable(&b, []core.CodeAgent{{ID: "ca-1", Name: hostile}})
			return b.String()
		}()},
		{"key-values", func() string {
			var b strings.Builder
			sessionText(&b, core.SessionDetail{Session: core.Session{ID: "cs-1", Error: &hostile}})
			return b.String()
		}()},
	} {
		for _, r := range tc.got {
			if r == 0x1b || r == 0x07 || r == 0x9b || r == 0x7f || r == 0x202e {
				t.Errorf("%s: %U reaches the terminal: %q", tc.name, r, tc.got)
			}
		}
		if !strings.Contains(tc.got, `\x1b]52;c;`) || !strings.Contains(tc.got, `\u202e`) {
			t.Errorf("%s: the escapes are not shown: %q", tc.name, tc.got)
		}
	}
	var b strings.Builder
	p, _ := printerFor("json", &b, false, true)
	p.value(map[string]string{"name": hostile}, nil)
	var back map[string]string
	if err := json.Unmarshal([]byte(b.String()), &back); err != nil || back["name"] != hostile {
		t.Errorf("JSON output changed the text: %q (%v)", b.String(), err)
	}
	if s := "plain text, tabs\tand ünïcödé"; safeText(s) != s {
		t.Errorf("safeText changed ordinary text: %q", safeText(s))
	}
}
