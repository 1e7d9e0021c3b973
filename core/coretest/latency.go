package coretest

import (
	"os"
	"slices"
	"testing"
	"time"
)

// Latencies collects timings of one kind and reports their percentiles as
// benchmark metrics, so a benchmark states tails, not only means.
type Latencies []time.Duration

// Add records one timing.
func (l *Latencies) Add(d time.Duration) { *l = append(*l, d) }

// Percentile returns the p-th percentile (0 < p ≤ 100); zero when empty.
func (l Latencies) Percentile(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Report adds "<name>-p50-ms" and "<name>-p99-ms" to b's metrics.
func (l Latencies) Report(b *testing.B, name string) {
	b.ReportMetric(ms(l.Percentile(50)), name+"-p50-ms")
	b.ReportMetric(ms(l.Percentile(99)), name+"-p99-ms")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// PipeFloor measures n one-way trips of a small message through an os.Pipe
// to a goroutine: what moving one line between two parts of a process costs
// at the least, the floor a delivery latency is compared with.
func PipeFloor(tb testing.TB, n int) Latencies {
	tb.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	got := make(chan time.Time)
	go func() {
		buf := make([]byte, 8)
		for {
			if _, err := r.Read(buf); err != nil {
				close(got)
				return
			}
			got <- time.Now()
		}
	}()
	var l Latencies
	for range n {
		t0 := time.Now()
		if _, err := w.Write([]byte("event\n")); err != nil {
			tb.Fatal(err)
		}
		l.Add((<-got).Sub(t0))
	}
	return l
}
