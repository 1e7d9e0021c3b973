package store

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
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
