package app

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lameduck/lameduck/internal/metrics"
)

// TestCoarseDeadlineSet checks where set puts a deadline: kept as a number
// (further off than coarseHorizon, with an enforcer running), or on the
// socket (nearer, in the past, or with no enforcer), and that a later
// deadline or a zero one lifts what is on the socket.
func TestCoarseDeadlineSet(t *testing.T) {
	epoch := time.Now()
	now := time.Second // the enforcer's last reading, since epoch
	at := func(d time.Duration) time.Time { return epoch.Add(now + d) }
	type call struct {
		t   time.Time
		now time.Duration
	}
	tests := []struct {
		name       string
		calls      []call
		wantAt     time.Duration // the deadline kept as a number after the calls
		wantSocket []time.Time   // what reached the socket, in order
	}{
		{"far: kept", []call{{at(time.Second), now}}, now + time.Second, nil},
		{"near: socket", []call{{at(100 * time.Millisecond), now}}, 0, []time.Time{at(100 * time.Millisecond)}},
		{"past: socket", []call{{time.Unix(1, 0), now}}, 0, []time.Time{time.Unix(1, 0)}},
		{"no enforcer: socket", []call{{at(time.Minute), 0}}, 0, []time.Time{at(time.Minute)}},
		{"zero with nothing on the socket: nothing", []call{{time.Time{}, now}}, 0, nil},
		{"far, then zero", []call{{at(time.Second), now}, {time.Time{}, now}}, 0, nil},
		{"past, then zero lifts it", []call{{time.Unix(1, 0), now}, {time.Time{}, now}}, 0,
			[]time.Time{time.Unix(1, 0), {}}},
		{"farther than 146 years: kept, capped", []call{{time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), now}}, farthest, nil},
		{"near, then far lifts it", []call{{at(100 * time.Millisecond), now}, {at(time.Second), now}}, now + time.Second,
			[]time.Time{at(100 * time.Millisecond), {}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d coarseDeadline
			var socket []time.Time
			set := func(t time.Time) error { socket = append(socket, t); return nil }
			for _, c := range tt.calls {
				if err := d.set(c.t, epoch, c.now, set); err != nil {
					t.Fatal(err)
				}
			}
			if got := d.kept(); got != tt.wantAt {
				t.Errorf("kept %v, want %v", got, tt.wantAt)
			}
			if len(socket) != len(tt.wantSocket) {
				t.Fatalf("socket got %v, want %v", socket, tt.wantSocket)
			}
			for i := range socket {
				if !socket[i].Equal(tt.wantSocket[i]) {
					t.Errorf("socket call %d: %v, want %v", i, socket[i], tt.wantSocket[i])
				}
			}
		})
	}
}

// TestCoarseDeadlineEnforce checks the enforcer's side: a kept deadline
// reaches the socket only once it has passed, and a deadline set after that
// lifts it from the socket.
func TestCoarseDeadlineEnforce(t *testing.T) {
	epoch := time.Now()
	var d coarseDeadline
	var socket []time.Time
	set := func(t time.Time) error { socket = append(socket, t); return nil }
	due := epoch.Add(2 * time.Second)
	if err := d.set(due, epoch, time.Second, set); err != nil {
		t.Fatal(err)
	}
	d.enforce(1500*time.Millisecond, epoch, set)
	if len(socket) != 0 {
		t.Fatalf("enforced before the deadline: %v", socket)
	}
	d.enforce(2*time.Second, epoch, set)
	if len(socket) != 1 || !socket[0].Equal(due) || d.kept() != 0 {
		t.Fatalf("at the deadline: socket %v, kept %v; want [%v], 0", socket, d.kept(), due)
	}
	d.enforce(3*time.Second, epoch, set) // once on the socket, not again
	if err := d.set(epoch.Add(5*time.Second), epoch, 3*time.Second, set); err != nil {
		t.Fatal(err)
	}
	if len(socket) != 2 || !socket[1].IsZero() || d.kept() != 5*time.Second {
		t.Fatalf("after a new deadline: socket %v, kept %v; want the enforced one lifted, 5s kept", socket, d.kept())
	}
}

// TestCoarseDeadlineRace races the enforcer firing a passed deadline against
// a set moving it far off, many times: whichever goes first, the socket must
// end with nothing set (the moved deadline kept as a number). A passed
// deadline left on the socket would time out a request that has time left.
func TestCoarseDeadlineRace(t *testing.T) {
	epoch := time.Now()
	const now = 10 * time.Second
	passed, far := epoch.Add(5*time.Second), epoch.Add(time.Minute)
	for i := range 2000 {
		var d coarseDeadline
		var mu sync.Mutex
		var socket []time.Time
		set := func(t time.Time) error {
			mu.Lock()
			defer mu.Unlock()
			socket = append(socket, t)
			return nil
		}
		if err := d.set(passed, epoch, time.Second, set); err != nil { // kept: 4 s ahead then
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { d.enforce(now, epoch, set) })
		wg.Go(func() { _ = d.set(far, epoch, now, set) })
		wg.Wait()
		if len(socket) > 0 && !socket[len(socket)-1].IsZero() || d.kept() != far.Sub(epoch) {
			t.Fatalf("round %d: socket %v, kept %v; want the socket clear and %v kept", i, socket, d.kept(), far.Sub(epoch))
		}
	}
}

