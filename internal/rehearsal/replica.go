package rehearsal

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

	"github.com/lameduck/lameduck/internal/loadtest"
)

// Build compiles the lameduck binary of the enclosing module into dir and
// returns its path. It finds the module with `go env GOMOD`, so it works from
// any directory inside the module.
func Build(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find the module root: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("find the module root: not inside a Go module")
	}
	bin := filepath.Join(dir, "lameduck")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build lameduck: %w\n%s", err, out)
	}
	return bin, nil
}

// Replica is one running lameduck process. Its single goroutine reads the
// process's standard output until the process exits, then waits for it; Kill
// makes sure that happens.
type Replica struct {
	Name      string
	HTTPAddr  string // the app listener's bound address
	AdminAddr string // the admin listener's bound address
	Started   time.Time

	cmd    *exec.Cmd
	log    lockedBuffer
	exited chan struct{} // closed once the process has exited and its output is read

	mu         sync.Mutex
	terminated time.Time // when SIGTERM was sent
	exitedAt   time.Time // set before exited is closed
	exitCode   int       // set before exited is closed
}

// Start runs binary as the replica name, with env (NAME=value entries) added
// to the environment (from which every other LAMEDUCK_* variable is
// removed), its listeners on loopback ports the kernel picks. Every line of
// its standard output goes to ledger as it is written. Start returns once the
// replica logs "serving"; ctx bounds that wait, not the process.
func Start(ctx context.Context, binary, name string, env []string, ledger *loadtest.Ledger) (*Replica, error) {
	cmd := exec.Command(binary)
	cmd.Env = append(withoutLameduck(os.Environ()),
		"LAMEDUCK_HTTP_ADDR=127.0.0.1:0", "LAMEDUCK_ADMIN_ADDR=127.0.0.1:0", "LAMEDUCK_LOG_FORMAT=json")
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = sysProcAttr()
	r := &Replica{Name: name, cmd: cmd, exited: make(chan struct{})}
	cmd.Stderr = &r.log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	r.Started = time.Now()

	serving := make(chan [2]string, 1)
	go func() {
		defer close(r.exited)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		announced := false
		for sc.Scan() {
			line := sc.Bytes()
			r.log.writeLine(line)
			ledger.Line(name, line)
			var rec struct {
				Msg       string `json:"msg"`
				HTTPAddr  string `json:"http_addr"`
				AdminAddr string `json:"admin_addr"`
			}
			if !announced && json.Unmarshal(line, &rec) == nil && rec.Msg == "serving" {
				serving <- [2]string{rec.HTTPAddr, rec.AdminAddr}
				announced = true
			}
		}
		if err := sc.Err(); err != nil { // a line over 1 MiB: keep the rest, or the process blocks
			fmt.Fprintf(&r.log, "rehearsal: reading stdout: %v\n", err)
			_, _ = io.Copy(&r.log, stdout)
		}
		_ = cmd.Wait() // also waits for the stderr copy; the code says how it went
		r.mu.Lock()
		r.exitCode, r.exitedAt = cmd.ProcessState.ExitCode(), time.Now()
		r.mu.Unlock()
	}()

	select {
	case addrs := <-serving:
		r.HTTPAddr, r.AdminAddr = addrs[0], addrs[1]
		return r, nil
	case <-r.exited:
		return nil, fmt.Errorf("start %s: exited with code %d before serving:\n%s", name, r.ExitCode(), r.Log())
	case <-ctx.Done():
		r.Kill()
		return nil, fmt.Errorf("start %s: not serving: %w:\n%s", name, context.Cause(ctx), r.Log())
	}
}

// Terminate sends SIGTERM, as the kubelet does, and returns without waiting.
func (r *Replica) Terminate() error {
	r.mu.Lock()
	r.terminated = time.Now()
	r.mu.Unlock()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("terminate %s: %w", r.Name, err)
	}
	return nil
}

// Terminated returns when Terminate was called, or the zero time.
func (r *Replica) Terminated() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.terminated
}

// Kill sends SIGKILL unless the process has exited, and waits until it has.
func (r *Replica) Kill() {
	select {
	case <-r.exited:
		return
	default:
	}
	_ = r.cmd.Process.Kill()
	<-r.exited
}

// Exited is closed once the process has exited and all its output is read.
func (r *Replica) Exited() <-chan struct{} { return r.exited }

// ExitCode is the process's exit code once Exited is closed (-1 when a
// signal killed it), 0 before.
func (r *Replica) ExitCode() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exitCode
}

// ExitedAt is when the process exited, once Exited is closed.
func (r *Replica) ExitedAt() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exitedAt
}

// Log returns everything the process has written so far, standard output
// and standard error interleaved.
func (r *Replica) Log() string { return r.log.String() }

// withoutLameduck returns env without LAMEDUCK_* entries, so that the
// caller's shell cannot change a rehearsal.
func withoutLameduck(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "LAMEDUCK_") {
			out = append(out, kv)
		}
	}
	return out
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) writeLine(line []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(line)
	b.buf.WriteByte('\n')
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
