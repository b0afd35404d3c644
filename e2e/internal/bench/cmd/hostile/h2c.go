//go:build linux

package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/lameduck/lameduck/e2e/internal/bench/procfs"
)

// h2Result is what the h2c part of the mix saw, over every connection.
type h2Result struct {
	conns, refusedConns    atomic.Int64 // connections that took the preface; refused or closed before it
	streams                atomic.Int64 // streams opened (HEADERS sent)
	ok, unavailable, other atomic.Int64 // responses by status: 200, 503, anything else
	retryAfter             atomic.Int64 // 503s with a Retry-After header
	resets                 atomic.Int64 // streams reset (RST_STREAM) before any answer: over the connection's stream limit
	goAways                atomic.Int64
	bodyBytes              atomic.Int64 // request body bytes sent (never read by the handler)

	mu   sync.Mutex
	held []*h2Conn
}

func (r *h2Result) String() string {
	return fmt.Sprintf("%d streams opened on %d connections (%d refused or closed at once): %d× 200, %d× 503 (%d with Retry-After), %d other, %d reset unanswered (RST_STREAM), %d GOAWAY; %.1f MiB of request body sent, never read",
		r.streams.Load(), r.conns.Load(), r.refusedConns.Load(), r.ok.Load(), r.unavailable.Load(), r.retryAfter.Load(),
		r.other.Load(), r.resets.Load(), r.goAways.Load(), float64(r.bodyBytes.Load())/(1<<20))
}

func (r *h2Result) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.held {
		_ = c.conn.Close()
	}
}

// h2Conn is one hostile h2c connection: its reader goroutine (owned here,
// ends when the connection closes) counts the answers.
type h2Conn struct {
	conn net.Conn
	fr   *http2.Framer
	wmu  sync.Mutex // the framer's writes: the reader acks SETTINGS

	settings   chan struct{} // closed at the server's first SETTINGS
	streamWin  atomic.Int64  // the server's SETTINGS_INITIAL_WINDOW_SIZE
	maxStreams atomic.Int64  // the server's SETTINGS_MAX_CONCURRENT_STREAMS
	connWin    atomic.Int64  // connection-level send window left
}

// openH2 opens n h2c connections (prior knowledge); on each it opens streams
// streams of GET path with a headerBytes filler header, and sends each as
// much of a bodyBytes body as flow control allows, never ending it: the
// handler (GET /hello) never reads it. It then holds them all open.
func openH2(addr string, n, streams, headerBytes, bodyBytes, conc int, path string) *h2Result {
	r := &h2Result{}
	filler := strings.Repeat("f", headerBytes)
	body := bytes.Repeat([]byte("b"), bodyBytes)
	each(n, conc, func(int) {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			r.refusedConns.Add(1)
			return
		}
		c := &h2Conn{conn: conn, fr: http2.NewFramer(conn, conn), settings: make(chan struct{})}
		c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		c.fr.MaxHeaderListSize = 1 << 20
		c.connWin.Store(65535)
		c.streamWin.Store(65535)
		_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(conn, http2.ClientPreface); err != nil || c.fr.WriteSettings() != nil {
			r.refusedConns.Add(1)
			_ = conn.Close()
			return
		}
		go c.read(r)
		select {
		case <-c.settings:
		case <-time.After(5 * time.Second):
			r.refusedConns.Add(1)
			_ = conn.Close()
			return
		}
		r.conns.Add(1)
		r.mu.Lock()
		r.held = append(r.held, c)
		r.mu.Unlock()
		var hbuf bytes.Buffer
		enc := hpack.NewEncoder(&hbuf)
		for i := range streams {
			id := uint32(2*i + 1)
			hbuf.Reset()
			for _, f := range []hpack.HeaderField{
				{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
				{Name: ":authority", Value: "lameduck"}, {Name: ":path", Value: path},
				{Name: "x-filler", Value: filler, Sensitive: true}, // never indexed: sent (and decoded) whole each time
			} {
				_ = enc.WriteField(f)
			}
			c.wmu.Lock()
			err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndHeaders: true})
			if err == nil {
				r.streams.Add(1)
				// As much body as both windows allow, never the end of it.
				m := min(int64(len(body)), c.streamWin.Load(), c.connWin.Load())
				for sent := int64(0); err == nil && sent < m; {
					k := min(m-sent, 16384)
					err = c.fr.WriteData(id, false, body[:k])
					sent += k
				}
				if m > 0 && err == nil {
					c.connWin.Add(-m)
					r.bodyBytes.Add(m)
				}
			}
			c.wmu.Unlock()
			if err != nil {
				break
			}
		}
		_ = conn.SetWriteDeadline(time.Time{})
	})
	return r
}

