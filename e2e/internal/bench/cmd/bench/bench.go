//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/lameduck/lameduck/e2e/internal/bench/procfs"
)

// Targets, the numbers lameduck promises.
const (
	targetRatio           = 0.95                  // GET /hello throughput, lameduck ÷ plain net/http
	targetOvershoot       = 50 * time.Millisecond // shutdown beyond what it must wait for
	targetStartup         = 50 * time.Millisecond // process start to /ready 200
	targetImage     int64 = 12 << 20              // bytes
	targetIdleRSS   int64 = 15 << 20              // bytes
)

// bench runs the measurements. Each method returns table rows; lifecycle
// and overhead also leave memory readings for footprint.
type bench struct {
	o    options
	bins binaries
	dir  string
	logf func(format string, args ...any)

	idleRSS           []int64 // VmRSS of idle lameduck processes (lifecycle)
	loadHWM, plainHWM int64   // VmHWM after the overhead rounds
}

// row is one line of the table.
type row struct{ Metric, Target, Measured, Result string }

const none = "—"

func verdict(ok bool) string {
	if ok {
		return "pass"
	}
	return "MISS"
}

func (b *bench) gomaxprocs() string { return "GOMAXPROCS=" + strconv.Itoa(b.o.gomaxprocs) }

// startLameduck starts lameduck on loopback ports the kernel picks, with
// the harness's GOMAXPROCS and the given LAMEDUCK_* settings.
func (b *bench) startLameduck(ctx context.Context, onLine func([]byte), env ...string) (*proc, error) {
	env = append([]string{b.gomaxprocs(), "LAMEDUCK_HTTP_ADDR=127.0.0.1:0", "LAMEDUCK_ADMIN_ADDR=127.0.0.1:0",
		"LAMEDUCK_LOG_FORMAT=json", "LAMEDUCK_LOG_LEVEL=info"}, env...)
	return startProc(ctx, "lameduck", b.bins.lameduck, nil, env, onLine)
}

// lifecycle starts lameduck runs times: start-up to /ready, idle memory,
// then SIGTERM to exit with nothing in flight (one idle keep-alive
// connection open, as a client pool leaves it).
func (b *bench) lifecycle(ctx context.Context) ([]row, error) {
	prestop := b.o.prestop
	var startups, overshoots []time.Duration
	b.idleRSS = nil
	for i := range b.o.runs {
		p, err := b.startLameduck(ctx, nil, "LAMEDUCK_PRESTOP_DELAY="+prestop.String())
		if err != nil {
			return nil, err
		}
		startup, err := waitReady(ctx, p)
		if err != nil {
			p.Kill()
			return nil, err
		}
		tr := &http.Transport{}
		c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		err = get(c, "http://"+p.httpAddr+"/hello")
		if err == nil {
			err = get(c, "http://"+p.adminAddr+"/metrics")
		}
		if err == nil {
			err = sleep(ctx, 500*time.Millisecond)
		}
		var rss int64
		if err == nil {
			rss, _, err = procfs.Mem(p.Pid())
		}
		if err != nil {
			p.Kill()
			return nil, err
		}
		overshoot, err := terminate(p, prestop, time.Time{})
		tr.CloseIdleConnections()
		if err != nil {
			return nil, err
		}
		startups = append(startups, startup)
		overshoots = append(overshoots, overshoot)
		b.idleRSS = append(b.idleRSS, rss)
		b.logf("run %d/%d: start-up %s, idle RSS %s, SIGTERM → exit %s beyond preStop",
			i+1, b.o.runs, fmtDur(startup), fmtMiB(rss), fmtDur(overshoot))
	}
	return []row{
		{
			"start-up: process start → /ready 200",
			fmt.Sprintf("≤ %d ms (median)", targetStartup.Milliseconds()),
			fmt.Sprintf("median %s, max %s (n=%d)", fmtDur(median(startups)), fmtDur(maxOf(startups)), len(startups)),
			verdict(median(startups) <= targetStartup),
		},
		{
			"shutdown, idle: SIGTERM → exit, beyond preStop",
			fmt.Sprintf("≤ %d ms", targetOvershoot.Milliseconds()),
			fmt.Sprintf("median %s, max %s (preStop %s, n=%d)",
				fmtDur(median(overshoots)), fmtDur(maxOf(overshoots)), fmtDur(prestop), len(overshoots)),
			verdict(maxOf(overshoots) <= targetOvershoot),
		},
	}, nil
}

