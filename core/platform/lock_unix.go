//go:build unix

package platform

import (
	"errors"
	"os"
	"syscall"
)

// LockFile takes the exclusive lock on f (flock). With wait it blocks until
// the lock is free, which the kernel hands to a waiter the moment its holder
// lets go or dies; without, ok is false when another holder has it.
func LockFile(f *os.File, wait bool) (ok bool, err error) {
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

// UnlockFile releases the lock LockFile took.
func UnlockFile(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
