//go:build linux

package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Result is what the h2c part of the mix saw, over every connection.
type h2Result struct {
	conns, refusedConns    atomic.Int64 // connections that took the preface; refused or closed before it
	streams                atomic.Int64 // streams opened (HEADERS sent)
	ok, unavailable, other atomic.Int64 // responses by status: 200, 503, anything else
	resets                 atomic.Int64 // streams reset (RST_STREAM) before any answer: over the connection's stream limit
	goAways                atomic.Int64
	harness                atomic.Int64 // connections not opened for want of the harness's own resources
	bodyBytes              atomic.Int64 // request body bytes sent (never read by the handler)

	mu   sync.Mutex
	held []*h2Conn
}

func (r *h2Result) String() string {
	return fmt.Sprintf("%d streams opened on %d connections (%d refused or closed at once): %d× 200, %d× 503, %d other, %d reset unanswered (RST_STREAM), %d GOAWAY; %.1f MiB of request body sent, never read%s",
		r.streams.Load(), r.conns.Load(), r.refusedConns.Load(), r.ok.Load(), r.unavailable.Load(),
		r.other.Load(), r.resets.Load(), r.goAways.Load(), float64(r.bodyBytes.Load())/(1<<20), harnessNote(int(r.harness.Load())))
}

// unanswered is the number of streams opened and neither answered nor reset.
func (r *h2Result) unanswered() int64 {
	return r.streams.Load() - r.ok.Load() - r.unavailable.Load() - r.other.Load() - r.resets.Load()
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

	settings  chan struct{} // closed at the server's first SETTINGS
	streamWin atomic.Int64  // the server's SETTINGS_INITIAL_WINDOW_SIZE
	connWin   atomic.Int64  // connection-level send window left
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
		if harnessErr(err) {
			r.harness.Add(1)
			return
		}
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

// h2c is the h2c part: -h2-conns connections each opening -h2-streams
// streams of GET -h2-path with a filler header and a body the handler never
// reads, all held open. The newcomers come once every stream is answered or
// reset (20 s at most), the connections still held.
func (o options) h2c(addr string) (string, string, func()) {
	r := openH2(addr, o.h2Conns, o.h2Streams, o.h2HeaderBytes, o.h2Body, o.dialers, o.h2Path)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && r.unanswered() > 0; {
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Sprintf("%d connections × %d streams of GET %s, a %d-byte header, up to %d bytes of body never read: %s",
		o.h2Conns, o.h2Streams, o.h2Path, o.h2HeaderBytes, o.h2Body, r), newcomers(addr, o.newcomers), r.close
}
