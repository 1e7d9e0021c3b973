//go:build unix

package main

import (
	"os"
	"os/exec"
	"syscall"
)

// passReadyPipe gives a detached runner the write end of its starter's
// readiness pipe as fd 3.
func passReadyPipe(cmd *exec.Cmd, w *os.File) {
	cmd.ExtraFiles = []*os.File{w}
	cmd.Args = append(cmd.Args, "--ready-fd", "3")
}

// openReadyPipe opens the readiness pipe a runner was given; the agents it
// runs never get it.
func openReadyPipe(fd int) *os.File {
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "ready")
}