// coarsePair returns the server side of a loopback connection accepted by a
// limitListener whose enforcer runs for the test, and the client side.
func coarsePair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := limitConns(ln, 4, metrics.NewLimits(prometheus.NewRegistry(), func() int { return 0 }, func() int64 { return 0 }))
	t.Cleanup(func() { _ = l.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { l.enforceDeadlines(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	for l.coarseNow() == 0 { // the enforcer has read the clock: deadlines now count on it
		time.Sleep(time.Millisecond)
	}
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	return server, client
}

// TestCoarseDeadlinesFire checks on a real loopback connection that a
// deadline kept as a number fails a blocked read and a blocked write with a
// timeout, no sooner than the deadline and within a tolerance, and that a
// lifted one fails nothing.
func TestCoarseDeadlinesFire(t *testing.T) {
	const after = 600 * time.Millisecond // beyond coarseHorizon: kept as a number
	const slack = 2 * time.Second        // coarseTick late at most, plus a busy machine's scheduling

	t.Run("read", func(t *testing.T) {
		server, _ := coarsePair(t)
		start := time.Now()
		if err := server.SetReadDeadline(start.Add(after)); err != nil {
			t.Fatal(err)
		}
		err := ends(t, server, after+slack, func() error { _, err := server.Read(make([]byte, 1)); return err })
		checkTimeout(t, err, time.Since(start), after, slack)
	})
	t.Run("write to a client that does not read", func(t *testing.T) {
		server, _ := coarsePair(t)
		start := time.Now()
		if err := server.SetWriteDeadline(start.Add(after)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1<<20)
		err := ends(t, server, after+slack, func() (err error) {
			for err == nil { // the socket buffers fill, then the write blocks
				_, err = server.Write(buf)
			}
			return err
		})
		checkTimeout(t, err, time.Since(start), after, slack)
	})
	t.Run("lifted", func(t *testing.T) {
		server, client := coarsePair(t)
		if err := server.SetReadDeadline(time.Now().Add(after)); err != nil {
			t.Fatal(err)
		}
		if err := server.SetReadDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
		read := make(chan error, 1)
		go func() { _, err := server.Read(make([]byte, 1)); read <- err }()
		select {
		case err := <-read:
			t.Fatalf("a read with its deadline lifted ended: %v", err)
		case <-time.After(after + 4*coarseTick):
		}
		if _, err := client.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := <-read; err != nil {
			t.Errorf("the read failed once a byte came: %v", err)
		}
	})
}

// ends runs f, which should end by itself within d; if it does not, it
// fails the test and closes c, which ends f.
func ends(t *testing.T, c net.Conn, d time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Errorf("still blocked after %s: no deadline fired", d)
		_ = c.Close()
		return <-done
	}
}

// checkTimeout wants err to be a deadline's timeout, which came after at
// least want and at most want+slack.
func checkTimeout(t *testing.T, err error, took, want, slack time.Duration) {
	t.Helper()
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("got %v, want a deadline's timeout", err)
	}
	if took < want || took > want+slack {
		t.Errorf("the deadline of %s fired after %s; want between %s and %s", want, took.Round(time.Millisecond), want, want+slack)
	}
}

// BenchmarkDeadlinesParallel measures what a keep-alive HTTP/1.1 request's deadline
// moves cost (net/http's five: the idle timeout, the header timeout, the
// read deadline cleared, the write timeout, the write deadline cleared) on a
// loopback connection: a bare socket's, where each is a runtime timer
// operation, against an app connection's coarse ones. Run it with -cpu 1,2,4.
func BenchmarkDeadlinesParallel(b *testing.B) {
	moves := func(c net.Conn) {
		now := time.Now()
		_ = c.SetReadDeadline(now.Add(2 * time.Minute))
		_ = c.SetReadDeadline(now.Add(5 * time.Second))
		_ = c.SetReadDeadline(time.Time{})
		_ = c.SetWriteDeadline(now.Add(3 * time.Second))
		_ = c.SetWriteDeadline(time.Time{})
	}
	for _, kind := range []string{"socket", "coarse"} {
		b.Run(kind, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			l := limitConns(ln, 1<<10, metrics.NewLimits(prometheus.NewRegistry(), func() int { return 0 }, func() int64 { return 0 }))
			defer l.Close()
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			defer wg.Wait()
			defer cancel()
			wg.Go(func() { l.enforceDeadlines(ctx) })
			for l.coarseNow() == 0 {
				time.Sleep(time.Millisecond)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				client, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Error(err)
					return
				}
				defer client.Close()
				c, err := l.Accept()
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				if kind == "socket" {
					c = c.(*limitConn).Conn
				}
				for pb.Next() {
					moves(c)
				}
			})
		})
	}
}
