package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// walWatch waits for writes to the database's -wal file, which every commit
// of every process makes: Linux tells us through inotify, so a quiet
// database costs its waiters nothing, and another process's commit is seen
// at once.
type walWatch struct {
	f    *os.File
	name []byte // the -wal file's name in its directory
	buf  []byte
}

// walWatchSafety bounds the wait when no write was reported, in case the
// kernel's queue overflowed or the file was replaced.
const walWatchSafety = time.Second

func newWALWatch(walPath string) (*walWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	// The directory, not the file: the -wal file may be created anew.
	if _, err := unix.InotifyAddWatch(fd, filepath.Dir(walPath), unix.IN_MODIFY|unix.IN_CREATE); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// A non-blocking descriptor makes a pollable File: reads honour deadlines
	// and Close ends them.
	return &walWatch{f: os.NewFile(uintptr(fd), "inotify"), name: []byte(filepath.Base(walPath)),
		buf: make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))}, nil
}

// wait returns true once the -wal file was written or created (its
// commit's header follows after the commit's fsync), and false after
// walWatchSafety without one, or after pollEvery when the kernel cannot
// tell; the caller looks at the header either way.
func (w *walWatch) wait(pollEvery time.Duration) bool {
	deadline := time.Now().Add(walWatchSafety)
	for {
		if err := w.f.SetReadDeadline(deadline); err != nil {
			time.Sleep(pollEvery)
			return false
		}
		n, err := w.f.Read(w.buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return false
		}
		if err != nil {
			time.Sleep(pollEvery)
			return false
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&w.buf[off]))
			nameStart := off + unix.SizeofInotifyEvent
			nameEnd := min(nameStart+int(ev.Len), n)
			off = nameEnd
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				return true
			}
			if bytes.Equal(bytes.TrimRight(w.buf[nameStart:nameEnd], "\x00"), w.name) {
				return true
			}
		}
	}
}

func (w *walWatch) close() error { return w.f.Close() }
