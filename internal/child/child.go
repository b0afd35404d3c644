// Package child builds the lameduck binary and runs it as a child process:
// it reads the process's JSON log record by record, waits for records and for
// the exit, and sends signals. The whole-binary tests, the rollout rehearsal
// and the benchmarks all run lameduck through it, so there is one way to
// start it, one way to wait on it and one place that owns its goroutine.
package child

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Module is the import path of the module whose main package is lameduck.
const Module = "github.com/lameduck/lameduck"

// ModuleDir returns the directory of lameduck's module, from any directory
// of a module that is lameduck's or requires it (with a replace pointing at
// it, as the tooling module does).
func ModuleDir(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", Module).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return "", fmt.Errorf("find lameduck's module: go list -m %s: %w", Module, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("find lameduck's module: go list -m %s printed no directory", Module)
	}
	return dir, nil
}

// Build compiles lameduck into dir/lameduck with the go build flags given
// (for example -race, or -trimpath -ldflags ...) and returns the path.
func Build(ctx context.Context, dir string, flags ...string) (string, error) {
	root, err := ModuleDir(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "lameduck")
	args := append(append([]string{"build"}, flags...), "-o", bin, ".")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build lameduck: %w\n%s", err, out)
	}
	return bin, nil
}

// Record is one JSON log record.
type Record map[string]any

// Msg is the record's message.
func (r Record) Msg() string { s, _ := r["msg"].(string); return s }

// Config says how to run a process.
type Config struct {
	Name string   // in error messages; "lameduck" when empty
	Args []string // command-line arguments
	Env  []string // NAME=value entries added last, so they win
	// OnLine, when set, sees every line of standard output as it is read,
	// from the process's one reader goroutine; it must not keep line.
	OnLine func(line []byte)
	// Keep, when set, says which records to keep for Find, All, WaitRecord and
	// Log (a load of many jobs logs a record per job); nil keeps every one.
	// "serving" and "shutdown ..." records are always kept.
	Keep func(Record) bool
}

// Process is one running lameduck (or any program that logs JSON lines and
// a "serving" record with http_addr and admin_addr). One goroutine, started
// by Launch, reads its standard output until the process exits and then
// waits for it; Kill makes sure that happens.
type Process struct {
	Name      string
	Started   time.Time // just before the fork
	HTTPAddr  string    // the app listener's bound address, from the "serving" record
	AdminAddr string    // the admin listener's bound address, from the "serving" record

	cmd    *exec.Cmd
	cfg    Config
	exited chan struct{} // closed once the process has exited and its output is read

	mu         sync.Mutex
	records    []Record
	log        bytes.Buffer  // standard output (kept records only) and standard error, interleaved
	stderr     bytes.Buffer  // standard error alone
	changed    chan struct{} // closed and replaced on every kept record
	terminated time.Time
	exitedAt   time.Time
	exitCode   int
}

// Start runs binary with cfg and returns once it logs "serving"; ctx bounds
// that wait, not the process. The environment is the caller's without any
// LAMEDUCK_ variable or Go runtime setting (GOMAXPROCS, GOGC, GOMEMLIMIT,
// GODEBUG, GORACE), with both listeners on loopback ports the kernel picks
// and JSON logs, then cfg.Env.
func Start(ctx context.Context, binary string, cfg Config) (*Process, error) {
	p, err := Launch(binary, cfg)
	if err != nil {
		return nil, err
	}
	rec, err := p.WaitRecord(ctx, "serving")
	if err != nil {
		p.Kill()
		return nil, fmt.Errorf("start %s: %w:\n%s", p.Name, err, p.Log())
	}
	p.HTTPAddr, _ = rec["http_addr"].(string)
	p.AdminAddr, _ = rec["admin_addr"].(string)
	return p, nil
}

// Launch runs binary as Start does, without waiting for it to serve: for a
// process expected to refuse its configuration, say.
func Launch(binary string, cfg Config) (*Process, error) {
	if cfg.Name == "" {
		cfg.Name = "lameduck"
	}
	cmd := exec.Command(binary, cfg.Args...)
	cmd.Env = append(cleanEnv(os.Environ()), "GORACE=atexit_sleep_ms=0", // else -race sleeps 1 s at exit
		"LAMEDUCK_HTTP_ADDR=127.0.0.1:0", "LAMEDUCK_ADMIN_ADDR=127.0.0.1:0", "LAMEDUCK_LOG_FORMAT=json")
	cmd.Env = append(cmd.Env, cfg.Env...)
	cmd.SysProcAttr = sysProcAttr()
	p := &Process{Name: cfg.Name, cmd: cmd, cfg: cfg, exited: make(chan struct{}), changed: make(chan struct{})}
	cmd.Stderr = (*stderrWriter)(p)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.Name, err)
	}
	go p.read(stdout)
	return p, nil
}

