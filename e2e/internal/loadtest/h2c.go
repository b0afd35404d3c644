package loadtest

import (
	"net/http"
	"sync/atomic"
)

// H2CConns is how many HTTP/2 connections the h2c stream keeps: it behaves
// like that many clients (mesh sidecars, gRPC channels), each multiplexing
// its share of the stream's requests on one pooled connection, which it
// replaces when the server sends GOAWAY. More than one, so that a rollout
// meets the stream on several replicas, as it meets pooled HTTP/1.1 clients.
const H2CConns = 4

// roundTripper is what a stream sends through; Stop closes its idle
// connections.
type roundTripper interface {
	http.RoundTripper
	CloseIdleConnections()
}

// h2cClients spreads requests round-robin over H2CConns HTTP/2 transports
// with prior knowledge (h2c): each keeps one connection, and dials a new one
// when the server sends it a GOAWAY. Go's HTTP/2 client retries, on the new
// connection, every request the GOAWAY says the server did not take, with
// its body, whatever its method.
type h2cClients struct {
	next       atomic.Uint64
	transports []*http.Transport
}

func newH2CClients(conns *connCounter) *h2cClients {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	c := &h2cClients{}
	for range H2CConns {
		// One connection per transport: while it has not received a GOAWAY,
		// requests multiplex on it; a connection after its GOAWAY no longer
		// counts, and the next one opens while it closes.
		t := newTransport(true, 1, conns)
		t.Protocols = &p
		c.transports = append(c.transports, t)
	}
	return c
}

func (c *h2cClients) RoundTrip(r *http.Request) (*http.Response, error) {
	return c.transports[c.next.Add(1)%uint64(len(c.transports))].RoundTrip(r)
}

func (c *h2cClients) CloseIdleConnections() {
	for _, t := range c.transports {
		t.CloseIdleConnections()
	}
}
