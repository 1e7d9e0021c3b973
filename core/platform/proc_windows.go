//go:build windows

package platform

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// stillActive is GetExitCodeProcess's answer for a process that runs.
const stillActive = 259

func sysAttr(cmd *exec.Cmd) *syscall.SysProcAttr {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	return cmd.SysProcAttr
}

// NewGroup makes cmd start as the root of a new process group, which
// receives CTRL_BREAK on a graceful StopGroup; the tree under it is what
// StopGroup stops.
func NewGroup(cmd *exec.Cmd) {
	a := sysAttr(cmd)
	a.CreationFlags |= windows.CREATE_NEW_PROCESS_GROUP
	a.HideWindow = true
}

// Detach makes cmd start without a console in a new process group, so it
// outlives its starter and no Ctrl-C of the starter's console reaches it.
func Detach(cmd *exec.Cmd) {
	a := sysAttr(cmd)
	a.CreationFlags |= windows.CREATE_NEW_PROCESS_GROUP | windows.DETACHED_PROCESS
	a.HideWindow = true
}

// SafeGroup reports whether the tree rooted at pgid may be stopped: never
// this process.
func SafeGroup(pgid int) bool { return pgid > 4 && pgid != os.Getpid() }

// StopGroup asks the process group rooted at pgid to stop (CTRL_BREAK), or
// with force terminates every process of the tree under it.
func StopGroup(pgid int, force bool) error {
	if !SafeGroup(pgid) {
		return fmt.Errorf("refusing to stop process tree %d", pgid)
	}
	if !force {
		return windows.GenerateConsoleCtrlEvent(windows.CTRL_BREAK_EVENT, uint32(pgid))
	}
	var errs []error
	for _, pid := range tree(pgid) {
		h, err := windows.OpenProcess(windows.PROCESS_TERMINATE, false, uint32(pid))
		if err != nil {
			continue // gone already
		}
		if err := windows.TerminateProcess(h, 1); err != nil {
			errs = append(errs, err)
		}
		windows.CloseHandle(h)
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// GroupAlive reports whether a process of the tree rooted at pgid runs.
func GroupAlive(pgid int) bool {
	for _, pid := range tree(pgid) {
		if _, ok := startTime(pid); ok {
			return true
		}
	}
	return false
}

// tree is root and its descendants, from a snapshot of every process.
func tree(root int) []int {
	snap, err := windows.CreateToolhelp32Snapshot(windows.TH32CS_SNAPPROCESS, 0)
	if err != nil {
		return []int{root}
	}
	defer windows.CloseHandle(snap)
	children := map[uint32][]uint32{}
	var e windows.ProcessEntry32
	e.Size = uint32(unsafe.Sizeof(e))
	for err := windows.Process32First(snap, &e); err == nil; err = windows.Process32Next(snap, &e) {
		if e.ProcessID != e.ParentProcessID {
			children[e.ParentProcessID] = append(children[e.ParentProcessID], e.ProcessID)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		for _, c := range children[uint32(out[i])] {
			out = append(out, int(c))
		}
	}
	return out
}

// startTime is pid's creation time (100 ns units since 1601), if it runs.
func startTime(pid int) (uint64, bool) {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return 0, false
	}
	defer windows.CloseHandle(h)
	var code uint32
	if err := windows.GetExitCodeProcess(h, &code); err != nil || code != stillActive {
		return 0, false
	}
	var created, exit, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(h, &created, &exit, &kernel, &user); err != nil {
		return 0, true
	}
	return uint64(created.HighDateTime)<<32 | uint64(created.LowDateTime), true
}

func diskUse(fi fs.FileInfo) (id [2]uint64, bytes int64, ok bool) {
	return id, fi.Size(), false
}

// Terminate stops process pid. A detached process has no console to send
// CTRL_BREAK to, so it is terminated; the runner's work survives that as it
// survives a crash.
func Terminate(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	defer p.Release()
	return p.Kill()
}

// FreeSpace is how many bytes the user may still write on the volume that
// holds dir.
func FreeSpace(dir string) (uint64, error) {
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return 0, err
	}
	var free, total, totalFree uint64
	if err := windows.GetDiskFreeSpaceEx(p, &free, &total, &totalFree); err != nil {
		return 0, err
	}
	return free, nil
}

// pathExt is the extensions Windows runs, from PATHEXT (npm installs agent
// CLIs as .cmd shims).
func pathExt() []string {
	v := os.Getenv("PATHEXT")
	if v == "" {
		v = ".COM;.EXE;.BAT;.CMD"
	}
	var out []string
	for _, e := range strings.Split(strings.ToLower(v), ";") {
		if e != "" && strings.HasPrefix(e, ".") {
			out = append(out, e)
		}
	}
	return out
}

// ExecutableNames are the file names a command called name may have: name
// with each PATHEXT extension (claude.cmd, codex.exe), or name itself when
// it has one already.
func ExecutableNames(name string) []string {
	ext := strings.ToLower(filepath.Ext(name))
	if ext != "" && slices.Contains(pathExt(), ext) {
		return []string{name}
	}
	var out []string
	for _, e := range pathExt() {
		out = append(out, name+e)
	}
	return out
}

// IsExecutable reports whether a file may be run: a regular file whose
// extension is in PATHEXT.
func IsExecutable(fi fs.FileInfo) bool {
	return fi.Mode().IsRegular() && slices.Contains(pathExt(), strings.ToLower(filepath.Ext(fi.Name())))
}
