//go:build unix && !linux && !darwin

package platform

// startTime reports whether pid runs; its start time is not known here.
func startTime(pid int) (uint64, bool) { return 0, exists(pid) }

// GroupAlive reports whether any process of group pgid is there.
func GroupAlive(pgid int) bool { return exists(-pgid) }
