//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one running server (lameduck or plain) started by the harness.
type proc struct {
	name      string
	started   time.Time // just before the fork
	httpAddr  string    // from the "serving" record
	adminAddr string    // from the "serving" record; lameduck only

	cmd    *exec.Cmd
	onLine func([]byte) // every line of standard output, called from one goroutine
	exited chan struct{}

	mu       sync.Mutex
	log      bytes.Buffer // standard output and error, for error messages
	serving  chan servingRecord
	complete bool // logged msg="shutdown complete"
	exitedAt time.Time
	exitCode int
}

type servingRecord struct {
	Msg       string `json:"msg"`
	HTTPAddr  string `json:"http_addr"`
	AdminAddr string `json:"admin_addr"`
}

// startProc runs binary with env added to a cleaned environment and returns
// once it has printed its msg="serving" record. onLine, when not nil, sees
// every line of its standard output.
func startProc(ctx context.Context, name, binary string, env []string, onLine func([]byte)) (*proc, error) {
	cmd := exec.Command(binary)
	cmd.Env = append(cleanEnv(os.Environ()), env...)
	// The kernel kills a server whose harness dies, so none outlives a run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, onLine: onLine, exited: make(chan struct{}), serving: make(chan servingRecord, 1)}
	cmd.Stdout = &lineWriter{fn: p.line}
	cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.log}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		_ = cmd.Wait()
		at := time.Now()
		p.mu.Lock()
		p.exitedAt, p.exitCode = at, cmd.ProcessState.ExitCode()
		p.mu.Unlock()
		close(p.exited)
	}()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case rec := <-p.serving:
		p.httpAddr, p.adminAddr = rec.HTTPAddr, rec.AdminAddr
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("start %s: exited with code %d before serving:\n%s", name, p.ExitCode(), p.Log())
	case <-timer.C:
		p.Kill()
		return nil, fmt.Errorf("start %s: not serving after 10s:\n%s", name, p.Log())
	case <-ctx.Done():
		p.Kill()
		return nil, fmt.Errorf("start %s: %w", name, context.Cause(ctx))
	}
}

func (p *proc) line(b []byte) {
	var rec servingRecord
	if bytes.Contains(b, []byte(`"msg":"`)) && json.Unmarshal(b, &rec) == nil {
		switch rec.Msg {
		case "serving":
			select {
			case p.serving <- rec:
			default:
			}
		case "shutdown complete":
			p.mu.Lock()
			p.complete = true
			p.mu.Unlock()
		}
	}
	if p.onLine != nil {
		p.onLine(b)
		return // the caller keeps what it needs; the harness does not hold every job record
	}
	p.mu.Lock()
	p.log.Write(b)
	p.log.WriteByte('\n')
	p.mu.Unlock()
}

// Pid is the process id.
func (p *proc) Pid() int { return p.cmd.Process.Pid }

// Terminate sends SIGTERM and returns when it did.
func (p *proc) Terminate() (time.Time, error) {
	t := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return t, fmt.Errorf("terminate %s: %w", p.name, err)
	}
	return t, nil
}

// Wait waits at most d for the process to exit and reports whether it did.
func (p *proc) Wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.exited:
		return true
	case <-t.C:
		return false
	}
}

// Stop sends SIGTERM, waits up to 20 s, then kills. It is safe to call after
// the process has exited.
func (p *proc) Stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	if _, err := p.Terminate(); err == nil && p.Wait(20*time.Second) {
		return
	}
	p.Kill()
}

// Kill sends SIGKILL unless the process has exited, and waits until it has.
func (p *proc) Kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// ExitedAt is when the process was seen to exit; ExitCode its code (-1 for
// a signal). Both are valid once Wait has returned true.
func (p *proc) ExitedAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitedAt
}

func (p *proc) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitCode
}

// Complete reports whether the process logged msg="shutdown complete".
func (p *proc) Complete() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.complete
}

// Log returns what the process wrote (standard error, and standard output
// when no onLine took it).
func (p *proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// cleanEnv drops the variables that would change what is measured:
// LAMEDUCK_* and the Go runtime's knobs. The harness sets what it needs.
func cleanEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "LAMEDUCK_"),
			name == "GOMAXPROCS", name == "GOGC", name == "GOMEMLIMIT", name == "GODEBUG":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// lineWriter calls fn with each complete line written to it. exec.Cmd
// writes from a single goroutine.
type lineWriter struct {
	fn   func([]byte)
	part []byte
}

func (w *lineWriter) Write(b []byte) (int, error) {
	n := len(b)
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			w.part = append(w.part, b...)
			return n, nil
		}
		if len(w.part) > 0 {
			w.part = append(w.part, b[:i]...)
			w.fn(w.part)
			w.part = w.part[:0]
		} else {
			w.fn(b[:i])
		}
		b = b[i+1:]
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}

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