// inflight sends slow requests, some ending inside the preStop delay and
// some after it, and measures SIGTERM → exit beyond max(preStop, the last
// response).
func (b *bench) inflight(ctx context.Context) ([]row, error) {
	prestop := b.o.prestop
	delays := []time.Duration{prestop / 2, prestop + 200*time.Millisecond, prestop + 500*time.Millisecond}
	var overshoots []time.Duration
	for i := range b.o.runs {
		p, err := b.startLameduck(ctx, nil, "LAMEDUCK_PRESTOP_DELAY="+prestop.String())
		if err != nil {
			return nil, err
		}
		overshoot, err := b.inflightRun(ctx, p, delays)
		if err != nil {
			p.Kill()
			return nil, err
		}
		overshoots = append(overshoots, overshoot)
		b.logf("run %d/%d: SIGTERM → exit %s beyond max(preStop, last response)", i+1, b.o.runs, fmtDur(overshoot))
	}
	ds := make([]string, len(delays))
	for i, d := range delays {
		ds[i] = strconv.FormatInt(d.Milliseconds(), 10)
	}
	return []row{{
		"shutdown, requests in flight: SIGTERM → exit, beyond max(preStop, last response)",
		fmt.Sprintf("≤ %d ms", targetOvershoot.Milliseconds()),
		fmt.Sprintf("median %s, max %s (preStop %s; in flight at SIGTERM: ?delay= %s ms; n=%d)",
			fmtDur(median(overshoots)), fmtDur(maxOf(overshoots)), fmtDur(prestop), strings.Join(ds, ", "), len(overshoots)),
		verdict(maxOf(overshoots) <= targetOvershoot),
	}}, nil
}

func (b *bench) inflightRun(ctx context.Context, p *proc, delays []time.Duration) (time.Duration, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: len(delays)}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	type answer struct {
		at  time.Time
		err error
	}
	answers := make(chan answer, len(delays))
	for _, d := range delays {
		go func() {
			err := get(c, fmt.Sprintf("http://%s/hello?delay=%dms", p.httpAddr, d.Milliseconds()))
			answers <- answer{time.Now(), err}
		}()
	}
	// SIGTERM once the server is serving every one of them.
	probe := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := metricValue(probe, "http://"+p.adminAddr+"/metrics", "lameduck_http_inflight_requests")
		if err != nil {
			return 0, err
		}
		if int(n) == len(delays) {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("in-flight requests: %v after 5s; want %d", n, len(delays))
		}
		if err := sleep(ctx, 2*time.Millisecond); err != nil {
			return 0, err
		}
	}
	probe.CloseIdleConnections()
	ts, err := p.Terminate()
	if err != nil {
		return 0, err
	}
	var last time.Time
	for range delays {
		a := <-answers
		if a.err != nil {
			return 0, fmt.Errorf("request in flight at SIGTERM: %w", a.err)
		}
		if a.at.After(last) {
			last = a.at
		}
	}
	return exited(p, ts, b.o.prestop, last)
}

// footprint reports the image (or binary) size and lameduck's memory.
func (b *bench) footprint(ctx context.Context) ([]row, error) {
	var rows []row
	binSize, err := fileSize(b.bins.lameduck)
	if err != nil {
		return nil, err
	}
	imgRow := row{"image size (lameduck, FROM scratch)", fmt.Sprintf("≤ %d MiB", targetImage>>20), "", none}
	binTarget := none
	size, err := b.imageSize(ctx)
	if err == nil {
		imgRow.Measured = fmt.Sprintf("%s (docker image inspect: Dockerfile stage prebuilt, binary built here)", fmtMiB(size))
		imgRow.Result = verdict(size <= targetImage)
	} else {
		imgRow.Measured = "not measured: " + firstLine(err.Error()) + "; see the static binary below"
		binTarget = fmt.Sprintf("≤ %d MiB (the image's only file)", targetImage>>20)
	}
	rows = append(rows, imgRow, row{"static binary size (CGO_ENABLED=0, -trimpath, -s -w)", binTarget, fmtMiB(binSize), none})
	if binTarget != none {
		rows[len(rows)-1].Result = verdict(binSize <= targetImage)
	}
	if len(b.idleRSS) > 0 {
		rss := median(b.idleRSS)
		rows = append(rows, row{
			"resident memory (VmRSS), idle",
			fmt.Sprintf("≤ %d MiB", targetIdleRSS>>20),
			fmt.Sprintf("%s (median of %d fresh processes after /ready, one /hello and one /metrics scrape; max %s)",
				fmtMiB(rss), len(b.idleRSS), fmtMiB(maxOf(b.idleRSS))),
			verdict(rss <= targetIdleRSS),
		})
	}
	if b.loadHWM > 0 {
		rows = append(rows, row{
			"resident memory under load (peak VmHWM), lameduck vs plain",
			none,
			fmt.Sprintf("%s vs %s (after the GET /hello rounds, %d connections)", fmtMiB(b.loadHWM), fmtMiB(b.plainHWM), b.o.conns),
			none,
		})
	}
	return rows, nil
}

