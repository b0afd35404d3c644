//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
  io.write(string.format('\n{"requests":%.0f,"duration_us":%.0f,"p99_us":%.1f,"errors":%.0f}\n',
    summary.requests, summary.duration, latency:percentile(99.0),
    e.connect + e.read + e.write + e.timeout + e.status))
end
`

// wrk runs the wrk load generator: a fixed number of keep-alive connections
// sending requests back to back (a closed loop, so its load is bounded by
// its connections), which measures the most a server answers.
type wrk struct {
	path, script   string
	threads, conns int
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

// wrkResult is wrk's summary of one load.
type wrkResult struct {
	Requests   int64   `json:"requests"`
	DurationUS float64 `json:"duration_us"`
	P99US      float64 `json:"p99_us"`
	Errors     int64   `json:"errors"` // socket errors, timeouts and answers other than 2xx or 3xx
}

// run loads url for d (whole seconds, at least 1), on CPU 1 only when
// pinned. Its error is the harness's: wrk did not run or said nothing.
func (w *wrk) run(ctx context.Context, url string, d time.Duration, pinned bool) (wrkResult, error) {
	args := []string{"-t", strconv.Itoa(w.threads), "-c", strconv.Itoa(w.conns), "-d", strconv.Itoa(max(1, int(d.Seconds()))) + "s",
		"--timeout", "5s", "-s", w.script, url}
	cmd := exec.CommandContext(ctx, w.path, args...)
	if pinned { // taskset binds wrk before it starts its threads
		cmd = exec.CommandContext(ctx, "taskset", append([]string{"-c", "1", w.path}, args...)...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w: %s", url, err, bytes.TrimSpace(out))
	}
	return parseWrk(out)
}

// parseWrk reads the summary wrkScript prints last.
func parseWrk(out []byte) (wrkResult, error) {
	var r wrkResult
	i := bytes.LastIndex(out, []byte("\n{"))
	if i < 0 {
		return r, fmt.Errorf("wrk: no summary in its output: %s", bytes.TrimSpace(out))
	}
	if err := json.Unmarshal(bytes.TrimSpace(out[i:]), &r); err != nil {
		return r, fmt.Errorf("wrk: summary: %w", err)
	}
	if r.DurationUS <= 0 {
		return r, fmt.Errorf("wrk: summary with no duration: %s", bytes.TrimSpace(out[i:]))
	}
	return r, nil
}
