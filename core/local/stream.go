package local

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/flapjack-dev/flapjack/core"
)

// maxLineBytes caps one line of agent output; the rest of the line is dropped
// so a runaway agent cannot exhaust memory or bloat the log.
const maxLineBytes = 4 << 20

// readLines calls fn with each line of r, without its line ending, as valid
// UTF-8 and at most maxLineBytes (plus a marker saying what was dropped).
func readLines(r io.Reader, fn func(line string)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		buf     []byte
		dropped int
		partial bool // something of the current line has been read
	)
	for {
		chunk, err := br.ReadSlice('\n')
		if err == nil {
			chunk = chunk[:len(chunk)-1]
		}
		if len(chunk) > 0 {
			partial = true
		}
		if room := maxLineBytes - len(buf); len(chunk) <= room {
			buf = append(buf, chunk...)
		} else {
			if room > 0 {
				buf = append(buf, chunk[:room]...)
			}
			dropped += len(chunk) - max(room, 0)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == nil || partial {
			line := buf
			if dropped == 0 {
				line = bytes.TrimSuffix(line, []byte("\r"))
			}
			s := strings.ToValidUTF8(string(line), "\uFFFD")
			if dropped > 0 {
				s += fmt.Sprintf(" [flapjack: line truncated, %d bytes dropped]", dropped)
			}
			fn(s)
		}
		if cap(buf) > 1<<20 {
			buf = nil // do not keep a huge buffer for short lines
		}
		buf, dropped, partial = buf[:0], 0, false
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// event is one mapped line of agent output; a nil payload means "drop it".
type event struct {
	typ     core.EventType
	payload any
}

type textPayload struct {
	Text string `json:"text"`
}

type linePayload struct {
	Line string `json:"line"`
}

type toolCallPayload struct {
	CallID string `json:"call_id"`
	Name   string `json:"name"`
	// Tool repeats Name and Path is the file the call targets (if one), as
	// the spec's example has them (see core.ToolPath).
	Tool   string          `json:"tool,omitempty"`
	Path   string          `json:"path,omitempty"`
	Status string          `json:"status"`
	Args   json.RawMessage `json:"args"`
	Result json.RawMessage `json:"result"`
}

type resultPayload struct {
	Text       string `json:"text"`
	DurationMS int64  `json:"duration_ms"`
	IsError    bool   `json:"is_error"`
	Subtype    string `json:"subtype"`
	// What Claude Code and Codex add about the run.
	NumTurns int             `json:"num_turns,omitempty"`
	CostUSD  *float64        `json:"total_cost_usd,omitempty"`
	Usage    json.RawMessage `json:"usage,omitempty"`
}

// streamLine is a cursor-agent stream-json object; unknown fields are ignored.
type streamLine struct {
	Type       string                     `json:"type"`
	Subtype    string                     `json:"subtype"`
	Text       string                     `json:"text"`
	Message    json.RawMessage            `json:"message"`
	CallID     string                     `json:"call_id"`
	ToolCall   map[string]json.RawMessage `json:"tool_call"`
	Result     json.RawMessage            `json:"result"`
	DurationMS float64                    `json:"duration_ms"`
	IsError    bool                       `json:"is_error"`
	SessionID  string                     `json:"session_id"`
}

// mapStdout turns one stdout line into an event: a typed one for a
// cursor-agent stream-json object, nothing for system and user objects (noise,
// and the user message is already logged), a stdout event for anything else.
func mapStdout(line string) event {
	raw := strings.TrimSpace(line)
	plain := event{core.EventStdout, linePayload{Line: line}}
	if !strings.HasPrefix(raw, "{") {
		return plain
	}
	var sl streamLine
	if err := json.Unmarshal([]byte(raw), &sl); err != nil {
		return plain
	}
	switch sl.Type {
	case "system", "user":
		return event{}
	case "assistant":
		text := messageText(sl.Message)
		if text == "" {
			return event{}
		}
		return event{core.EventAssistant, textPayload{Text: text}}
	case "thinking":
		text := sl.Text
		if text == "" {
			text = messageText(sl.Message)
		}
		if text == "" {
			return event{} // "completed" markers carry no text
		}
		return event{core.EventThinking, textPayload{Text: text}}
	case "tool_call":
		return event{core.EventToolCall, toolCall(sl)}
	case "result":
		var text string
		_ = json.Unmarshal(sl.Result, &text)
		return event{core.EventResult, resultPayload{Text: text, DurationMS: int64(sl.DurationMS), IsError: sl.IsError, Subtype: sl.Subtype}}
	}
	return plain
}

// messageText joins the text parts of a message's content, which is a list of
// parts or a plain string.
func messageText(raw json.RawMessage) string {
	var m struct {
		Content json.RawMessage `json:"content"`
	}
	if json.Unmarshal(raw, &m) != nil || len(m.Content) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(m.Content, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(m.Content, &parts) != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" || p.Type == "" {
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

// toolCall maps a tool_call object: its tool_call field holds one key naming
// the tool (readToolCall → "read") with args and, when completed, result.
func toolCall(sl streamLine) toolCallPayload {
	p := toolCallPayload{CallID: sl.CallID, Status: sl.Subtype}
	keys := make([]string, 0, len(sl.ToolCall))
	for k := range sl.ToolCall {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return p
	}
	key := keys[0]
	for _, k := range keys {
		if strings.HasSuffix(k, "ToolCall") {
			key = k
			break
		}
	}
	p.Name = strings.TrimSuffix(key, "ToolCall")
	var inner struct {
		Args   json.RawMessage `json:"args"`
		Result json.RawMessage `json:"result"`
	}
	if json.Unmarshal(sl.ToolCall[key], &inner) == nil {
		p.Args, p.Result = inner.Args, inner.Result
	}
	return p
}
