//go:build !linux

package store

import "time"

// walWatch, where there is no inotify, is a timer: the caller reads the
// WAL-index header every pollEvery while anyone waits.
type walWatch struct{}

func newWALWatch(string) (*walWatch, error) { return &walWatch{}, nil }

func (*walWatch) wait(pollEvery time.Duration) bool {
	time.Sleep(pollEvery)
	return false
}

func (*walWatch) close() error { return nil }
