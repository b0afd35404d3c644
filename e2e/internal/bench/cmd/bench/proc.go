//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lameduck/lameduck/internal/child"
)

// proc is one running server (lameduck or plain) started by the harness,
// through child, which the whole-binary tests and the rehearsal share.
type proc struct {
	*child.Process
	name      string
	started   time.Time // just before the fork
	httpAddr  string    // from the "serving" record
	adminAddr string    // from the "serving" record; lameduck only
}

// startProc runs binary with args, and env added to a clean environment and returns
// once it logs "serving" (10 s at most). onLine, when set, sees every line of
// standard output; the harness then keeps only the lifecycle records, not
// one per job.
func startProc(ctx context.Context, name, binary string, args, env []string, onLine func([]byte)) (*proc, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cfg := child.Config{Name: name, Args: args, Env: env, OnLine: onLine}
	if onLine != nil {
		cfg.Keep = func(child.Record) bool { return false }
	}
	bp, err := child.Start(ctx, binary, cfg)
	if err != nil {
		return nil, err
	}
	return &proc{Process: bp, name: name, started: bp.Started, httpAddr: bp.HTTPAddr, adminAddr: bp.AdminAddr}, nil
}

// Terminate sends SIGTERM and returns when it went.
func (p *proc) Terminate() (time.Time, error) {
	if err := p.Process.Terminate(); err != nil {
		return time.Time{}, err
	}
	return p.Terminated(), nil
}

// Wait reports whether the process exited within d.
func (p *proc) Wait(d time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, err := p.Process.Wait(ctx)
	return err == nil
}

// Stop terminates the process and waits up to 20 s, then kills it.
func (p *proc) Stop() {
	select {
	case <-p.Exited():
		return
	default:
	}
	if _, err := p.Terminate(); err == nil && p.Wait(20*time.Second) {
		return
	}
	p.Kill()
}

// Complete reports whether the process logged msg="shutdown complete".
func (p *proc) Complete() bool { return p.Find("shutdown complete") != nil }

// cpuTicks returns the user and system CPU time pid has used, in clock
// ticks of 1/100 s (Linux's USER_HZ).
func cpuTicks(pid int) (user, sys int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name, in parentheses, may hold spaces: fields start after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	user, err1 := strconv.ParseInt(f[11], 10, 64) // field 14, utime
	sys, err2 := strconv.ParseInt(f[12], 10, 64)  // field 15, stime
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	return user, sys, nil
}

// ticksPerSecond is Linux's USER_HZ, the unit of /proc/PID/stat's times.
const ticksPerSecond = 100

// pin binds every thread of process pid to cpu; the threads it starts later
// inherit that from the thread that starts them.
func pin(pid, cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	for range 2 { // a thread started during the first pass is bound by the second
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return fmt.Errorf("pin %d to CPU %d: %w", pid, cpu, err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("pin thread %d of %d to CPU %d: %w", tid, pid, cpu, err)
			}
		}
	}
	return nil
}
