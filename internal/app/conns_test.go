package app

import (
	"net"
	"net/http"
	"testing"
)

// BenchmarkConnTrackerParallel measures what the connection tracker costs a
// request on a keep-alive connection, the ConnState hook's StateActive and
// StateIdle, from every P at once, each on its own connection; run it with
// -cpu 1,2,4: ns/op that grows with the Ps is contention on shared state.
func BenchmarkConnTrackerParallel(b *testing.B) {
	tr := newConnTracker()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c, peer := net.Pipe()
		defer c.Close()
		defer peer.Close()
		tr.hook(c, http.StateNew)
		for pb.Next() {
			tr.hook(c, http.StateActive)
			tr.hook(c, http.StateIdle)
		}
		tr.hook(c, http.StateClosed)
	})
}
