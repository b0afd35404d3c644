//go:build linux

// Command hostile measures lameduck's peak resident memory under the hostile
// mix of issue #11, next to the pod's memory limit: idle keep-alive
// connections, connections that send an unfinished header block, and many
// distinct Idempotency-Keys, all at once, with GOMEMLIMIT as in k8s/. It
// builds the binary (or takes -binary), runs it with its defaults on
// loopback, reads the kernel's peak (VmHWM) at the end, then sends SIGTERM and
// reports the exit code. Every load is bounded: -dialers goroutines open the
// connections, -workers send the keyed jobs.
//
// Then, on a fresh server, its h2c part (h2c.go): -h2-conns HTTP/2
// connections with prior knowledge, each opening -h2-streams streams of GET
// -h2-path with a large header and a request body the handler never reads,
// held open; it reports the peak resident memory, the answers (200, 503 with
// Retry-After, streams reset unanswered) and the most requests in handlers.
//
//	go run ./internal/bench/cmd/hostile                    # the mix
//	go run ./internal/bench/cmd/hostile -idle 1000 -keys 20000 -out ''
//	go run ./internal/bench/cmd/hostile -idle 0 -headers 0 -keys 0 -h2-streams 16 -out ''
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lameduck/lameduck/e2e/internal/bench/procfs"
	"github.com/lameduck/lameduck/internal/child"
)

