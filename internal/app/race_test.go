package app

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// holdListener holds the first connection it accepts until release closes,
// as a Serve goroutine descheduled between Accept and registering the
// connection would. detached closes when a deadline in the past is set, as
// conns.Listener.Detach sets one.
type holdListener struct {
	*net.TCPListener
	accepted, release, detached chan struct{}
	once, detachOnce            sync.Once
}

func (l *holdListener) SetDeadline(t time.Time) error {
	if !t.IsZero() && t.Before(time.Now()) {
		l.detachOnce.Do(func() { close(l.detached) })
	}
	return l.TCPListener.SetDeadline(t)
}

func (l *holdListener) Accept() (net.Conn, error) {
	c, err := l.TCPListener.Accept()
	if err != nil {
		return nil, err
	}
	first := false
	l.once.Do(func() { first = true })
	if first {
		close(l.accepted)
		<-l.release
	}
	return c, nil
}

// TestShutdownWaitsForAcceptedConnection: a connection accepted just before
// the app server stopped accepting (serveLate), but not yet registered by
// Serve, is served before the HTTP phase ends, not dropped by Close (the
// race of issue #11).
func TestShutdownWaitsForAcceptedConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := &holdListener{TCPListener: ln.(*net.TCPListener), accepted: make(chan struct{}), release: make(chan struct{}),
		detached: make(chan struct{})}
	var handled atomic.Bool
	s := newTestService(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(50 * time.Millisecond)
		handled.Store(true)
		_, _ = io.WriteString(w, "ok")
	}))
	s.cfg.ShutdownTimeout = 5 * time.Second
	_ = s.appLn.Close()
	s.appLn = s.conns.Listener(held)
	go func() {
		defer close(s.appServed)
		_ = s.app.Serve(s.appLn)
	}()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-held.accepted // Accept has the connection; Serve has not registered it

	cutc := make(chan int, 1)
	go func() {
		s.serveLate()
		cutc <- s.shutdownHTTP(context.Background())
	}()
	<-held.detached
	// Hold the connection a while longer, or until the HTTP phase ended
	// without it (the bug): either way, then let Serve register it.
	select {
	case cut := <-cutc:
		cutc <- cut
	case <-time.After(300 * time.Millisecond):
	}
	close(held.release)

	cut := <-cutc
	if !handled.Load() {
		t.Errorf("the HTTP phase ended before the accepted connection's request was handled; want it to wait for it")
	}
	if cut != 0 {
		t.Errorf("shutdownHTTP cut %d requests; want 0", cut)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the request on the accepted connection = %v, %v; want 200", resp, err)
	}
	resp.Body.Close()
}