// imageSize builds the Dockerfile's prebuilt stage from the binary built
// here (so the size is this tree's, not a stale lameduck:dev's), reads its
// size, and removes it.
func (b *bench) imageSize(ctx context.Context) (int64, error) {
	if !b.o.docker {
		return 0, fmt.Errorf("-docker=false")
	}
	docker, err := exec.LookPath("docker")
	if err != nil {
		return 0, fmt.Errorf("docker not found")
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, docker, "build", "-q", "-f", filepath.Join(b.bins.root, "Dockerfile"),
		"--target", "prebuilt", "--build-arg", "BINARY=lameduck", "-t", b.o.image, filepath.Dir(b.bins.lameduck))
	if out, err := build.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("docker build: %w: %s", err, bytes.TrimSpace(out))
	}
	defer func() {
		_ = exec.Command(docker, "image", "rm", "-f", b.o.image).Run()
	}()
	out, err := exec.CommandContext(ctx, docker, "image", "inspect", b.o.image, "--format", "{{.Size}}").Output()
	if err != nil {
		return 0, fmt.Errorf("docker image inspect: %w", err)
	}
	return strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
}

// jobWorkers is LAMEDUCK_WORKERS for the queue measurement (its default).
const jobWorkers = 4

// jobLoads are the offered job rates, in multiples of the workers' capacity.
var jobLoads = []int{1, 2, 5}

