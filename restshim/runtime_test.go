package restshim

import (
	"os"
	"runtime/debug"
	"testing"
)

// TestTuneRuntime checks that a server gets its collector settings unless
// the environment sets its own, and that restore puts back what was.
func TestTuneRuntime(t *testing.T) {
	gcPercent := func() int { v := debug.SetGCPercent(100); debug.SetGCPercent(v); return v }
	unset := func(k string) { t.Setenv(k, "x"); os.Unsetenv(k) } // restored after the test
	before, beforeLimit := gcPercent(), debug.SetMemoryLimit(-1)

	unset("GOGC")
	unset("GOMEMLIMIT")
	restore := TuneRuntime()
	if got, limit := gcPercent(), debug.SetMemoryLimit(-1); got != ServerGCPercent || limit != ServerMemoryLimit {
		t.Errorf("GOGC %d, limit %d; want %d, %d", got, limit, ServerGCPercent, ServerMemoryLimit)
	}
	restore()
	if got, limit := gcPercent(), debug.SetMemoryLimit(-1); got != before || limit != beforeLimit {
		t.Errorf("restored GOGC %d, limit %d; want %d, %d", got, limit, before, beforeLimit)
	}

	t.Setenv("GOGC", "150") // the environment's choice is left as it is
	t.Setenv("GOMEMLIMIT", "1GiB")
	restore = TuneRuntime()
	defer restore()
	if got, limit := gcPercent(), debug.SetMemoryLimit(-1); got != before || limit != beforeLimit {
		t.Errorf("with both set in the environment: GOGC %d, limit %d; want %d, %d unchanged", got, limit, before, beforeLimit)
	}
}
