package restshim

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedWriter records each Write it gets.
type lockedWriter struct {
	mu     sync.Mutex
	writes []string
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

func (w *lockedWriter) all() (int, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.writes), strings.Join(w.writes, "")
}

// TestLogBufferBatchesWholeLines: many lines go out in few writes, in
// order, within the interval; a line longer than the buffer is not split
// from its neighbours; Close writes out the rest, and later writes fail.
func TestLogBufferBatchesWholeLines(t *testing.T) {
	out := &lockedWriter{}
	b := NewLogBuffer(out, 20*time.Millisecond)
	var want bytes.Buffer
	for i := range 1000 {
		line := strings.Repeat("x", i%50) + "\n"
		want.WriteString(line)
		b.Write([]byte(line))
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		n, got := out.all()
		if got == want.String() {
			if n > 50 {
				t.Errorf("1000 lines took %d writes, want a few (one a line is what it replaces)", n)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2 s, %d bytes of %d were written", len(got), want.Len())
		}
		time.Sleep(5 * time.Millisecond)
	}
	big := strings.Repeat("y", 100<<10) + "\n"
	b.Write([]byte("before\n"))
	b.Write([]byte(big))
	b.Write([]byte("after\n"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	_, got := out.all()
	if !strings.HasSuffix(got, "before\n"+big+"after\n") {
		t.Fatal("the last lines were lost or reordered at Close")
	}
	out.mu.Lock()
	for _, w := range out.writes {
		if !strings.HasSuffix(w, "\n") {
			t.Errorf("a write ended mid-line: ...%q", w[max(0, len(w)-20):])
		}
	}
	out.mu.Unlock()
	if _, err := b.Write([]byte("late\n")); err == nil {
		t.Error("a write after Close succeeded")
	}
}