func (c *h2Conn) read(r *h2Result) {
	once := sync.OnceFunc(func() { close(c.settings) })
	defer once()
	answered := map[uint32]bool{} // streams that got a response
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			if v, ok := f.Value(http2.SettingInitialWindowSize); ok {
				c.streamWin.Store(int64(v))
			}
			if v, ok := f.Value(http2.SettingMaxConcurrentStreams); ok {
				c.maxStreams.Store(int64(v))
			}
			c.wmu.Lock()
			_ = c.fr.WriteSettingsAck()
			c.wmu.Unlock()
			once()
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				c.connWin.Add(int64(f.Increment))
			}
		case *http2.MetaHeadersFrame:
			answered[f.StreamID] = true
			switch f.PseudoValue("status") {
			case "200":
				r.ok.Add(1)
			case "503":
				r.unavailable.Add(1)
				for _, h := range f.RegularFields() {
					if h.Name == "retry-after" && h.Value != "" {
						r.retryAfter.Add(1)
					}
				}
			default:
				r.other.Add(1)
			}
		case *http2.RSTStreamFrame:
			if !answered[f.StreamID] {
				r.resets.Add(1)
			}
		case *http2.GoAwayFrame:
			r.goAways.Add(1)
		case *http2.PingFrame:
			if !f.IsAck() {
				c.wmu.Lock()
				_ = c.fr.WritePing(true, f.Data)
				c.wmu.Unlock()
			}
		}
	}
}

// h2Mix is the h2c part, on a fresh server: -h2-conns connections each
// opening -h2-streams streams of GET -h2-path with a filler header and a
// body the handler never reads, all held open. It samples the requests in
// handlers (lameduck_http_inflight_requests) until every stream is
// answered, then reads the peak resident memory and sends SIGTERM with the
// connections still open.
func (o options) h2Mix(b *strings.Builder) error {
	srv, err := o.start()
	if err != nil {
		return err
	}
	defer srv.Kill()
	admin := "http://" + srv.AdminAddr + "/metrics"

	var peakInflight, peakGo atomic.Int64 // peakGo: Go heap in use + stacks
	sampled := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() { // owned here: ends at stopSampling
		defer close(sampled)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			m := scrape(admin)
			if v, err := strconv.ParseFloat(m["lameduck_http_inflight_requests"], 64); err == nil && int64(v) > peakInflight.Load() {
				peakInflight.Store(int64(v))
			}
			heap, err1 := strconv.ParseFloat(m["go_memstats_heap_inuse_bytes"], 64)
			stack, err2 := strconv.ParseFloat(m["go_memstats_stack_inuse_bytes"], 64)
			if err1 == nil && err2 == nil && int64(heap+stack) > peakGo.Load() {
				peakGo.Store(int64(heap + stack))
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	started := time.Now()
	r := openH2(srv.HTTPAddr, o.h2Conns, o.h2Streams, o.h2HeaderBytes, o.h2Body, o.dialers, o.h2Path)
	openFor := time.Since(started)
	defer r.close()
	// Every stream answered (or reset), or 20 s.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && r.ok.Load()+r.unavailable.Load()+r.other.Load()+r.resets.Load() < r.streams.Load() {
		time.Sleep(100 * time.Millisecond)
	}
	close(stopSampling)
	<-sampled
	_, hwm, err := procfs.Mem(srv.Pid())
	if err != nil {
		return err
	}
	m := scrape(admin)
	code := stop(srv)

	fmt.Fprintf(b, "| hostile h2c (GOMEMLIMIT=%s%s) | measured |\n|---|---|\n", o.gomemlimit, envNote(o.env))
	fmt.Fprintf(b, "| peak resident memory (VmHWM) vs limits.memory | **%s** vs %s: %s |\n", mib(hwm), mib(o.limit), o.verdict(hwm))
	fmt.Fprintf(b, "| h2c connections × streams of GET %s, %d-byte filler header, up to %d bytes of body never read | %d × %d asked, opened in %s |\n",
		o.h2Path, o.h2HeaderBytes, o.h2Body, o.h2Conns, o.h2Streams, openFor.Round(time.Millisecond))
	fmt.Fprintf(b, "| what the streams got | %s |\n", r)
	fmt.Fprintf(b, "| most requests in handlers at once (sampled every 100 ms) | %d (lameduck_http_inflight_requests) |\n", peakInflight.Load())
	fmt.Fprintf(b, "| requests refused over the cap | %s (lameduck_http_requests_refused_total) |\n", m["lameduck_http_requests_refused_total"])
	fmt.Fprintf(b, "| connections refused over the cap | %s (lameduck_http_connections_refused_total) |\n", m["lameduck_http_connections_refused_total"])
	fmt.Fprintf(b, "| most Go heap in use + stacks (sampled every 100 ms) | %s |\n", mib(peakGo.Load()))
	fmt.Fprintf(b, "| Go heap in use + stacks, at the end | %s + %s (go_memstats_heap_inuse_bytes, _stack_inuse_bytes) |\n",
		mibString(m["go_memstats_heap_inuse_bytes"]), mibString(m["go_memstats_stack_inuse_bytes"]))
	fmt.Fprintf(b, "| exit after SIGTERM, connections still open | %d |\n", code)
	return nil
}
