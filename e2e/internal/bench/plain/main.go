// Command plain is the baseline of lameduck's overhead benchmark: a plain
// net/http server that answers GET /hello with the same bytes lameduck does
// (Content-Type text/plain; charset=utf-8, body "hello\n"), through a
// ServeMux and nothing else: no middleware, no metrics, no connection
// tracking, no draining gate. -idle-timeout and -write-timeout (0 by default:
// none) set http.Server's IdleTimeout and WriteTimeout, as a server hardened
// against slow clients would: given lameduck's values, the comparison tells
// what those timeouts cost any server apart from what lameduck's own code
// costs.
//
// Like lameduck, it prints one JSON record msg="serving" with http_addr (the
// bound address) as its first line of output, then serves until SIGTERM or
// SIGINT.
//
//	go run ./internal/bench/plain -addr 127.0.0.1:0
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	if err := run(os.Args[1:], os.Stdout, signals); err != nil {
		fmt.Fprintln(os.Stderr, "plain:", err)
		os.Exit(1)
	}
}

// run serves GET /hello on -addr until a value arrives on signals.
func run(args []string, stdout io.Writer, signals <-chan os.Signal) error {
	fs := flag.NewFlagSet("plain", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	idle := fs.Duration("idle-timeout", 0, "http.Server.IdleTimeout (0: none)")
	write := fs.Duration("write-timeout", 0, "http.Server.WriteTimeout (0: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "hello\n")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: *idle, WriteTimeout: *write}
	go func() {
		<-signals
		_ = srv.Close()
	}()
	slog.New(slog.NewJSONHandler(stdout, nil)).Info("serving", "http_addr", ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
