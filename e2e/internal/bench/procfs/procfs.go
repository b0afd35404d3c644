// Package procfs reads what the benchmarks measure of a process, and of the
// machine they ran on, from Linux's /proc.
package procfs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Mem returns VmRSS (resident now) and VmHWM (peak resident) of pid in
// bytes, from /proc/PID/status.
func Mem(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(b)) {
		name, val, _ := strings.Cut(line, ":")
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		switch {
		case name != "VmRSS" && name != "VmHWM":
		case err != nil:
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, name, err)
		case name == "VmRSS":
			rss = kb << 10
		default:
			hwm = kb << 10
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return rss, hwm, nil
}

// CPU returns the user plus system time pid has used, from /proc/PID/stat
// (in ticks of 10 ms, Linux's USER_HZ).
func CPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: count fields after it.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	user, err1 := strconv.ParseInt(f[11], 10, 64) // utime, field 14
	sys, err2 := strconv.ParseInt(f[12], 10, 64)  // stime, field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	return time.Duration(user+sys) * 10 * time.Millisecond, nil
}

// Machine describes where and when a measurement ran, for the header of a
// table: the date, the CPU model and cores, the Go version, the code (git
// describe) and the load average.
func Machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if name, val, _ := strings.Cut(line, ":"); strings.TrimSpace(name) == "model name" {
				cpu = strings.TrimSpace(val)
				break
			}
		}
	}
	code := "unknown"
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		code = strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("%s · %s, %d cores · %s · code %s · load average %s",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), cpu, runtime.NumCPU(), runtime.Version(), code, Load())
}

// Load returns the 1, 5 and 15 minute load averages.
func Load() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}
