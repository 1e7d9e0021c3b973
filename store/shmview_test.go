package store

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestSHMViewReadsWhatIsWritten checks that the view sees each write to the
// file by another handle at once (the mapping is shared), and that a file
// cut short under it makes read report failure instead of crashing the
// process (the mapped page is gone: a fault).
func TestSHMViewReadsWhatIsWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db-shm")
	if err := os.WriteFile(path, bytes.Repeat([]byte{1}, 32<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := openSHMView(path, walHeaderBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer v.close()
	if runtime.GOOS != "windows" && v.mem == nil {
		t.Fatal("the view did not map the file")
	}
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	h := make([]byte, walHeaderBytes)
	for i := range 3 {
		want := bytes.Repeat([]byte{byte(10 + i)}, walHeaderBytes)
		if _, err := w.WriteAt(want, 0); err != nil {
			t.Fatal(err)
		}
		if !v.read(h) || !bytes.Equal(h, want) {
			t.Fatalf("write %d: read %x, want %x", i, h[:8], want[:8])
		}
	}
	if err := w.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if v.read(h) {
		t.Fatalf("a read of a file cut to nothing succeeded: %x", h[:8])
	}
	if err := v.close(); err != nil {
		t.Fatal(err)
	}
	if v.read(h) {
		t.Fatal("a read of a closed view succeeded")
	}
}

// TestSHMViewCloseDuringReads: closing a view (as the cache does when the
// file was replaced) while readers look at it neither faults nor races:
// each read either sees the header or reports failure.
func TestSHMViewCloseDuringReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db-shm")
	want := bytes.Repeat([]byte{7}, walHeaderBytes)
	if err := os.WriteFile(path, append(want, make([]byte, 32<<10)...), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := openSHMView(path, walHeaderBytes)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var good, failed atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := make([]byte, walHeaderBytes)
			for range 20_000 {
				if !v.read(h) {
					failed.Add(1)
					continue
				}
				if !bytes.Equal(h, want) {
					t.Errorf("read %x", h[:8])
					return
				}
				good.Add(1)
			}
		}()
	}
	for good.Load() == 0 && failed.Load() == 0 {
		runtime.Gosched()
	}
	if err := v.close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if good.Load() == 0 || failed.Load() == 0 {
		t.Errorf("%d reads saw the header and %d failed; want both, the failures after close", good.Load(), failed.Load())
	}
}
