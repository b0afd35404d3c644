package rehearsal

import "syscall"

// sysProcAttr makes the kernel kill a replica whose parent dies (a test
// binary killed at its timeout, say), so that no replica outlives its
// rehearsal. The signal goes when the thread that started the replica
// exits; Go only ends threads locked with runtime.LockOSThread, which
// nothing here does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
