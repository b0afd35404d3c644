package app

import (
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkConnTrackerParallel measures what the connection tracker costs a
// request on a keep-alive connection, the ConnState hook's StateActive and
// StateIdle, from every P at once, each on its own connection (a limitConn,
// as the app listener hands out, which carries its record); run it with
// -cpu 1,2,4. Besides ns/op (wall time over all the Ps), it reports cpu-ns/op,
// the CPU time each op took: contention on shared memory makes it grow with
// the Ps, and other load on the machine changes it less than ns/op.
func BenchmarkConnTrackerParallel(b *testing.B) {
	tr := newConnTracker(noRequests)
	ln := &limitListener{max: 1 << 20}
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.RunParallel(func(pb *testing.PB) {
		pc, peer := net.Pipe()
		defer pc.Close()
		defer peer.Close()
		c := &limitConn{Conn: pc, l: ln}
		tr.hook(c, http.StateNew)
		for pb.Next() {
			tr.hook(c, http.StateActive)
			tr.hook(c, http.StateIdle)
		}
		tr.hook(c, http.StateClosed)
	})
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}
