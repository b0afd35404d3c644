//go:build linux

// Command hostile measures lameduck under hostile clients, next to the
// pod's memory limit. Each part runs on a fresh lameduck with its defaults
// and -gomemlimit on loopback:
//
//   - mix: -idle keep-alive connections, each answered once and then held;
//     -headers connections holding an unfinished header block of
//     -header-bytes; and -keys POST /jobs with distinct Idempotency-Keys;
//   - h2c (h2c.go): -h2-conns HTTP/2 connections with prior knowledge, each
//     opening -h2-streams streams of GET -h2-path with a filler header and a
//     request body the handler never reads, held open.
//
// While a part holds its connections, -newcomers fresh connections send one
// GET /hello each: the table says how many were answered 200 within 1 s.
// Then it reads the peak resident memory (VmHWM), sends SIGTERM with the
// connections still open, and reads the exit code and the exit's account.
// Every load is bounded: -dialers goroutines open the held connections,
// -workers post the keys, 8 newcomers at most are in flight.
//
//	go run ./internal/bench/cmd/hostile -idle 500 -keys 2000 -h2-conns 32 -out ''
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lameduck/lameduck/e2e/internal/bench/procfs"
	"github.com/lameduck/lameduck/internal/child"
)

type options struct {
	binary, out, gomemlimit, env string
	limit                        int64
	idle, headers, keys          int
	headerBytes, keyBytes        int
	dialers, workers, newcomers  int

	h2Conns, h2Streams    int
	h2HeaderBytes, h2Body int
	h2Path                string
}

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "", "lameduck binary to run (empty: go build it)")
	flag.StringVar(&o.out, "out", "internal/bench/HOSTILE.md", "write the table to this file (empty: only print it)")
	flag.StringVar(&o.gomemlimit, "gomemlimit", "56MiB", "GOMEMLIMIT of the server: what the program's defaults budget for a 64Mi pod")
	flag.Int64Var(&o.limit, "limit", 64<<20, "the pod's limits.memory in bytes, to compare with")
	flag.StringVar(&o.env, "env", "", "extra LAMEDUCK_ variables for the server, comma-separated K=V")
	flag.IntVar(&o.idle, "idle", 4000, "mix: idle keep-alive connections (each answered once, then held)")
	flag.IntVar(&o.headers, "headers", 50, "mix: connections holding an unfinished header block")
	flag.IntVar(&o.headerBytes, "header-bytes", 7000, "mix: size of each unfinished header block (under LAMEDUCK_MAX_HEADER_BYTES it holds its connection)")
	flag.IntVar(&o.keys, "keys", 100000, "mix: POST /jobs with distinct Idempotency-Keys")
	flag.IntVar(&o.keyBytes, "key-bytes", 256, "mix: length of each Idempotency-Key")
	flag.IntVar(&o.dialers, "dialers", 64, "goroutines opening the held connections")
	flag.IntVar(&o.workers, "workers", 16, "goroutines (and connections) posting keyed jobs")
	flag.IntVar(&o.newcomers, "newcomers", 200, "fresh connections, one GET /hello each, while a part holds its connections")
	flag.IntVar(&o.h2Conns, "h2-conns", 512, "h2c: connections (0: skip the part)")
	flag.IntVar(&o.h2Streams, "h2-streams", 100, "h2c: streams opened on each connection (beyond the 16 lameduck allows, each is reset)")
	flag.IntVar(&o.h2HeaderBytes, "h2-header-bytes", 7000, "h2c: size of a filler header on each stream")
	flag.IntVar(&o.h2Body, "h2-body", 16384, "h2c: request body sent on each stream, as far as flow control allows (never ended, never read)")
	flag.StringVar(&o.h2Path, "h2-path", "/hello?delay=4s", "h2c: the path of each stream (GET)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
}

