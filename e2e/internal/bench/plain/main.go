// Command plain is the baseline of lameduck's overhead benchmark: net/http
// answering GET /hello with the bytes lameduck sends (Content-Type
// text/plain; charset=utf-8, body "hello\n") through a ServeMux, and nothing
// else. Its flags set http.Server's limits; with none it is bare net/http
// (no timeouts, net/http's 1 MiB header limit). The benchmark runs it twice:
// bare, and with lameduck's defaults.
//
// Like lameduck, it logs one JSON record msg="serving" with http_addr, then
// serves until SIGTERM or SIGINT.
//
//	go run ./internal/bench/plain -read-header-timeout 5s -idle-timeout 2m -write-timeout 3s -max-header-bytes 8192
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
	srv := &http.Server{}
	fs := flag.NewFlagSet("plain", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	fs.DurationVar(&srv.ReadHeaderTimeout, "read-header-timeout", 0, "http.Server.ReadHeaderTimeout (0: none)")
	fs.DurationVar(&srv.IdleTimeout, "idle-timeout", 0, "http.Server.IdleTimeout (0: none)")
	fs.DurationVar(&srv.WriteTimeout, "write-timeout", 0, "http.Server.WriteTimeout (0: none)")
	fs.IntVar(&srv.MaxHeaderBytes, "max-header-bytes", 0, "http.Server.MaxHeaderBytes (0: net/http's 1 MiB)")
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
	srv.Handler = mux
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