// queue offers POST /jobs at 1×, 2× and 5× what the workers can process,
// each to a fresh lameduck with the default job and drain settings, then
// sends SIGTERM and reads the account: every 202 must be processed, none
// dropped. Each job's enqueue→processed latency is read from its
// msg="job processed" record.
func (b *bench) queue(ctx context.Context) ([]row, error) {
	capacity := float64(jobWorkers) / b.o.jobWork.Seconds() // jobs a second
	var rows []row
	for _, mult := range jobLoads {
		r, err := b.jobLoad(ctx, mult, int(math.Round(capacity*float64(mult))))
		if err != nil {
			return nil, fmt.Errorf("jobs at %d× capacity: %w", mult, err)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func (b *bench) jobLoad(ctx context.Context, mult, rate int) (row, error) {
	var mu sync.Mutex
	var latencies []time.Duration
	var summary struct {
		Processed int `json:"jobs_processed"`
		Dropped   int `json:"jobs_dropped"`
		Accepted  int `json:"jobs_accepted"`
	}
	var bad error
	onLine := func(line []byte) {
		processed := bytes.Contains(line, []byte(`"msg":"job processed"`))
		complete := bytes.Contains(line, []byte(`"msg":"shutdown complete"`))
		if !processed && !complete {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if complete {
			if err := json.Unmarshal(line, &summary); err != nil {
				bad = fmt.Errorf("shutdown record %s: %w", line, err)
			}
			return
		}
		var rec struct {
			Latency string `json:"latency"`
		}
		err := json.Unmarshal(line, &rec)
		var d time.Duration
		if err == nil {
			d, err = time.ParseDuration(rec.Latency)
		}
		if err != nil {
			bad = fmt.Errorf("job record %s: %w", line, err)
			return
		}
		latencies = append(latencies, d)
	}
	p, err := b.startLameduck(ctx, onLine, "LAMEDUCK_PRESTOP_DELAY=0s", "LAMEDUCK_JOB_DURATION="+b.o.jobWork.String(),
		"LAMEDUCK_WORKERS="+strconv.Itoa(jobWorkers))
	if err != nil {
		return row{}, err
	}
	defer p.Stop()

	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	a := vegeta.NewAttacker(vegeta.Client(&http.Client{Transport: tr}), vegeta.Timeout(5*time.Second),
		vegeta.Workers(8), vegeta.MaxWorkers(64)) // a bounded load
	target := vegeta.Target{Method: http.MethodPost, URL: "http://" + p.httpAddr + "/jobs", Body: []byte(`{"task":"bench"}`)}
	var m vegeta.Metrics
	for r := range a.Attack(vegeta.NewStaticTargeter(target), vegeta.Rate{Freq: rate, Per: time.Second}, b.o.jobFor, "jobs") {
		m.Add(r)
	}
	m.Close()
	accepted, refused := m.StatusCodes["202"], m.StatusCodes["503"]
	others := int(m.Requests) - accepted - refused

	// SIGTERM right after the load: the drain must finish every 202.
	if _, err := p.Terminate(); err != nil {
		return row{}, err
	}
	if !p.Wait(30 * time.Second) {
		return row{}, fmt.Errorf("lameduck did not exit within 30s of SIGTERM")
	}
	mu.Lock()
	defer mu.Unlock()
	if bad != nil {
		return row{}, bad
	}
	if !p.Complete() {
		return row{}, fmt.Errorf("lameduck exited %d without msg=\"shutdown complete\":\n%s", p.ExitCode(), p.Log())
	}
	lat := sorted(latencies)
	b.logf("%d POST /jobs at %.1f/s (%d× capacity): %d accepted, %d refused, %d other; %d processed, %d dropped; exit %d",
		m.Requests, m.Rate, mult, accepted, refused, others, len(lat), summary.Dropped, p.ExitCode())
	ok := summary.Dropped == 0 && p.ExitCode() == 0 && others == 0 && summary.Accepted == accepted &&
		summary.Processed == accepted && len(lat) == accepted
	latency := "none processed"
	if len(lat) > 0 {
		latency = fmt.Sprintf("latency p50 %s, p99 %s, max %s", fmtDur(percentile(lat, 0.50)), fmtDur(percentile(lat, 0.99)), fmtDur(lat[len(lat)-1]))
	}
	return row{
		fmt.Sprintf("POST /jobs at %d× capacity: %d req/s for %s (%d workers × %s jobs), then SIGTERM", mult, rate, fmtDur(b.o.jobFor), jobWorkers, b.o.jobWork),
		"0 dropped, exit 0",
		fmt.Sprintf("%d offered (%.1f req/s): %d accepted, %d processed, %d rejected (503), %d other, %d dropped, exit %d; enqueue → processed %s",
			m.Requests, m.Rate, accepted, summary.Processed, refused, others, summary.Dropped, p.ExitCode(), latency),
		verdict(ok),
	}, nil
}

// waitReady polls GET /ready (new connection each time, as the kubelet
// probes) and returns the time from p's start to the first 200.
func waitReady(ctx context.Context, p *proc) (time.Duration, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Get("http://" + p.adminAddr + "/ready")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(p.started), nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("/ready not 200 within 10s (last error %v)", err)
		}
		if err := sleep(ctx, time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// terminate sends SIGTERM and returns what exited returns.
func terminate(p *proc, prestop time.Duration, after time.Time) (time.Duration, error) {
	ts, err := p.Terminate()
	if err != nil {
		p.Kill()
		return 0, err
	}
	return exited(p, ts, prestop, after)
}

// exited waits for p, sent SIGTERM at ts, to exit, checks it was clean (exit
// code 0, msg="shutdown complete") and returns how long after
// max(ts + prestop, after) it exited. Only one SIGTERM may be sent: a
// second aborts lameduck's shutdown.
func exited(p *proc, ts time.Time, prestop time.Duration, after time.Time) (time.Duration, error) {
	if !p.Wait(prestop + 30*time.Second) {
		p.Kill()
		return 0, fmt.Errorf("lameduck did not exit within %s of SIGTERM", prestop+30*time.Second)
	}
	if p.ExitCode() != 0 || !p.Complete() {
		return 0, fmt.Errorf("lameduck exited with code %d (shutdown complete logged: %t):\n%s", p.ExitCode(), p.Complete(), p.Log())
	}
	ref := ts.Add(prestop)
	if after.After(ref) {
		ref = after
	}
	return p.ExitedAt().Sub(ref), nil
}

func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// get fetches url and wants 200.
func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s = %d; want 200", url, resp.StatusCode)
	}
	return nil
}

// metricValue reads one unlabelled sample from a Prometheus text endpoint.
func metricValue(c *http.Client, url, name string) (float64, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no sample %s", url, name)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
