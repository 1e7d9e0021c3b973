package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/flapjack-dev/flapjack/core"
)

// Output formats of the scripting commands.
const (
	formatText  = "text"
	formatJSON  = "json"
	formatJSONL = "jsonl"
)

// printer writes command results to stdout: tables and event lines for people,
// one JSON document (json) or one object per line (jsonl) for scripts. Field
// names in JSON are the API's. Nothing but data goes to stdout.
type printer struct {
	format string
	out    io.Writer
	color  bool
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	info, err := file.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// newPrinter resolves the -o flag: "" means text on a terminal and JSON
// otherwise. Colour only on a terminal, and never with NO_COLOR set.
func newPrinter(format string, out io.Writer) (*printer, error) {
	_, noColor := os.LookupEnv("NO_COLOR")
	return printerFor(format, out, isTerminal(out), noColor)
}

func printerFor(format string, out io.Writer, tty, noColor bool) (*printer, error) {
	switch format {
	case "":
		format = formatJSON
		if tty {
			format = formatText
		}
	case formatText, formatJSON, formatJSONL:
	default:
		return nil, usageError{fmt.Errorf("-o %q: want text, json or jsonl", format)}
	}
	return &printer{format: format, out: out, color: tty && !noColor && format == formatText}, nil
}

// value prints one result: JSON (indented for json, one line for jsonl) or the
// text rendering.
func (p *printer) value(v any, text func(w io.Writer)) error {
	switch p.format {
	case formatJSON:
		enc := json.NewEncoder(p.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case formatJSONL:
		return json.NewEncoder(p.out).Encode(v)
	default:
		text(p.out)
		return nil
	}
}

// list prints a list: a JSON array (json), one object per line (jsonl), or a table.
func list[T any](p *printer, items []T, text func(w io.Writer)) error {
	if p.format == formatJSONL {
		enc := json.NewEncoder(p.out)
		for _, it := range items {
			if err := enc.Encode(it); err != nil {
				return err
			}
		}
		return nil
	}
	return p.value(items, text)
}

// event prints one event: a line of text, or one JSON object.
func (p *printer) event(e core.Event) error {
	if p.format != formatText {
		return json.NewEncoder(p.out).Encode(e)
	}
	typ := fmt.Sprintf("%-12s", safeText(string(e.Type)))
	if p.color {
		typ = colorFor(e) + typ + "\033[0m"
	}
	_, err := fmt.Fprintf(p.out, "#%-4d %s %s %s\n", e.Seq, e.CreatedAt.Local().Format("15:04:05"), typ, eventSummary(e))
	return err
}

func colorFor(e core.Event) string {
	switch e.Type {
	case core.EventStatus:
		switch payloadString(e.Payload, "status") {
		case string(core.StatusFinished):
			return "\033[32m"
		case string(core.StatusError):
			return "\033[31m"
		case string(core.StatusCancelled), string(core.StatusExpired):
			return "\033[33m"
		}
		return "\033[36m"
	case core.EventError, core.EventStderr:
		return "\033[31m"
	case core.EventAssistant, core.EventResult:
		return "\033[1m"
	}
	return "\033[2m"
}

// eventSummary is a one-line human rendering of an event's payload.
func eventSummary(e core.Event) string {
	var p map[string]any
	if json.Unmarshal(e.Payload, &p) != nil {
		return oneLine(string(e.Payload))
	}
	str := func(k string) string { s, _ := p[k].(string); return s }
	switch e.Type {
	case core.EventStatus:
		s := str("status")
		if prev := str("previous_status"); prev != "" && prev != s {
			s = prev + " → " + s
		}
		if p["archived"] == true {
			s += " (archived)"
		}
		if r := str("reason"); r != "" {
			s += ": " + r
		}
		return oneLine(s)
	case core.EventUserMessage:
		return oneLine(str("prompt"))
	case core.EventAssistant, core.EventThinking, core.EventResult:
		return oneLine(str("text"))
	case core.EventToolCall:
		return oneLine(strings.TrimSpace(str("name") + " " + str("status")))
	case core.EventStdout, core.EventStderr, core.EventAgent:
		return oneLine(str("line"))
	case core.EventError:
		return oneLine(str("message"))
	case core.EventFileEdit:
		files, _ := p["files"].([]any)
		var paths []string
		for _, f := range files {
			if m, ok := f.(map[string]any); ok {
				if s, ok := m["path"].(string); ok {
					paths = append(paths, s)
				}
			}
		}
		commit := str("commit")
		if len(commit) > 7 {
			commit = commit[:7]
		}
		return oneLine(fmt.Sprintf("commit %s: %s", commit, strings.Join(paths, ", ")))
	}
	return oneLine(string(e.Payload))
}

func payloadString(raw json.RawMessage, key string) string {
	var p map[string]any
	json.Unmarshal(raw, &p)
	s, _ := p[key].(string)
	return s
}

// oneLine flattens text to one line of at most 160 characters, terminal-safe.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 160 {
		s = string(r[:157]) + "..."
	}
	return safeText(s)
}

