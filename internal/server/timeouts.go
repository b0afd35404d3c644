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
// the server closes, and the instrument middleware counts such requests in
// lameduck_http_requests_cut_total.
var ErrCut = errors.New("cut by the shutdown deadline")

// timeouts bounds how long a client may take to send a request's body and
// to take its response. The shutdown pulls the body bound in (shorten), so
// that a stalled upload is timed out (408) before the deadline instead of
// being cut by it. It is safe for concurrent use.
type timeouts struct {
	body, write time.Duration

	mu      sync.Mutex
	cutoff  time.Time // zero until shorten: no body read may last past it
	reading map[*bodyReader]struct{}
}

func newTimeouts(body, write time.Duration) *timeouts {
	return &timeouts{body: body, write: write, reading: map[*bodyReader]struct{}{}}
}

// shorten makes every body read, now and later, end by cutoff at the latest.
func (c *timeouts) shorten(cutoff time.Time) {
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
// within the body timeout of its headers (or by the cutoff).
func (c *timeouts) bound(next http.Handler) http.Handler {
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

// boundUnread bounds how long net/http may spend discarding the body of a
// request whose handler will not read it: the body timeout from now, or
// until the cutoff, as for a body being read.
func (c *timeouts) boundUnread(w http.ResponseWriter, r *http.Request) {
	if c.body <= 0 || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return
	}
	c.mu.Lock()
	deadline := time.Now().Add(c.body)
	if !c.cutoff.IsZero() && deadline.After(c.cutoff) {
		deadline = c.cutoff
	}
	c.mu.Unlock()
	_ = http.NewResponseController(w).SetReadDeadline(deadline)
}

// setWriteDeadline bounds the sending of a response whose headers go out
// now (http.Server's WriteTimeout would also count the handler's time); a
// zero write timeout bounds nothing.
func (c *timeouts) setWriteDeadline(w http.ResponseWriter) {
	if c.write > 0 {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(c.write))
	}
}

func (c *timeouts) startBody(b *bodyReader) {
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
func (c *timeouts) endBody(b *bodyReader) {
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
	c        *timeouts
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
