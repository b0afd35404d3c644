package child

import "syscall"

// sysProcAttr makes the kernel kill a child whose parent dies (a test binary
// killed at its timeout, say), so that no lameduck outlives its harness. The
// signal goes when the thread that started the child exits; Go only ends
// threads locked with runtime.LockOSThread, which nothing here does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
