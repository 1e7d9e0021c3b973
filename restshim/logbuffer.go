package restshim

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// LogBuffer passes on what is written to it at most every interval, a whole
// line at a time: a busy server then makes one write to its log per
// interval instead of one per request (an access log line per request was
// a tenth of a GET's cost). Close writes out the rest.
type LogBuffer struct {
	mu     sync.Mutex
	w      *bufio.Writer
	stop   chan struct{}
	done   chan struct{}
	closed bool
}

// NewLogBuffer buffers writes to w, flushing every interval.
func NewLogBuffer(w io.Writer, interval time.Duration) *LogBuffer {
	b := &LogBuffer{w: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
				b.mu.Lock()
				b.w.Flush()
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// Write buffers p, which a log handler gives as whole lines; a line that
// does not fit goes out after what is buffered, never split.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, io.ErrClosedPipe
	}
	if len(p) > b.w.Available() && b.w.Buffered() > 0 {
		if err := b.w.Flush(); err != nil {
			return 0, err
		}
	}
	return b.w.Write(p)
}

// Close stops the flushing and writes out what is buffered.
func (b *LogBuffer) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	close(b.stop)
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Flush()
}