type options struct {
	binary, out, gomemlimit, env string
	limit                        int64
	idle, headers, keys          int
	headerBytes, keyBytes        int
	dialers, workers             int

	h2Conns, h2Streams    int // the h2c part: connections, streams on each
	h2HeaderBytes, h2Body int
	h2Path                string
}

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "", "lameduck binary to run (empty: go build it from the working directory)")
	flag.StringVar(&o.out, "out", "internal/bench/HOSTILE.md", "write the table to this file (empty: only print it)")
	flag.StringVar(&o.gomemlimit, "gomemlimit", "56MiB", "GOMEMLIMIT of the server: 56MiB is what the program's defaults budget for a 64Mi pod")
	flag.Int64Var(&o.limit, "limit", 64<<20, "the pod's limits.memory in bytes, to compare with")
	flag.StringVar(&o.env, "env", "", "extra LAMEDUCK_ variables for the server, comma-separated K=V")
	flag.IntVar(&o.idle, "idle", 4000, "idle keep-alive connections (each answered once, then held)")
	flag.IntVar(&o.headers, "headers", 50, "connections sending an unfinished header block")
	flag.IntVar(&o.headerBytes, "header-bytes", 1<<20, "size of each unfinished header block")
	flag.IntVar(&o.keys, "keys", 100000, "POST /jobs with distinct Idempotency-Keys")
	flag.IntVar(&o.keyBytes, "key-bytes", 256, "length of each Idempotency-Key")
	flag.IntVar(&o.dialers, "dialers", 64, "goroutines opening connections")
	flag.IntVar(&o.workers, "workers", 16, "goroutines (and connections) posting keyed jobs")
	flag.IntVar(&o.h2Conns, "h2-conns", 512, "the h2c part, on a fresh server: h2c connections (0: skip the part)")
	flag.IntVar(&o.h2Streams, "h2-streams", 100, "streams opened on each h2c connection (beyond the 16 lameduck allows, each is reset: a hostile client)")
	flag.IntVar(&o.h2HeaderBytes, "h2-header-bytes", 7000, "size of a filler header on each stream")
	flag.IntVar(&o.h2Body, "h2-body", 16384, "request body sent on each stream, as far as flow control allows (never ended, never read)")
	flag.StringVar(&o.h2Path, "h2-path", "/hello?delay=4s", "the path of each stream (GET)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.binary == "" {
		dir, err := os.MkdirTemp("", "hostile")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if o.binary, err = child.Build(context.Background(), dir, "-trimpath", "-ldflags", "-s -w"); err != nil {
			return fmt.Errorf("build: %w", err)
		}
	}
	var b strings.Builder
	if o.idle+o.headers+o.keys > 0 {
		if err := o.mix(&b); err != nil {
			return err
		}
	}
	if o.h2Conns > 0 {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		if err := o.h2Mix(&b); err != nil {
			return err
		}
	}
	fmt.Print(b.String())
	if o.out != "" {
		head := fmt.Sprintf("# lameduck under a hostile mix\n\nWritten by `make bench` (internal/bench/cmd/hostile) on %s; %d CPUs, %s.\n\n",
			time.Now().UTC().Format("2006-01-02 15:04 UTC"), numCPU(), strings.TrimSpace(loadavg()))
		if err := os.WriteFile(o.out, []byte(head+b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// start runs the binary with GOMEMLIMIT and -env on loopback.
func (o options) start() (*child.Process, error) {
	env := []string{"GOMEMLIMIT=" + o.gomemlimit}
	if o.env != "" {
		env = append(env, strings.Split(o.env, ",")...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return child.Start(ctx, o.binary, child.Config{Env: env, Keep: func(child.Record) bool { return false }})
}

// stop sends SIGTERM and returns the exit code (-1: no exit within a minute).
func stop(srv *child.Process) int {
	_ = srv.Terminate()
	waitCtx, cancelWait := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancelWait()
	code, err := srv.Wait(waitCtx)
	if err != nil {
		return -1
	}
	return code
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func (o options) verdict(hwm int64) string {
	if hwm > o.limit {
		return "OVER the limit: an OOM kill in the pod"
	}
	return "fits"
}

// mix is issue #11's part: idle connections, unfinished header blocks and
// keyed jobs at once, on HTTP/1.1.
func (o options) mix(b *strings.Builder) error {
	srv, err := o.start()
	if err != nil {
		return err
	}
	defer srv.Kill()
	base := "http://" + srv.HTTPAddr

	started := time.Now()
	var wg sync.WaitGroup
	var idle, big *idleConns
	var keys *keyResult
	wg.Go(func() { idle = openIdle(srv.HTTPAddr, o.idle, o.dialers) })
	wg.Go(func() { big = openHeaders(srv.HTTPAddr, o.headers, o.headerBytes, o.dialers) })
	wg.Go(func() { keys = postKeys(base, o.keys, o.keyBytes, o.workers) })
	wg.Wait()
	mixFor := time.Since(started)
	time.Sleep(time.Second) // the server settles (the GC runs) before the reading
	_, hwm, err := procfs.Mem(srv.Pid())
	if err != nil {
		return err
	}
	stillIdle, stillBig := idle.open(), big.open()
	m := scrape("http://" + srv.AdminAddr + "/metrics")
	idle.close()
	big.close()

	code := stop(srv)
	fmt.Fprintf(b, "| hostile mix (GOMEMLIMIT=%s%s) | measured |\n|---|---|\n", o.gomemlimit, envNote(o.env))
	fmt.Fprintf(b, "| peak resident memory (VmHWM) vs limits.memory | **%s** vs %s: %s |\n", mib(hwm), mib(o.limit), o.verdict(hwm))
	fmt.Fprintf(b, "| idle keep-alive connections | %d asked, %d answered, %d refused or closed at once, %d still open at the end |\n",
		o.idle, idle.answered, idle.failed, stillIdle)
	fmt.Fprintf(b, "| unfinished %s header blocks | %d asked, %d held open at the end (the rest answered/closed by the server) |\n",
		mib(int64(o.headerBytes)), o.headers, stillBig)
	fmt.Fprintf(b, "| POST /jobs, distinct %d-byte Idempotency-Keys | %d sent in %s: %s; transport errors %d |\n",
		o.keyBytes, o.keys, mixFor.Round(time.Millisecond), keys.codes(), keys.errs.Load())
	fmt.Fprintf(b, "| keys remembered at the end | %s keys, %s bytes (lameduck_idempotency_keys, _bytes) |\n",
		m["lameduck_idempotency_keys"], m["lameduck_idempotency_bytes"])
	fmt.Fprintf(b, "| connections refused over the cap | %s (lameduck_http_connections_refused_total) |\n",
		m["lameduck_http_connections_refused_total"])
	fmt.Fprintf(b, "| Go heap in use + stacks, at the end | %s + %s (go_memstats_heap_inuse_bytes, _stack_inuse_bytes) |\n",
		mibString(m["go_memstats_heap_inuse_bytes"]), mibString(m["go_memstats_stack_inuse_bytes"]))
	fmt.Fprintf(b, "| exit after SIGTERM | %d |\n", code)
	return nil
}

// mibString prints a Prometheus sample of bytes in MiB.
func mibString(v string) string {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", f/(1<<20))
}

func envNote(env string) string {
	if env == "" {
		return ", defaults"
	}
	return ", " + env
}

// idleConns are connections the mix holds open.
type idleConns struct {
	mu       sync.Mutex
	conns    []net.Conn
	answered int
	failed   int
}

func (c *idleConns) add(conn net.Conn, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		c.answered++
	} else {
		c.failed++
	}
	if conn != nil {
		c.conns = append(c.conns, conn)
	}
}

// open counts the held connections the server has not closed: a read that
// times out (rather than EOF or reset) means the connection is open.
func (c *idleConns) open() int {
	n := 0
	var buf [1]byte
	for _, conn := range c.conns {
		_ = conn.SetReadDeadline(time.Now().Add(time.Millisecond))
		_, err := conn.Read(buf[:])
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			n++
		}
	}
	return n
}

func (c *idleConns) close() {
	for _, conn := range c.conns {
		_ = conn.Close()
	}
}

// each runs fn(i) for i in [0, n) on at most conc goroutines.
func each(n, conc int, fn func(int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, conc) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// openIdle opens n connections, sends one GET /hello on each, reads the
// answer, and keeps the connection.
func openIdle(addr string, n, conc int) *idleConns {
	var r idleConns
	each(n, conc, func(int) {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			r.add(nil, false)
			return
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(conn, "GET /hello HTTP/1.1\r\nHost: lameduck\r\n\r\n"); err != nil {
			r.add(conn, false)
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			r.add(conn, false)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		_ = conn.SetDeadline(time.Time{})
		r.add(conn, resp.StatusCode == http.StatusOK)
	})
	return &r
}

// openHeaders opens n connections and writes size bytes of header lines on
// each, never the blank line that ends them.
func openHeaders(addr string, n, size, conc int) *idleConns {
	var r idleConns
	line := "X-Filler: " + strings.Repeat("h", 1000) + "\r\n"
	each(n, conc, func(int) {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			r.add(nil, false)
			return
		}
		_ = conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
		w := bufio.NewWriter(conn)
		_, err = w.WriteString("GET /hello HTTP/1.1\r\nHost: lameduck\r\n")
		for sent := 0; err == nil && sent < size; sent += len(line) {
			_, err = w.WriteString(line)
		}
		if err == nil {
			err = w.Flush()
		}
		r.add(conn, err == nil)
	})
	return &r
}

type keyResult struct {
	mu     sync.Mutex
	byCode map[int]int
	errs   atomic.Int64
}

func (k *keyResult) codes() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var parts []string
	for _, c := range []int{202, 400, 408, 413, 431, 503} {
		if n := k.byCode[c]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d× %d", n, c))
		}
	}
	for c, n := range k.byCode {
		if !strings.Contains(" 202 400 408 413 431 503 ", " "+strconv.Itoa(c)+" ") {
			parts = append(parts, fmt.Sprintf("%d× %d", n, c))
		}
	}
	return strings.Join(parts, ", ")
}

// postKeys posts n jobs of no work, each with its own key of size bytes.
func postKeys(base string, n, size, conc int) *keyResult {
	k := &keyResult{byCode: map[int]int{}}
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc,
	}}
	defer client.CloseIdleConnections()
	ctx := context.Background()
	each(n, conc, func(i int) {
		key := fmt.Sprintf("%0*d", size, i)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/jobs?work=0s", strings.NewReader(`{}`))
		req.Header.Set("Idempotency-Key", key)
		resp, err := client.Do(req)
		if err != nil {
			k.errs.Add(1)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		k.mu.Lock()
		k.byCode[resp.StatusCode]++
		k.mu.Unlock()
	})
	return k
}

// scrape returns the unlabelled samples of a Prometheus text page.
func scrape(url string) map[string]string {
	out := map[string]string{}
	resp, err := http.Get(url)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if name, v, ok := strings.Cut(sc.Text(), " "); ok && !strings.HasPrefix(name, "#") && !strings.Contains(name, "{") {
			out[name] = v
		}
	}
	for _, k := range []string{"lameduck_idempotency_keys", "lameduck_idempotency_bytes", "lameduck_http_connections_refused_total", "lameduck_http_requests_refused_total"} {
		if out[k] == "" {
			out[k] = "n/a"
		}
	}
	return out
}

func numCPU() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return "load average " + strings.Join(f[:3], " ")
}
