package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// ErrCut is the cause of a request context that the shutdown deadline
// cancelled: the app server's BaseContext is cancelled with it just before
// the server closes, and the instrument middleware labels such requests
// code="cut" in lameduck_http_requests_total.
var ErrCut = errors.New("cut by the shutdown deadline")

// Clients bounds how long a client may take to send a request's body and to
// take its response. The shutdown pulls the body bound in with Shorten, so
// that a stalled upload is timed out (408) before the deadline instead of
// being cut by it. (What the deadline cuts, the requests in flight, is
// metrics.Metrics.Inflight, which the instrument middleware counts.) It is
// safe for concurrent use.
type Clients struct {
	body, write time.Duration
	epoch       time.Time // write deadlines are set from it on the monotonic clock alone (one clock read, not two)

	mu      sync.Mutex
	cutoff  time.Time // zero until Shorten: no body read may last past it
	reading map[*bodyReader]struct{}
}

// NewClients returns Clients with a body timeout and a write timeout.
func NewClients(body, write time.Duration) *Clients {
	return &Clients{body: body, write: write, epoch: time.Now(), reading: map[*bodyReader]struct{}{}}
}

// Shorten makes every body read, now and later, end by cutoff at the latest.
func (c *Clients) Shorten(cutoff time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cutoff = cutoff
	for b := range c.reading {
		if b.deadline.After(cutoff) {
			b.deadline = cutoff
			_ = b.rc.SetReadDeadline(cutoff)
		}
	}
}

// bound is the middleware that applies c: a request's body must arrive
// within the body timeout of its headers (or by the cutoff), and its
// response must go out within the write timeout of its first byte.
func (c *Clients) bound(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.body > 0 && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			b := &bodyReader{ReadCloser: r.Body, c: c, rc: http.NewResponseController(w)}
			c.startBody(b)
			defer c.endBody(b)
			r.Body = b
		}
		next.ServeHTTP(w, r)
	})
}

// setWriteDeadline bounds the sending of a response whose headers go out
// now; a zero write timeout bounds nothing.
func (c *Clients) setWriteDeadline(w http.ResponseWriter) {
	if c == nil || c.write <= 0 {
		return
	}
	t := c.epoch.Add(time.Since(c.epoch) + c.write)
	if d, ok := w.(interface{ SetWriteDeadline(time.Time) error }); ok { // net/http's own writers: no walk through Unwrap
		_ = d.SetWriteDeadline(t)
		return
	}
	_ = http.NewResponseController(w).SetWriteDeadline(t)
}

func (c *Clients) startBody(b *bodyReader) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b.deadline = time.Now().Add(c.body)
	if !c.cutoff.IsZero() && b.deadline.After(c.cutoff) {
		b.deadline = c.cutoff
	}
	_ = b.rc.SetReadDeadline(b.deadline)
	c.reading[b] = struct{}{}
}

// endBody stops bounding b's reads: the body is read, or the handler is done.
// A body the handler left unread keeps its deadline, which bounds how long
// net/http then spends discarding it.
func (c *Clients) endBody(b *bodyReader) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.reading[b]; !ok {
		return
	}
	delete(c.reading, b)
	if b.eof {
		// net/http's background read, which watches for the client going
		// away, must not inherit the body's deadline: it would cancel the
		// request's context when the deadline passes.
		_ = b.rc.SetReadDeadline(time.Time{})
	}
}

// bodyReader is a request body under a read deadline.
type bodyReader struct {
	io.ReadCloser
	c        *Clients
	rc       *http.ResponseController
	deadline time.Time // guarded by c.mu
	eof      bool      // guarded by c.mu
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.c.mu.Lock()
		b.eof = true
		b.c.mu.Unlock()
		b.c.endBody(b)
	}
	return n, err
}

// timedOut reports whether err ends a body read at its deadline.
func timedOut(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// cutByShutdown reports whether ctx was cancelled by the shutdown deadline.
func cutByShutdown(ctx context.Context) bool { return errors.Is(context.Cause(ctx), ErrCut) }
