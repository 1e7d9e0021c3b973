//go:build linux

package platform

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

// procStat reads a process's state letter, process group and start time (in
// clock ticks since boot) from /proc/<pid>/stat; ok is false when there is
// no such process.
func procStat(pid int) (state byte, pgrp int, start uint64, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, 0, false
	}
	// The command name (field 2) is in parentheses and may hold anything.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state), f[2] field 5 (pgrp), f[19] field 22 (starttime).
	if len(f) < 20 || f[0] == "" {
		return 0, 0, 0, false
	}
	if pgrp, err = strconv.Atoi(f[2]); err != nil {
		return 0, 0, 0, false
	}
	if start, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return 0, 0, 0, false
	}
	return f[0][0], pgrp, start, true
}

func exited(state byte) bool { return state == 'Z' || state == 'X' || state == 'x' }

// startTime is pid's start time, if it runs (a zombie has exited).
func startTime(pid int) (uint64, bool) {
	st, _, start, ok := procStat(pid)
	if !ok || exited(st) {
		return 0, false
	}
	return start, true
}

// GroupAlive reports whether a process of group pgid still runs. Zombies do
// not count: one may wait a long time for a parent that never reaps it.
func GroupAlive(pgid int) bool {
	if !exists(-pgid) {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, pgrp, _, ok := procStat(pid); ok && pgrp == pgid && !exited(st) {
			return true
		}
	}
	return false
}
