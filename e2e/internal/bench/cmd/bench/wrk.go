//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// wrkScript makes wrk print its summary as one JSON line. It defines only
// done(), so wrk keeps its fast path: no Lua runs per request.
const wrkScript = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\n{"requests":%.0f,"duration_us":%.0f,"p50_us":%.1f,"p99_us":%.1f,"max_us":%.0f,"socket_errors":%.0f,"status_errors":%.0f}\n',
    summary.requests, summary.duration, latency:percentile(50.0), latency:percentile(99.0), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
`

// wrk runs the wrk load generator: a fixed number of keep-alive connections
// sending requests back to back (closed loop), which measures the most a
// server answers.
type wrk struct {
	path    string // the wrk binary
	script  string // wrkScript, written to a file
	threads int
	conns   int
}

func newWrk(dir string, threads, conns int) (*wrk, error) {
	path, err := exec.LookPath("wrk")
	if err != nil {
		return nil, fmt.Errorf("wrk not found (make bench installs it with apt-get install wrk): %w", err)
	}
	script := filepath.Join(dir, "summary.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return nil, err
	}
	return &wrk{path: path, script: script, threads: threads, conns: conns}, nil
}

type wrkResult struct {
	Requests     int64   `json:"requests"`
	DurationUS   float64 `json:"duration_us"`
	P50US        float64 `json:"p50_us"`
	P99US        float64 `json:"p99_us"`
	MaxUS        float64 `json:"max_us"`
	SocketErrors int64   `json:"socket_errors"`
	StatusErrors int64   `json:"status_errors"` // responses other than 2xx and 3xx

	CPU time.Duration `json:"-"` // wrk's own user and system time
}

// RPS is requests answered per second.
func (r wrkResult) RPS() float64 { return float64(r.Requests) / (r.DurationUS / 1e6) }

// P99 is the 99th percentile latency.
func (r wrkResult) P99() time.Duration { return time.Duration(r.P99US * float64(time.Microsecond)) }

// Errors counts failed requests: socket errors and non-2xx/3xx answers.
func (r wrkResult) Errors() int64 { return r.SocketErrors + r.StatusErrors }

// run loads url for d (whole seconds, at least 1); pinned, on CPU 1 only.
func (w *wrk) run(ctx context.Context, url string, d time.Duration, pinned bool) (wrkResult, error) {
	secs := max(1, int(math.Ceil(d.Seconds())))
	cmd := exec.CommandContext(ctx, w.path, "-t", strconv.Itoa(w.threads), "-c", strconv.Itoa(w.conns),
		"-d", strconv.Itoa(secs)+"s", "--timeout", "5s", "-s", w.script, url)
	if pinned {
		// taskset (util-linux) binds wrk before it starts its threads.
		cmd = exec.CommandContext(ctx, "taskset", append([]string{"-c", "1"}, cmd.Args...)...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s", url, err, out)
	}
	i := bytes.LastIndex(out, []byte("\n{"))
	if i < 0 {
		return wrkResult{}, fmt.Errorf("wrk %s: no summary in its output:\n%s", url, out)
	}
	var r wrkResult
	if err := json.Unmarshal(bytes.TrimSpace(out[i:]), &r); err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: summary: %w\n%s", url, err, out)
	}
	r.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if r.Requests == 0 || r.DurationUS <= 0 {
		return wrkResult{}, fmt.Errorf("wrk %s: no requests answered:\n%s", url, out)
	}
	return r, nil
}
