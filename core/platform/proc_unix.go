//go:build unix

package platform

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

func sysAttr(cmd *exec.Cmd) *syscall.SysProcAttr {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	return cmd.SysProcAttr
}

// NewGroup makes cmd start as the leader of a new session and process group
// (pgid = pid) that StopGroup stops as a whole. Without a controlling
// terminal, an agent that opens /dev/tty fails instead of being stopped by
// SIGTTIN forever.
func NewGroup(cmd *exec.Cmd) { sysAttr(cmd).Setsid = true }

// Detach makes cmd start in its own session, so it outlives its starter and
// no signal to the starter's terminal reaches it.
func Detach(cmd *exec.Cmd) { sysAttr(cmd).Setsid = true }

// SafeGroup reports whether pgid may be stopped: never init, never this
// process's own group.
func SafeGroup(pgid int) bool {
	return pgid > 1 && pgid != syscall.Getpgrp() && pgid != os.Getpid()
}

// StopGroup asks every process of the group led by pgid to stop (SIGTERM),
// or with force makes it (SIGKILL).
func StopGroup(pgid int, force bool) error {
	if !SafeGroup(pgid) {
		return fmt.Errorf("refusing to signal process group %d", pgid)
	}
	sig := syscall.SIGTERM
	if force {
		sig = syscall.SIGKILL
	}
	return syscall.Kill(-pgid, sig)
}

// exists reports whether kill(pid, 0) finds a process (or group, pid < 0).
func exists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func diskUse(fi fs.FileInfo) (id [2]uint64, bytes int64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return id, fi.Size(), false
	}
	return [2]uint64{uint64(st.Dev), uint64(st.Ino)}, int64(st.Blocks) * 512, true
}

// Terminate asks process pid to stop (SIGTERM); flapjack's own processes
// then finish what they are doing and exit.
func Terminate(pid int) error { return syscall.Kill(pid, syscall.SIGTERM) }

// FreeSpace is how many bytes an unprivileged user may still write on the
// file system that holds dir.
func FreeSpace(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}

// ExecutableNames are the file names a command called name may have: name
// itself.
func ExecutableNames(name string) []string { return []string{name} }

// IsExecutable reports whether a file may be run: a regular file with an
// execute bit.
func IsExecutable(fi fs.FileInfo) bool { return fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 }