// run measures the parts and writes the table. Its error says whether the
// service or the harness failed; the table is written anyway.
func run(o options) error {
	machine := procfs.Machine()
	if o.binary == "" {
		dir, err := os.MkdirTemp("", "hostile")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if o.binary, err = child.Build(context.Background(), dir, "-trimpath", "-ldflags", "-s -w"); err != nil {
			return fmt.Errorf("harness failed: %w", err)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# lameduck under hostile clients\n\n%s\n\nWritten by internal/bench/cmd/hostile: each part on a fresh lameduck "+
		"with its defaults, GOMEMLIMIT=%s%s. Newcomers: %d fresh connections, 8 at a time, one GET /hello each, while the part "+
		"holds its connections. SIGTERM with the connections still open.\n\n", machine, o.gomemlimit, envNote(o.env), o.newcomers)
	b.WriteString("| part | what the clients held | newcomers answered 200 within 1 s | peak RSS (VmHWM) of limits.memory | the exit's account | exit code |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	var errs []error
	for _, p := range []struct {
		name string
		on   bool
		f    func(addr string) (held, newcomers string, release func())
	}{{"mix", o.idle+o.headers+o.keys > 0, o.mix}, {"h2c", o.h2Conns > 0, o.h2c}} {
		if p.on {
			row, err := o.part(p.name, p.f)
			b.WriteString(row)
			errs = append(errs, err)
		}
	}
	if n := harnessFailures.Load(); n > 0 {
		errs = append(errs, fmt.Errorf("harness failed: %d connections or requests, for want of its own descriptors, ports or memory", n))
	}
	fmt.Print(b.String())
	if o.out != "" {
		errs = append(errs, os.WriteFile(o.out, []byte(b.String()), 0o644))
	}
	return errors.Join(errs...)
}

// part runs one part, f, on a fresh server and returns its row. f returns
// what the clients held and what the newcomers got, with the connections
// still held; part reads the memory, sends SIGTERM, waits for the exit, and
// only then releases them.
func (o options) part(name string, f func(addr string) (held, newcomers string, release func())) (string, error) {
	env := []string{"GOMEMLIMIT=" + o.gomemlimit, "LAMEDUCK_PRESTOP_DELAY=0s"}
	if o.env != "" {
		env = append(env, strings.Split(o.env, ",")...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := child.Start(ctx, o.binary, child.Config{Env: env, Keep: func(child.Record) bool { return false }})
	if err != nil {
		return fmt.Sprintf("| %s | service failed to start: %s | | | | |\n", name, firstLine(err.Error())), fmt.Errorf("service failed: %w", err)
	}
	defer srv.Kill()
	held, newcomers, release := f(srv.HTTPAddr)
	defer release()
	var errs []error
	mem := "the service had exited"
	if _, hwm, err := procfs.Mem(srv.Pid()); err == nil {
		mem = fmt.Sprintf("%s of %s: fits", mib(hwm), mib(o.limit))
		if hwm > o.limit {
			mem = fmt.Sprintf("**%s of %s: OVER**, an OOM kill in the pod", mib(hwm), mib(o.limit))
		}
	} else {
		errs = append(errs, fmt.Errorf("service failed: %s exited during the %s part: %s", srv.Name, name, firstLine(srv.Stderr())))
	}
	_ = srv.Terminate()
	wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
	defer wcancel()
	exit := "none within 1 min of SIGTERM"
	code, err := srv.Wait(wctx)
	if err == nil {
		exit = strconv.Itoa(code)
	}
	if err != nil || code != 0 {
		errs = append(errs, fmt.Errorf("service failed: %s part: exit %s: %s", name, exit, firstLine(srv.Stderr())))
	}
	account := "none: no msg=\"shutdown complete\""
	if r := srv.Find("shutdown complete"); r != nil {
		reclaimed, _ := r["connections_reclaimed"].(map[string]any)
		account = fmt.Sprintf("connections: peak %v, reclaimed %v idle + %v header, refused %v; requests refused %v",
			r["connections_peak"], reclaimed["idle"], reclaimed["header"], r["connections_refused"], r["requests_refused"])
	}
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s |\n", name, held, newcomers, mem, account, exit), errors.Join(errs...)
}

// newcomers opens n fresh connections, 8 at a time, each sending one GET
// /hello, and says how many were answered 200 within 1 s of their dial.
func newcomers(addr string, n int) string {
	var mu sync.Mutex
	var served, harness int
	var slowest time.Duration
	each(n, 8, func(int) {
		start := time.Now()
		conn, code, err := dialHello(addr, time.Second)
		took := time.Since(start)
		if conn != nil {
			_ = conn.Close()
		}
		mu.Lock()
		defer mu.Unlock()
		slowest = max(slowest, took)
		switch {
		case harnessErr(err):
			harness++
		case err == nil && code == http.StatusOK && took <= time.Second:
			served++
		}
	})
	return fmt.Sprintf("%d of %d (slowest %s)%s", served, n, slowest.Round(time.Millisecond), harnessNote(harness))
}

// mix is issue #11's part on HTTP/1.1: idle connections, unfinished header
// blocks and keyed jobs at once. The newcomers come once the connections
// are open and have had the time a header block gets before it may be
// reclaimed (1 s), while the keys are still being posted.
func (o options) mix(addr string) (string, string, func()) {
	var wg sync.WaitGroup
	var idle, half *held
	var keys *keyResult
	wg.Go(func() { idle = hold(addr, o.idle, o.dialers, keepAlive) })
	wg.Go(func() { half = hold(addr, o.headers, o.dialers, unfinished(o.headerBytes)) })
	posted := make(chan struct{})
	go func() { // owned here: mix waits for posted
		defer close(posted)
		keys = postKeys("http://"+addr, o.keys, o.keyBytes, o.workers)
	}()
	wg.Wait()
	time.Sleep(1200 * time.Millisecond)
	fresh := newcomers(addr, o.newcomers)
	<-posted
	return fmt.Sprintf("%d idle keep-alive (%s); %d unfinished %d-byte header blocks (%s); %d POST /jobs with distinct %d-byte Idempotency-Keys (%s)",
		o.idle, idle, o.headers, o.headerBytes, half, o.keys, o.keyBytes, keys), fresh, func() { idle.close(); half.close() }
}

// held are connections a part holds open.
type held struct {
	mu      sync.Mutex
	conns   []net.Conn
	ok      int // opened as asked (answered 200, or the header block sent)
	failed  int // refused, closed or answered otherwise by the server
	harness int // not opened for want of the harness's own resources
}

func (h *held) String() string {
	return fmt.Sprintf("%d opened, %d failed, %d still open at the end%s", h.ok, h.failed, h.open(), harnessNote(h.harness))
}

// hold opens n connections, conc at a time, runs open on each, and keeps them.
func hold(addr string, n, conc int, open func(net.Conn) error) *held {
	h := &held{}
	each(n, conc, func(int) {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err == nil {
			_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
			err = open(conn)
			_ = conn.SetDeadline(time.Time{})
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		switch {
		case harnessErr(err):
			h.harness++
		case err != nil:
			h.failed++
		default:
			h.ok++
		}
		if conn != nil {
			h.conns = append(h.conns, conn)
		}
	})
	return h
}

// keepAlive sends GET /hello and reads a 200: the connection is then idle.
func keepAlive(conn net.Conn) error {
	code, err := hello(conn)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("GET /hello: %d", code)
	}
	return err
}

// unfinished sends size bytes of header block, never the blank line that
// ends it.
func unfinished(size int) func(net.Conn) error {
	block := "GET /hello HTTP/1.1\r\nHost: lameduck\r\n" + strings.Repeat("X-Filler: "+strings.Repeat("h", 80)+"\r\n", size/92+1)
	block = block[:size]
	return func(conn net.Conn) error {
		_, err := io.WriteString(conn, block)
		return err
	}
}

// open counts the held connections the server has not closed: a read that
// times out (rather than EOF or reset) means the connection is open.
func (h *held) open() int {
	n := 0
	for _, conn := range h.conns {
		_ = conn.SetReadDeadline(time.Now().Add(time.Millisecond))
		var ne net.Error
		if _, err := conn.Read(make([]byte, 1)); errors.As(err, &ne) && ne.Timeout() {
			n++
		}
	}
	return n
}

func (h *held) close() {
	for _, conn := range h.conns {
		_ = conn.Close()
	}
}

// dialHello opens a connection and sends one GET /hello on it, all within d.
func dialHello(addr string, d time.Duration) (net.Conn, int, error) {
	conn, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		return nil, 0, err
	}
	_ = conn.SetDeadline(time.Now().Add(d))
	code, err := hello(conn)
	return conn, code, err
}

// hello sends GET /hello on conn and reads the answer.
func hello(conn net.Conn) (int, error) {
	if _, err := io.WriteString(conn, "GET /hello HTTP/1.1\r\nHost: lameduck\r\n\r\n"); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Body.Close()
}

// keyResult counts the answers to the keyed jobs.
type keyResult struct {
	mu            sync.Mutex
	byCode        map[int]int
	errs, harness int
}

func (k *keyResult) String() string {
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(k.byCode)) {
		parts = append(parts, fmt.Sprintf("%d× %d", k.byCode[c], c))
	}
	return fmt.Sprintf("%s; %d transport errors%s", strings.Join(parts, ", "), k.errs, harnessNote(k.harness))
}

// postKeys posts n jobs of no work, conc at a time, each with its own key
// of size bytes.
func postKeys(base string, n, size, conc int) *keyResult {
	k := &keyResult{byCode: map[int]int{}}
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}}
	defer client.CloseIdleConnections()
	each(n, conc, func(i int) {
		req, _ := http.NewRequest(http.MethodPost, base+"/jobs?work=0s", strings.NewReader(`{}`))
		req.Header.Set("Idempotency-Key", fmt.Sprintf("%0*d", size, i))
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		switch {
		case harnessErr(err):
			k.harness++
		case err != nil:
			k.errs++
		default:
			k.byCode[resp.StatusCode]++
		}
	})
	return k
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

// harnessFailures counts the errors harnessErr found.
var harnessFailures atomic.Int64

// harnessErr reports whether err is the harness's own: it ran out of file
// descriptors, ports or memory, rather than the server refusing. It counts
// each such error in harnessFailures.
func harnessErr(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.EADDRNOTAVAIL, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, e) {
			harnessFailures.Add(1)
			return true
		}
	}
	return false
}

func harnessNote(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("; **harness failed %d times** (out of descriptors, ports or memory)", n)
}

func envNote(env string) string {
	if env == "" {
		return ""
	}
	return ", " + env
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}
