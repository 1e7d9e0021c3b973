//go:build unix

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// mcpProc is the real binary as an MCP server on raw stdio.
type mcpProc struct {
	t       *testing.T
	stdin   io.WriteCloser
	answers chan map[string]any
	done    chan error
}

func startRawMCP(t *testing.T) *mcpProc {
	t.Helper()
	cmd := exec.Command(flapjackBin, "mcp", "--data-dir", newDataDir(t))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &mcpProc{t: t, stdin: in, answers: make(chan map[string]any, 1000), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]any{"unparsable": sc.Text()}
			}
			p.answers <- m
		}
		close(p.answers)
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() { in.Close(); cmd.Process.Kill() })
	return p
}

func (p *mcpProc) send(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatalf("writing %.40q: %v", line, err)
	}
}

// next returns the next answer, failing after 20 s.
func (p *mcpProc) next() map[string]any {
	p.t.Helper()
	select {
	case m, ok := <-p.answers:
		if !ok {
			p.t.Fatal("the server ended its output")
		}
		return m
	case <-time.After(20 * time.Second):
		p.t.Fatal("no answer within 20 s")
	}
	return nil
}

const initLine = `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

// TestMCPStdioSurvivesMalformedInput feeds every kind of malformed line to
// the real binary, each followed by a valid request: the malformed line gets
// the right JSON-RPC error (with its id when it can be recovered), and the
// valid one its answer. Nothing ends the server.
func TestMCPStdioSurvivesMalformedInput(t *testing.T) {
	deep := strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000)
	huge := `{"jsonrpc":"2.0","id":77,"method":"ping","params":{"x":"` + strings.Repeat("a", 5<<20) + `"}}`
	cases := []struct {
		name, line string
		code       float64
		id         any // nil: null
	}{
		{"not JSON", "hello", -32700, nil},
		{"open brace", "{", -32700, nil},
		{"empty array", "[]", -32600, nil},
		{"null", "null", -32600, nil},
		{"empty string", `""`, -32600, nil},
		{"empty object", "{}", -32600, nil},
		{"number", "123", -32600, nil},
		{"true", "true", -32600, nil},
		{"bad UTF-8", "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\",\"x\":\"\xff\xfe\"}", -32700, float64(7)},
		{"NUL", "\x00", -32700, nil},
		{"NUL inside", "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"ping\"}\x00", -32700, float64(8)},
		{"jsonrpc 1.0", `{"jsonrpc":"1.0","id":9,"method":"ping"}`, -32600, float64(9)},
		{"no jsonrpc", `{"id":10,"method":"ping"}`, -32600, float64(10)},
		{"object id", `{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`, -32600, nil},
		{"array id", `{"jsonrpc":"2.0","id":[1],"method":"ping"}`, -32600, nil},
		{"bool id", `{"jsonrpc":"2.0","id":true,"method":"ping"}`, -32600, nil},
		{"huge number id", `{"jsonrpc":"2.0","id":1e400,"method":"ping"}`, -32600, nil},
		{"fractional id", `{"jsonrpc":"2.0","id":1.5,"method":"ping"}`, -32600, nil},
		{"batch", `[{"jsonrpc":"2.0","id":12,"method":"ping"}]`, -32600, nil},
		{"trailing garbage", `{"jsonrpc":"2.0","id":13,"method":"ping"} x`, -32700, float64(13)},
		{"byte-order mark", "\xef\xbb\xbf" + `{"jsonrpc":"2.0","id":14,"method":"ping"}`, -32700, nil},
		{"method not a string", `{"jsonrpc":"2.0","id":15,"method":5}`, -32600, float64(15)},
		{"nothing to do", `{"jsonrpc":"2.0","id":16}`, -32600, float64(16)},
		{"second initialize", strings.Replace(initLine, `"id":0`, `"id":17`, 1), -32600, float64(17)},
		{"unknown method", `{"jsonrpc":"2.0","id":18,"method":"no/such"}`, -32601, float64(18)},
		{"over-long line", huge, -32600, float64(77)},
		{"100k nesting", deep, -32700, nil},
	}
	p := startRawMCP(t)
	p.send(initLine)
	if m := p.next(); m["result"] == nil {
		t.Fatalf("initialize: %v", m)
	}
	p.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	for i, tc := range cases {
		p.send(tc.line)
		p.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":"after-%d","method":"ping"}`, i))
		// The SDK answers requests concurrently: match the two by id.
		bad, good := p.next(), p.next()
		if good["id"] != fmt.Sprintf("after-%d", i) {
			bad, good = good, bad
		}
		e, _ := bad["error"].(map[string]any)
		if e == nil || e["code"] != tc.code || bad["id"] != tc.id {
			t.Errorf("%s: answer %.300v, want error %v with id %v", tc.name, bad, tc.code, tc.id)
		}
		if good["id"] != fmt.Sprintf("after-%d", i) || good["result"] == nil {
			t.Fatalf("%s: the valid request after it got %.300v", tc.name, good)
		}
	}
	if len(cases) < 25 {
		t.Errorf("only %d line types", len(cases))
	}
}

// TestMCPStdioAnswersEverythingBeforeEOF: requests piped with stdin closed
// right after them all get answers before the server exits.
func TestMCPStdioAnswersEverythingBeforeEOF(t *testing.T) {
	p := startRawMCP(t)
	var b strings.Builder
	b.WriteString(initLine + "\n")
	b.WriteString(`{"jsonrpc":"2.0","method":"notifications/initialized"}` + "\n")
	const n = 20
	for i := range n {
		fmt.Fprintf(&b, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"flapjack_list_code_agents","arguments":{}}}`+"\n", i+1)
	}
	io.WriteString(p.stdin, b.String())
	p.stdin.Close()
	seen := map[float64]bool{}
	for m := range p.answers {
		if id, ok := m["id"].(float64); ok && m["result"] != nil {
			seen[id] = true
		}
	}
	if len(seen) != n+1 {
		t.Errorf("%d answers of %d requests", len(seen), n+1)
	}
	if err := <-p.done; err != nil {
		t.Errorf("server exited with %v", err)
	}
}