// safeText makes a string that came from an agent, a prompt or another user
// safe to print on a terminal: control characters (C0 but tab, DEL, C1, so
// every escape sequence: clipboard writes, screen clears, titles), the
// bidirectional overrides and isolates, and line separators are shown as
// Go-style escapes (\x1b, \u202e) instead of acting on the terminal; invalid
// UTF-8 shows as U+FFFD. Text output only: JSON and JSONL are untouched.
func safeText(s string) string {
	clean := true
	for _, r := range s {
		if unsafeRune(r) {
			clean = false
			break
		}
	}
	if clean && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case !unsafeRune(r):
			b.WriteRune(r)
		case r < 0x80:
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
	}
	return b.String()
}

// unsafeRune reports a rune that would act on a terminal or reorder text.
func unsafeRune(r rune) bool {
	return r < 0x20 && r != '\t' || r == 0x7f || r >= 0x80 && r < 0xa0 ||
		r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 || r == 0x2028 || r == 0x2029
}

// usageText is a usage on one line: "12,345 in, 678 out tokens, $0.0421, 14.2s".
func usageText(u *core.Usage) string {
	if u.Empty() {
		return "-"
	}
	var parts []string
	if u.InputTokens != nil || u.OutputTokens != nil {
		n := func(p *int64) string {
			if p == nil {
				return "?"
			}
			return strconv.FormatInt(*p, 10)
		}
		parts = append(parts, n(u.InputTokens)+" in, "+n(u.OutputTokens)+" out tokens")
	}
	if u.CostUSD != nil {
		parts = append(parts, fmt.Sprintf("$%.4f", *u.CostUSD))
	}
	if u.DurationMS != nil {
		parts = append(parts, (time.Duration(*u.DurationMS) * time.Millisecond).Round(100*time.Millisecond).String())
	}
	return strings.Join(parts, ", ")
}

func deref(s *string) string {
	if s == nil || *s == "" {
		return "-"
	}
	return *s
}

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func table(w io.Writer, header string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			// A tab or newline inside a cell would break the table.
			cells[i] = safeText(strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(c))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
}

func agentsTable(w io.Writer, agents []core.CodeAgent) {
	rows := make([][]string, 0, len(agents))
	for _, a := range agents {
		rt := a.Runtime
		if rt == "" {
			rt = "default"
		}
		rows = append(rows, []string{a.ID, a.Name, rt, a.ModelID, deref(a.DefaultRepoURL), a.DefaultStartingRef})
	}
	table(w, "ID\tNAME\tRUNTIME\tMODEL\tREPO\tREF", rows)
}

func agentText(w io.Writer, a core.CodeAgent) {
	rt := a.Runtime
	if rt == "" {
		rt = "default"
	}
	fields := [][2]string{
		{"id", a.ID}, {"name", a.Name}, {"description", a.Description}, {"org", a.OrgID},
		{"runtime", rt}, {"model", a.ModelID}, {"repo", deref(a.DefaultRepoURL)}, {"ref", a.DefaultStartingRef},
		{"auto create PR", fmt.Sprint(a.AutoCreatePR)}, {"work on current branch", fmt.Sprint(a.WorkOnCurrentBranch)},
		{"skip reviewer request", fmt.Sprint(a.SkipReviewerRequest)}, {"preamble", oneLine(a.Preamble)},
		{"created", a.CreatedAt.UTC().Format(time.RFC3339)}, {"updated", a.UpdatedAt.UTC().Format(time.RFC3339)},
	}
	keyValues(w, fields)
}

func keyValues(w io.Writer, fields [][2]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, f := range fields {
		v := f[1]
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", f[0], safeText(strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(v)))
	}
	tw.Flush()
}

func sessionsTable(w io.Writer, sessions []core.Session) {
	rows := make([][]string, 0, len(sessions))
	for _, s := range sessions {
		status := string(s.Status)
		if s.Archived {
			status += " (archived)"
		}
		rows = append(rows, []string{s.ID, status, s.CodeAgentID, s.RepoURL, s.StartingRef, deref(s.PRURL), s.CreatedAt.UTC().Format(time.RFC3339)})
	}
	table(w, "ID\tSTATUS\tAGENT\tREPO\tREF\tPR\tCREATED", rows)
}

func sessionText(w io.Writer, s core.SessionDetail) {
	keyValues(w, [][2]string{
		{"id", s.ID}, {"status", string(s.Status)}, {"archived", fmt.Sprint(s.Archived)}, {"agent", s.CodeAgentID},
		{"runtime", s.Runtime}, {"repo", s.RepoURL}, {"ref", s.StartingRef}, {"model", s.ModelID},
		{"PR", deref(s.PRURL)}, {"PR branch", deref(s.PRBranch)}, {"error", deref(s.Error)},
		{"webhook", deref(s.WebhookURL)}, {"usage", usageText(s.Usage)}, {"last event", fmt.Sprint(s.LastEventSeq)},
		{"created", s.CreatedAt.UTC().Format(time.RFC3339)}, {"started", when(s.StartedAt)}, {"completed", when(s.CompletedAt)},
	})
	if len(s.Messages) == 0 {
		return
	}
	fmt.Fprintln(w)
	rows := make([][]string, 0, len(s.Messages))
	for _, m := range s.Messages {
		result := deref(m.ResultText)
		if m.Error != nil {
			result = "error: " + *m.Error
		}
		rows = append(rows, []string{m.ID, string(m.Status), oneLine(m.Prompt), oneLine(result)})
	}
	table(w, "MESSAGE\tSTATUS\tPROMPT\tRESULT", rows)
}