// read owns the process: it reads its output to the end, then waits for it.
func (p *Process) read(stdout io.Reader) {
	defer close(p.exited)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p.line(sc.Bytes())
	}
	if err := sc.Err(); err != nil { // a line over 1 MiB: keep draining, or the process blocks
		fmt.Fprintf((*stderrWriter)(p), "child: reading stdout: %v\n", err)
		_, _ = io.Copy(io.Discard, stdout)
	}
	_ = p.cmd.Wait() // also waits for the stderr copy; the exit code says how it went
	p.mu.Lock()
	p.exitCode, p.exitedAt = p.cmd.ProcessState.ExitCode(), time.Now()
	p.mu.Unlock()
}

func (p *Process) line(b []byte) {
	if p.cfg.OnLine != nil {
		p.cfg.OnLine(b)
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		rec = Record{"msg": "NOT JSON", "line": string(b)}
	}
	msg := rec.Msg()
	if p.cfg.Keep != nil && !p.cfg.Keep(rec) && msg != "serving" && !strings.HasPrefix(msg, "shutdown ") {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.records = append(p.records, rec)
	p.log.Write(b)
	p.log.WriteByte('\n')
	close(p.changed)
	p.changed = make(chan struct{})
}

type stderrWriter Process

func (w *stderrWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stderr.Write(b)
	return w.log.Write(b)
}

// WaitRecord waits for the first record with msg and returns it. It fails
// when ctx ends first, or when the process exits without logging it.
func (p *Process) WaitRecord(ctx context.Context, msg string) (Record, error) {
	for {
		p.mu.Lock()
		changed := p.changed
		p.mu.Unlock()
		if r := p.Find(msg); r != nil {
			return r, nil
		}
		select {
		case <-changed:
		case <-p.exited:
			if r := p.Find(msg); r != nil { // the last records are read before exited closes
				return r, nil
			}
			return nil, fmt.Errorf("%s exited (code %d) without logging %q", p.Name, p.ExitCode(), msg)
		case <-ctx.Done():
			return nil, fmt.Errorf("no %q record from %s: %w", msg, p.Name, context.Cause(ctx))
		}
	}
}

// Find returns the first record with msg, or nil.
func (p *Process) Find(msg string) Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.records {
		if r.Msg() == msg {
			return r
		}
	}
	return nil
}

// All returns every record with msg.
func (p *Process) All(msg string) []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Record
	for _, r := range p.records {
		if r.Msg() == msg {
			out = append(out, r)
		}
	}
	return out
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s to %s: %w", sig, p.Name, err)
	}
	return nil
}

// Terminate sends SIGTERM, as the kubelet does, remembers when, and returns
// without waiting.
func (p *Process) Terminate() error {
	p.mu.Lock()
	p.terminated = time.Now()
	p.mu.Unlock()
	return p.Signal(syscall.SIGTERM)
}

// Terminated returns when Terminate was last called, or the zero time.
func (p *Process) Terminated() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.terminated
}

// Wait waits for the process to exit and returns its exit code (-1 when a
// signal killed it), or ctx's error.
func (p *Process) Wait(ctx context.Context) (int, error) {
	select {
	case <-p.exited:
		return p.ExitCode(), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("%s still running: %w", p.Name, context.Cause(ctx))
	}
}

// Kill sends SIGKILL unless the process has exited, and waits until it has.
func (p *Process) Kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// Exited is closed once the process has exited and all its output is read.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// ExitCode is the exit code once Exited is closed (-1 when a signal killed
// the process), 0 before.
func (p *Process) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitCode
}

// ExitedAt is when the process exited, once Exited is closed.
func (p *Process) ExitedAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitedAt
}

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Log returns the kept records' lines and standard error, interleaved as
// they arrived.
func (p *Process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// Stderr returns what the process wrote to standard error.
func (p *Process) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// Until calls cond every interval until it returns true (nil), or ctx ends
// (ctx's cause). It is the one poll of the harnesses, for what no record or
// exit announces, such as a metric reaching a value.
func Until(ctx context.Context, interval time.Duration, cond func() bool) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C:
		}
	}
	return nil
}

// cleanEnv drops what would make a run depend on the caller's shell.
func cleanEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "LAMEDUCK_"),
			name == "GOMAXPROCS", name == "GOGC", name == "GOMEMLIMIT", name == "GODEBUG", name == "GORACE":
			continue
		}
		out = append(out, kv)
	}
	return out
}
