package mcp

import (
	"bytes"
	"context"
	"io"
	"runtime"
	"strings"
	"testing"
)

// repeatReader yields n bytes of c, then a newline and then rest.
type repeatReader struct {
	n    int
	c    byte
	rest *strings.Reader
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n > 0 {
		k := min(len(p), r.n)
		for i := range k {
			p[i] = r.c
		}
		r.n -= k
		if r.n == 0 && k < len(p) {
			p[k] = '\n'
			return k + 1, nil
		}
		return k, nil
	}
	return r.rest.Read(p)
}

// TestGuardSkipsOverlongLinesInBoundedMemory: a 64 MiB line is answered
// with an error and skipped without being held: the guard allocates a small
// fraction of it, and the next message is passed on.
func TestGuardSkipsOverlongLinesInBoundedMemory(t *testing.T) {
	in := io.MultiReader(strings.NewReader(`{"jsonrpc":"2.0","id":5,"method":"x","params":"`),
		&repeatReader{n: 64 << 20, c: 'a', rest: strings.NewReader(`{"jsonrpc":"2.0","id":6,"method":"ping"}` + "\n")})
	var out bytes.Buffer
	g := &StdioGuard{In: in, Out: &out, MaxFrame: 1 << 20}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tr := g.Transport()
	conn, err := tr.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	msg, err := conn.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("allocated %d MiB for a 64 MiB line", alloc>>20)
	}
	if !strings.Contains(out.String(), `"id":5`) || !strings.Contains(out.String(), "-32600") {
		t.Errorf("answer to the long line: %s", out.String())
	}
	if msg == nil {
		t.Fatal("the next message was not passed on")
	}
}
