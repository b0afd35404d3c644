//go:build !linux

package rehearsal

import "syscall"

// sysProcAttr has nothing to add outside Linux: replicas are killed by the
// rehearsal itself, not by the kernel, should the rehearsal die.
func sysProcAttr() *syscall.SysProcAttr { return nil }
