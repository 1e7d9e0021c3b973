package local

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"
)

func TestDebugEscape(t *testing.T) {
	r, spec, _ := prepared(t, "escape")
	r.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sink := newSink(t)
	start := time.Now()
	out, err := r.Execute(context.Background(), spec, sink)
	t.Log(time.Since(start), out, err)
	for _, e := range sink.all() {
		t.Log(e.Type, string(e.Payload))
	}
}
