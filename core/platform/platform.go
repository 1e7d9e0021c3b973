// Package platform is everything flapjack does differently by operating
// system, behind one small API with a file per OS: file locks, process
// groups and how to stop them, detached processes, telling a process apart
// from a later one with the same pid, and how a file counts towards disk use.
// cmd and core/local use it; nothing else in flapjack names a syscall.
package platform

import (
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// Proc names one process: its pid and its start time (an opaque number
// that differs between two processes that had the same pid). Start 0 means
// unknown.
type Proc struct {
	PID   int
	Start uint64
}

// String is "pid" or "pid@start", as stored in a run handle.
func (p Proc) String() string {
	if p.Start == 0 {
		return strconv.Itoa(p.PID)
	}
	return strconv.Itoa(p.PID) + "@" + strconv.FormatUint(p.Start, 10)
}

// ParseProc reads what String wrote; ok is false for anything else.
func ParseProc(s string) (p Proc, ok bool) {
	pid, start, _ := strings.Cut(strings.TrimSpace(s), "@")
	n, err := strconv.Atoi(pid)
	if err != nil || n <= 1 {
		return Proc{}, false
	}
	p.PID = n
	if start != "" {
		if p.Start, err = strconv.ParseUint(start, 10, 64); err != nil {
			return Proc{}, false
		}
	}
	return p, true
}

// Identify returns pid with its start time, if it is running.
func Identify(pid int) (Proc, bool) {
	start, ok := startTime(pid)
	return Proc{PID: pid, Start: start}, ok
}

// Running reports whether p is still the process it names: it runs (a
// zombie does not) and, when p.Start is known, started when p says.
func (p Proc) Running() bool {
	start, ok := startTime(p.PID)
	return ok && (p.Start == 0 || start == 0 || start == p.Start)
}

// Self is this process.
func Self() Proc {
	p, _ := Identify(os.Getpid())
	return p
}

// DiskUse is what a file takes on disk and an identity shared by its hard
// links (so they count once); ok is false where the OS does not say, and
// then the file's size is the best guess.
func DiskUse(fi fs.FileInfo) (id [2]uint64, bytes int64, ok bool) {
	return diskUse(fi)
}
