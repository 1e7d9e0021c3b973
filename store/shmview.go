package store

import (
	"os"
	"runtime/debug"
	"sync"
)

// shmView reads the wal-index header at the start of a -shm file. Where
// the platform maps files (shmmap_unix.go) it reads the page SQLite itself
// maps, a copy from memory, instead of a pread per look: the ReadCache
// looks before every answer, and the syscall was a quarter of a cached
// GET's time.
type shmView struct {
	mu  sync.RWMutex // held for writing to unmap
	f   *os.File
	mem []byte // the start of f, mapped; nil: read with pread
}

func openSHMView(path string, n int) (*shmView, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &shmView{f: f, mem: mapStart(f, n)}, nil
}

// read fills h from the start of the file, reporting whether it could.
func (v *shmView) read(h []byte) (ok bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.f == nil {
		return false
	}
	if len(v.mem) < len(h) {
		n, err := v.f.ReadAt(h, 0)
		return n == len(h) && err == nil
	}
	// SQLite never shrinks the file while a connection has the database
	// open, and the Store keeps one open; if something else truncated it,
	// the read faults: report it as a failed read, not a crash.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	copy(h, v.mem)
	return true
}

func (v *shmView) stat() (os.FileInfo, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.f == nil {
		return nil, os.ErrClosed
	}
	return v.f.Stat()
}

// close unmaps and closes, once no read is under way.
func (v *shmView) close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.f == nil {
		return nil
	}
	unmap(v.mem)
	err := v.f.Close()
	v.f, v.mem = nil, nil
	return err
}
