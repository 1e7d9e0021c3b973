//go:build unix

package main

import (
	"errors"
	"os"
	"syscall"
)

// lockFile takes the exclusive lock on f. With wait it blocks until the lock
// is free (the kernel hands it to a waiter the moment its holder lets go or
// dies); without, ok is false when another process holds it.
func lockFile(f *os.File, wait bool) (ok bool, err error) {
	how := syscall.LOCK_EX
	if !wait {
		how |= syscall.LOCK_NB
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return false, nil
		}
		return false, err
	}
}

// unlockFile releases the lock lockFile took.
func unlockFile(f *os.File) { syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
