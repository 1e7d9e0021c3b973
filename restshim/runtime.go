package restshim

import (
	"os"
	"runtime/debug"
)

// The Go runtime settings a process serving the API runs with, unless the
// environment sets its own (GOMEMLIMIT, GOGC).
//
// A server's live heap is small (a few MiB) while every answer makes
// garbage in proportion to its size. At the default GOGC of 100 the
// collector runs every 4 MiB of garbage (its floor), and its fixed cost
// per cycle became a large part of each events page. At 200 it runs every
// 8 MiB: measured alternately, pages of events went from 1.92-1.94x their
// floor to 1.68-1.73x; 400 did no better (1.69-1.72x) and spread the
// tail latency of GETs beside writing sessions wider. The soft memory
// limit still bounds the heap.
const (
	ServerMemoryLimit = 96 << 20
	ServerGCPercent   = 200
)

// TuneRuntime applies the server's runtime settings that the environment
// does not set, and returns a func that puts back the previous ones (for
// tests that serve from their own process).
func TuneRuntime() (restore func()) {
	restore = func() {}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		// A soft limit: the collector works harder near it; it never makes
		// an allocation fail.
		old := debug.SetMemoryLimit(ServerMemoryLimit)
		restore = func() { debug.SetMemoryLimit(old) }
	}
	if _, set := os.LookupEnv("GOGC"); !set {
		old := debug.SetGCPercent(ServerGCPercent)
		prev := restore
		restore = func() { debug.SetGCPercent(old); prev() }
	}
	return restore
}
