//go:build darwin

package platform

import "golang.org/x/sys/unix"

// sZomb is a process that exited and waits for its parent (sys/proc.h SZOMB).
const sZomb = 5

// startTime is pid's start time in microseconds, if it runs.
func startTime(pid int) (uint64, bool) {
	kp, err := unix.SysctlKinfoProc("kern.proc.pid", pid)
	if err != nil || kp.Proc.P_pid != int32(pid) || kp.Proc.P_stat == sZomb {
		return 0, false
	}
	t := kp.Proc.P_starttime
	return uint64(t.Sec)*1e6 + uint64(t.Usec), true
}

// GroupAlive reports whether any process of group pgid is there.
func GroupAlive(pgid int) bool { return exists(-pgid) }
