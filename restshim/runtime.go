package restshim

import (
	"os"
	"runtime/debug"
)

// The Go runtime settings a process serving the API runs with, unless the
// environment sets its own (GOMEMLIMIT, GOGC).
//
// A server's live heap is small (a few MiB) while every answer makes
// garbage in proportion to its size: an events page of 200 makes about
// 100 KB. At the default GOGC of 100 the collector then runs every few
// MiB of garbage, and its fixed cost per cycle becomes a large part of
// each request. The soft memory limit bounds the heap instead: the
// collector runs when the heap reaches five times what is live or nears
// the limit, whichever comes first.
const (
	ServerMemoryLimit = 96 << 20
	ServerGCPercent   = 400
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
