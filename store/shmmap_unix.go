//go:build unix

package store

import (
	"os"
	"syscall"
)

// mapStart maps the first n bytes of f read-only and shared, so it sees
// every process's writes; nil when it cannot (the file is shorter).
func mapStart(f *os.File, n int) []byte {
	if fi, err := f.Stat(); err != nil || fi.Size() < int64(n) {
		return nil
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, n, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil
	}
	return b
}

func unmap(b []byte) {
	if b != nil {
		syscall.Munmap(b)
	}
}
