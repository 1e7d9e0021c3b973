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
