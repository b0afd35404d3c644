package rehearsal_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lameduck/lameduck/e2e/internal/rehearsal"
)

// backend is a stand-in replica: its app answers its name, its admin /ready
// answers 200 or 503 as ready says.
type backend struct {
	name       string
	app, admin *httptest.Server
	ready      atomic.Bool
}

func newBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name}
	b.app = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, name)
	}))
	b.admin = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !b.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(b.app.Close)
	t.Cleanup(b.admin.Close)
	return b
}

// get sends GET / through the balancer with client and returns the body and
// whether the connection was reused.
func get(t *testing.T, client *http.Client, addr string) (body string, reused bool, err error) {
	t.Helper()
	ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return "", false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), reused, err
}

// eventually polls cond until it holds or timeout passes, and returns how
// long that took.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not after %s", what, timeout)
		}
		<-tick.C
	}
	return time.Since(start)
}

// TestBalancer checks the kube-proxy behaviour the rehearsal relies on:
// readiness reaches routing only after Lag, a connection is rejected when no
// endpoint is ready, and an established connection stays with its endpoint
// after that endpoint stops being routed.
func TestBalancer(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	const lag = 150 * time.Millisecond
	a, b := newBackend(t, "a"), newBackend(t, "b")
	bal, err := rehearsal.NewBalancer(rehearsal.BalancerConfig{Poll: 10 * time.Millisecond, Lag: lag})
	if err != nil {
		t.Fatalf("NewBalancer: %v", err)
	}
	t.Cleanup(func() { _ = bal.Close() })
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	pooled := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(pooled.CloseIdleConnections)

	if body, _, err := get(t, fresh, bal.Addr()); err == nil {
		t.Fatalf("GET with no endpoint = %q; want an error", body)
	}
	if s := bal.Stats(); s.Rejected != 1 {
		t.Errorf("Stats().Rejected = %d; want 1", s.Rejected)
	}

	a.ready.Store(true)
	bal.Add("a", a.app.Listener.Addr().String(), a.admin.Listener.Addr().String())
	bal.Add("b", b.app.Listener.Addr().String(), b.admin.Listener.Addr().String())
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	added := time.Now()
	if err := bal.WaitRoutes(ctx, "a"); err != nil {
		t.Fatalf("WaitRoutes(a): %v", err)
	}
	if d := time.Since(added); d < lag {
		t.Errorf("a routed %s after it was added ready; want at least Lag (%s)", d, lag)
	}
	if body, _, err := get(t, pooled, bal.Addr()); err != nil || body != "a" {
		t.Fatalf("GET = %q, %v; want a (the only ready endpoint)", body, err)
	}

	// a turns unready, b ready: new connections move to b after Lag, the
	// pooled connection to a stays with a.
	a.ready.Store(false)
	b.ready.Store(true)
	changed := time.Now()
	if err := bal.WaitRoutes(ctx, "b"); err != nil {
		t.Fatalf("WaitRoutes(b): %v", err)
	}
	eventually(t, 5*time.Second, "a unrouted", func() bool { return !bal.Routes("a") })
	if d := time.Since(changed); d < lag {
		t.Errorf("a unrouted %s after /ready failed; want at least Lag (%s)", d, lag)
	}
	if body, reused, err := get(t, pooled, bal.Addr()); err != nil || body != "a" || !reused {
		t.Errorf("GET on the established connection = %q (reused %t), %v; want a on the same connection", body, reused, err)
	}
	for range 5 {
		if body, _, err := get(t, fresh, bal.Addr()); err != nil || body != "b" {
			t.Errorf("GET on a new connection = %q, %v; want b", body, err)
		}
	}

	// Removing b (deleting its pod) does not stop routing to it: only
	// polling does, once /ready fails.
	bal.Remove("b")
	if body, _, err := get(t, fresh, bal.Addr()); err != nil || body != "b" {
		t.Errorf("GET after Remove(b) = %q, %v; want b, still routed", body, err)
	}
	b.ready.Store(false)
	eventually(t, 5*time.Second, "b unrouted", func() bool { return !bal.Routes("b") })
	if body, _, err := get(t, fresh, bal.Addr()); err == nil {
		t.Errorf("GET with no endpoint ready = %q; want an error", body)
	}
	if s := bal.Stats(); s.Rejected != 2 || s.DialFailures != 0 {
		t.Errorf("Stats() = %+v; want 2 rejected, 0 dial failures", s)
	}
}

// TestBalancerDialPinned checks the connections the rehearsal's probes make:
// they go to the pinned endpoint while it is routed, are refused when it
// stops listening while still routed (a refused dial, not a reset), go to
// another endpoint once it is no longer routed, and are refused when none is.
func TestBalancerDialPinned(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	a, b := newBackend(t, "a"), newBackend(t, "b")
	a.ready.Store(true)
	b.ready.Store(true)
	bal, err := rehearsal.NewBalancer(rehearsal.BalancerConfig{Poll: 10 * time.Millisecond, Lag: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("NewBalancer: %v", err)
	}
	t.Cleanup(func() { _ = bal.Close() })
	bal.Add("a", a.app.Listener.Addr().String(), a.admin.Listener.Addr().String())
	bal.Add("b", b.app.Listener.Addr().String(), b.admin.Listener.Addr().String())
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for _, name := range []string{"a", "b"} {
		if err := bal.WaitRoutes(ctx, name); err != nil {
			t.Fatalf("WaitRoutes(%s): %v", name, err)
		}
	}
	pinned := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return bal.DialPinned(ctx, "a")
		},
	}}
	const host = "pinned.invalid" // never resolved: DialPinned picks the address

	// Two endpoints routed: 20 random picks would all be a once in 2^20.
	for range 20 {
		if body, _, err := get(t, pinned, host); err != nil || body != "a" {
			t.Fatalf("GET pinned to a = %q, %v; want a", body, err)
		}
	}

	// a stops listening, still routed: the pinned connection is refused.
	a.app.Close()
	if body, _, err := get(t, pinned, host); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("GET pinned to a, routed but not listening = %q, %v; want connection refused", body, err)
	}
	if s := bal.Stats(); s.Pinned != 21 || s.PinnedRefused != 1 || s.Accepted != 0 || s.DialFailures != 0 {
		t.Errorf("Stats() = %+v; want 21 pinned, 1 refused, none through the front", s)
	}

	// a no longer routed: the connection goes to the rest.
	a.ready.Store(false)
	eventually(t, 5*time.Second, "a unrouted", func() bool { return !bal.Routes("a") })
	if body, _, err := get(t, pinned, host); err != nil || body != "b" {
		t.Errorf("GET pinned to a, unrouted = %q, %v; want b", body, err)
	}

	// None routed: refused.
	b.ready.Store(false)
	eventually(t, 5*time.Second, "b unrouted", func() bool { return !bal.Routes("b") })
	if body, _, err := get(t, pinned, host); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("GET pinned to a, no endpoint routed = %q, %v; want connection refused", body, err)
	}
	if s := bal.Stats(); s.PinnedRefused != 2 {
		t.Errorf("Stats().PinnedRefused = %d; want 2", s.PinnedRefused)
	}
}
