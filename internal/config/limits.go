package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Bounds that keep a typo in the client limits from exhausting memory.
const (
	maxMaxConns         = 100_000
	maxMaxRequests      = 100_000
	minMaxHeaderBytes   = 1 << 10 // below this, ordinary clients' headers are refused
	maxMaxHeaderBytes   = 1 << 20 // net/http's own default
	maxIdempotencyBytes = 1 << 30
)

// ClientSpare is how long before the shutdown deadline a request still
// reading its body is ended (408) by the shutdown: a slow or stalled client
// is timed out, not cut, whatever LAMEDUCK_BODY_TIMEOUT says.
const ClientSpare = time.Second

// validateLimits adds the problems of the client limits (timeouts, caps,
// addresses, the Idempotency-Key memory) to those Validate collects.
func (c Config) validateLimits(bad func(field, format string, args ...any)) {
	for _, a := range []struct{ name, addr string }{{"HTTP_ADDR", c.HTTPAddr}, {"ADMIN_ADDR", c.AdminAddr}} {
		if a.addr == "" {
			continue // reported as empty
		}
		if err := checkListenAddr(a.addr); err != nil {
			bad(a.name, "%q: %v", a.addr, err)
		}
	}
	timeouts := []struct {
		name string
		d    time.Duration
		why  string
	}{
		{"READ_HEADER_TIMEOUT", c.ReadHeaderTimeout, "a client could hold a connection forever without sending a request"},
		{"BODY_TIMEOUT", c.BodyTimeout, "a stalled upload could hold the shutdown to its deadline"},
		{"WRITE_TIMEOUT", c.WriteTimeout, "a client that stops reading could hold the shutdown to its deadline"},
		{"IDLE_TIMEOUT", c.IdleTimeout, "idle connections would never be closed"},
		{"IDEMPOTENCY_TTL", c.IdempotencyTTL, "no key would be remembered, so a retried POST /jobs would run twice"},
		{"DRAIN_TIMEOUT", c.DrainTimeout, "every queued job would be dropped at shutdown"},
	}
	for _, t := range timeouts {
		if t.d == 0 {
			bad(t.name, "must be positive: at 0 %s", t.why)
		}
	}
	counts := []struct {
		name           string
		n, least, most int64
	}{
		{"MAX_CONNS", int64(c.MaxConns), 1, maxMaxConns},
		{"MAX_REQUESTS", int64(c.MaxRequests), 1, maxMaxRequests},
		{"MAX_HEADER_BYTES", int64(c.MaxHeaderBytes), minMaxHeaderBytes, maxMaxHeaderBytes},
		{"IDEMPOTENCY_MAX_BYTES", c.IdempotencyMaxBytes, 1 << 10, maxIdempotencyBytes},
	}
	for _, n := range counts {
		if n.n < n.least || n.n > n.most {
			bad(n.name, "must be between %d and %d, got %d", n.least, n.most, n.n)
		}
	}
}

// checkListenAddr reports whether addr is host:port with an empty, IP or
// DNS-name host and a decimal port: the image has no /etc/services to look a
// named port up in.
func checkListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("not a listen address such as :8080 or 127.0.0.1:8080")
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil || (len(port) > 1 && port[0] == '0') {
		return fmt.Errorf("port %q is not a number between 0 and 65535", port)
	}
	if host == "" || net.ParseIP(host) != nil {
		return nil
	}
	if strings.Trim(host, "0123456789.") == "" {
		return fmt.Errorf("host %q is not an IP address", host)
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' ||
			strings.Trim(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
			return fmt.Errorf("host %q is neither an IP address nor a host name", host)
		}
	}
	return nil
}
