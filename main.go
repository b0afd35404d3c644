// Command lameduck is an HTTP service that loses nothing when Kubernetes
// stops it: on SIGTERM it fails readiness, keeps serving through a preStop
// delay, shuts its listener down, drains its job queue and exits with an
// account of what it did. Configuration comes from LAMEDUCK_* variables; run
// it with -h to list them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/lameduck/lameduck/internal/app"
	"github.com/lameduck/lameduck/internal/config"
	"github.com/lameduck/lameduck/internal/health"
)

// Stamped at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

// Exit codes.
const (
	exitOK      = 0
	exitLost    = 1   // the shutdown cut requests or dropped jobs
	exitUsage   = 2   // bad configuration or arguments
	exitAborted = 130 // a second signal aborted the shutdown
)

// Signals. SIGTERM and SIGINT start the shutdown, and a second one (not a
// repeat within app.RepeatWindow) aborts it. SIGHUP starts the shutdown too
// (a terminal that closes must not kill the process and its queue), and never
// aborts it. SIGQUIT writes every goroutine's stack to standard error and
// changes nothing else: Go's default, a dump and exit 2, would lose the queue.
func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	quit := make(chan os.Signal, 1)
	signal.Notify(quit, syscall.SIGQUIT)
	go dumpOnQuit(quit, os.Stderr) // ends with the process
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, signals))
}

// dumpOnQuit writes every goroutine's stack to w on each value of quit.
func dumpOnQuit(quit <-chan os.Signal, w io.Writer) {
	for range quit {
		fmt.Fprintf(w, "lameduck: SIGQUIT: goroutine dump (the process keeps running; SIGTERM stops it)\n")
		_ = pprof.Lookup("goroutine").WriteTo(w, 2)
	}
}

// run parses arguments and configuration, runs the service, and maps the
// outcome to an exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, signals <-chan os.Signal) int {
	fs := flag.NewFlagSet("lameduck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	check := fs.String("check", "", "GET this URL and exit: 0 on 200 OK, 1 otherwise")
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: lameduck (version %s, commit %s)\n\n", version, commit)
		fmt.Fprintf(stdout, "  lameduck -check URL: GET URL within %s and exit 0 on 200 OK, 1 otherwise (the image has no\n"+
			"  shell or curl: charts/lameduck's helm test runs this)\n\n", checkTimeout)
		if err := config.Usage(stdout); err != nil {
			fmt.Fprintln(stderr, "lameduck:", err)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lameduck: unexpected arguments %q: configuration comes from LAMEDUCK_* variables (see -h)\n", fs.Args())
		return exitUsage
	}
	if *check != "" {
		return checkURL(ctx, *check, stdout, stderr)
	}
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintln(stderr, "lameduck:", err)
		return exitUsage
	}
	logger := newLogger(cfg, stdout)
	for _, note := range cfg.Derived() {
		logger.Info("configuration derived", "note", note)
	}
	err = app.Run(ctx, cfg, logger, signals, health.BuildInfo{Version: version, Commit: commit})
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, app.ErrAborted):
		logger.Error("exiting", "err", err, "exit_code", exitAborted)
		return exitAborted
	case errors.Is(err, app.ErrLost):
		logger.Error("exiting", "err", err, "exit_code", exitLost)
		return exitLost
	default:
		logger.Error("exiting", "err", err, "exit_code", exitLost)
		return exitLost
	}
}

// newLogger logs to w at the configured level: as text when
// LAMEDUCK_LOG_FORMAT is text, or auto and w is a terminal (a person reads
// it); as JSON lines otherwise (a log collector reads them).
func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	level, _ := cfg.Level() // validated by config.Load
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" || cfg.LogFormat == "auto" && isTerminal(w) {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// isTerminal reports whether w is a file that is a character device, as a
// terminal is (so is /dev/null, where the format does not matter).
// golang.org/x/term would ask the terminal itself, but is not a dependency.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// checkTimeout bounds lameduck -check: connecting, sending, and reading the
// response's headers.
const checkTimeout = 5 * time.Second

// checkURL is lameduck -check URL: one GET, 0 on 200 OK and 1 otherwise, with
// a line on stdout or stderr saying which. It reads no configuration.
func checkURL(ctx context.Context, url string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintln(stderr, "lameduck -check:", err)
		return exitUsage
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "lameduck -check:", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "lameduck -check: GET %s: %s\n", url, resp.Status)
		return 1
	}
	fmt.Fprintf(stdout, "lameduck -check: GET %s: %s\n", url, resp.Status)
	return exitOK
}
