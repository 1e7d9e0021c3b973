//go:build linux

package local

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/flapjack-dev/flapjack/core/platform"
)

// On Linux a run's processes also tell about themselves in /proc: the
// session's marker in their environment, and their working directory. That
// finds an agent whose group was never recorded (the runner died first) and
// vouches for handles that carry no start time.

// procStat reads a process's state letter and process group from
// /proc/<pid>/stat; ok is false when there is no such process.
func procStat(pid int) (state byte, pgrp int, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(data, ')') // the command name may hold anything
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 3 || f[0] == "" {
		return 0, 0, false
	}
	pgrp, err = strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], pgrp, true
}

func live(state byte) bool { return state != 'Z' && state != 'X' && state != 'x' }

// markedBy reports whether a running process of group pgid belongs to the
// session's run: it carries the session's marker in its environment, or
// works in the session's workspace (an agent that replaced its environment).
func markedBy(pgid int, sessionID, ws string) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, pgrp, ok := procStat(pid); ok && pgrp == pgid && live(st) && ownedBy(pid, sessionID, ws) {
			return true
		}
	}
	return false
}

func ownedBy(pid int, sessionID, ws string) bool {
	proc := "/proc/" + strconv.Itoa(pid)
	if env, err := os.ReadFile(proc + "/environ"); err == nil {
		marker := []byte(sessionEnv + "=" + sessionID)
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, marker) {
				return true
			}
		}
	}
	cwd, err := os.Readlink(proc + "/cwd")
	if err != nil {
		return false
	}
	if real, err := filepath.EvalSymlinks(ws); err == nil {
		ws = real
	}
	return cwd == ws || strings.HasPrefix(cwd, ws+string(filepath.Separator))
}

// markedGroup is the process group of a running process that carries the
// session's marker in its environment, 0 when there is none.
func markedGroup(sessionID string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	marker := []byte(sessionEnv + "=" + sessionID)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(env, marker) {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, marker) {
				if st, pgrp, ok := procStat(pid); ok && live(st) && platform.SafeGroup(pgrp) {
					return pgrp
				}
			}
		}
	}
	return 0
}
