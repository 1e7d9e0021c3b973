//go:build windows

package main

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// passReadyPipe gives a detached runner the write end of its starter's
// readiness pipe as an inherited handle, named on its command line.
func passReadyPipe(cmd *exec.Cmd, w *os.File) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.AdditionalInheritedHandles = append(cmd.SysProcAttr.AdditionalInheritedHandles, syscall.Handle(w.Fd()))
	cmd.Args = append(cmd.Args, "--ready-fd", strconv.Itoa(int(w.Fd())))
}

// openReadyPipe opens the inherited readiness pipe handle.
func openReadyPipe(fd int) *os.File { return os.NewFile(uintptr(fd), "ready") }
