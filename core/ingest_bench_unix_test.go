//go:build unix

package core_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// BenchmarkPacedIngestion measures what an agent printing 500 lines a
// second costs: each line through the Redactor and the EventWriter into a
// real SQLite file (synchronous=FULL), CPU time of this process per event
// and commits (fsyncs) per second. Waking a goroutine 500 times a second
// costs CPU of its own on a virtual machine (about 125 µs a wake-up here),
// whoever does the work, so the same ticker with no events is measured in
// the same run and subtracted; the same events emitted as one burst are
// reported beside it. Goals: ≤ 60 µs of CPU per event, ≤ 50 fsyncs a second.
func BenchmarkPacedIngestion(b *testing.B) {
	h := newHarness(b)
	st := h.start(b)
	redactor := core.NewRedactor("crsr_live_0123456789abcdefghijklmnop")
	line := func(i int) core.EventInput {
		return core.EventInput{MessageID: st.MessageID, Type: core.EventStdout, CreatedAt: time.Now(),
			Payload: json.RawMessage(fmt.Sprintf(`{"line":"ok   github.com/acme/app/pkg/%d  0.%03ds"}`, i, i%1000))}
	}
	run := func(n int, every time.Duration, emit bool) (cpuPerEvent time.Duration, commitsPerSec float64) {
		cs := &countingStore{Store: h.st}
		w := core.NewEventWriter(cs, st.SessionID, redactor)
		start, cpu0 := time.Now(), cpu(b)
		var tick *time.Ticker
		if every > 0 {
			tick = time.NewTicker(every)
			defer tick.Stop()
		}
		for i := range n {
			if tick != nil {
				<-tick.C
			}
			if emit {
				w.Emit(line(i))
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		return (cpu(b) - cpu0) / time.Duration(n), float64(cs.commits) / time.Since(start).Seconds()
	}
	for b.Loop() {
		burstCPU, _ := run(20_000, 0, true)
		// Rounds of the ticker alone and of the paced events, interleaved,
		// each 3 s of 500 a second; medians, as the machine is shared.
		var ticks, paced, rates []float64
		for range 5 {
			tickCPU, _ := run(1_500, 2*time.Millisecond, false)
			pacedCPU, fsyncs := run(1_500, 2*time.Millisecond, true)
			ticks = append(ticks, float64(tickCPU.Nanoseconds())/1000)
			paced = append(paced, float64((pacedCPU-tickCPU).Nanoseconds())/1000)
			rates = append(rates, fsyncs)
		}
		perEvent, fsyncs := median(paced), median(rates)
		b.ReportMetric(median(ticks), "floor-wakeup-µs-cpu")
		b.ReportMetric(perEvent, "paced-µs-cpu/event")
		b.ReportMetric(fsyncs, "paced-fsyncs/s")
		b.ReportMetric(float64(burstCPU.Nanoseconds())/1000, "burst-µs-cpu/event")
		if perEvent > 60 || fsyncs > 50 {
			b.Errorf("paced: %.1f µs CPU per event (rounds %.0f) and %.1f fsyncs/s; goals ≤ 60 µs and ≤ 50", perEvent, paced, fsyncs)
		}
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func cpuT(t testing.TB) time.Duration { return cpu(t) }

func cpu(b testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
