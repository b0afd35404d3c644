package app_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lameduck/lameduck/internal/app"
	"github.com/lameduck/lameduck/internal/config"
	"github.com/lameduck/lameduck/internal/health"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testConfig is the default configuration on free loopback ports with short
// shutdown phases.
func testConfig() config.Config {
	return config.Config{
		HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		MaxDelay: time.Second, MaxWork: 500 * time.Millisecond, MaxBody: 65536,
		QueueSize: 100, Workers: 2, JobDuration: 10 * time.Millisecond,
		IdempotencyTTL: time.Minute, IdempotencyMaxKeys: 100,
		IdempotencyMaxBytes: 1 << 20, MaxConns: 100, MaxRequests: 100, MaxHeaderBytes: 8192,
		ReadHeaderTimeout: time.Second, BodyTimeout: time.Second, WriteTimeout: time.Second, IdleTimeout: time.Minute,
		PrestopDelay: 100 * time.Millisecond, PrestopMin: 100 * time.Millisecond, PrestopQuiet: 50 * time.Millisecond,
		ShutdownTimeout: 2 * time.Second,
		DrainTimeout:    time.Second, GracePeriod: 30 * time.Second,
		LogFormat: "json", LogLevel: "info",
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRunServesAndShutsDownCleanly runs the service in process, sends it
// work, signals it, and checks it returns nil with every goroutine gone.
func TestRunServesAndShutsDownCleanly(t *testing.T) {
	cfg := testConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	signals := make(chan os.Signal, 2)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(context.Background(), cfg, logger, signals, health.BuildInfo{Version: "test"})
	}()

	addr := waitAddr(t, &logs)
	client := &http.Client{Timeout: 5 * time.Second}
	for range 5 {
		resp, err := client.Post("http://"+addr+"/jobs", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST /jobs = %d; want 202", resp.StatusCode)
		}
	}
	client.CloseIdleConnections()
	signals <- syscall.SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v; want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of SIGTERM")
	}
	if got := strings.Count(logs.String(), `"msg":"job processed"`); got != 5 {
		t.Errorf("%d jobs processed; want 5\n%s", got, logs.String())
	}
	if !strings.Contains(logs.String(), `"msg":"shutdown complete"`) {
		t.Errorf("no shutdown complete record:\n%s", logs.String())
	}
}

// TestRunListenError: an address in use is an error before serving.
func TestRunListenError(t *testing.T) {
	cfg := testConfig()
	cfg.HTTPAddr = "256.0.0.1:0"
	err := app.Run(context.Background(), cfg, slog.New(slog.DiscardHandler), nil, health.BuildInfo{})
	if err == nil || !strings.Contains(err.Error(), "LAMEDUCK_HTTP_ADDR") {
		t.Fatalf("Run with a bad address = %v; want an error naming LAMEDUCK_HTTP_ADDR", err)
	}
	if errors.Is(err, app.ErrLost) {
		t.Errorf("Run = %v; a listen error is not lost work", err)
	}
}

// waitAddr waits for the "serving" record and returns the app address.
func waitAddr(t *testing.T, logs *syncBuffer) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(logs.String(), "\n") {
			if _, rest, ok := strings.Cut(line, `"msg":"serving","http_addr":"`); ok {
				addr, _, _ := strings.Cut(rest, `"`)
				return addr
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no serving record:\n%s", logs.String())
	return ""
}

// TestSignalsDuringShutdown: the signal that counts as "second" depends on
// what started the shutdown. One started by the context (not by a signal)
// takes the first SIGTERM as the ordinary one and aborts only on another. A
// repeat within app.RepeatWindow is the same request, and SIGHUP never aborts.
func TestSignalsDuringShutdown(t *testing.T) {
	later := app.RepeatWindow + 100*time.Millisecond
	tests := []struct {
		name      string
		byContext bool // start the shutdown by cancelling the context
		signals   []os.Signal
		gap       time.Duration // before each of signals, after the shutdown started
		wantAbort bool
	}{
		{"signal then nothing", false, nil, 0, false},
		{"signal then a second", false, []os.Signal{syscall.SIGINT}, later, true},
		{"signal then a repeat at once", false, []os.Signal{syscall.SIGTERM, syscall.SIGTERM}, 0, false},
		{"signal then SIGHUPs", false, []os.Signal{syscall.SIGHUP, syscall.SIGHUP}, later, false},
		{"context then one signal", true, []os.Signal{syscall.SIGTERM}, later, false},
		{"context then a signal and its repeat", true, []os.Signal{syscall.SIGTERM, syscall.SIGTERM}, 0, false},
		{"context then two signals", true, []os.Signal{syscall.SIGTERM, syscall.SIGINT}, later, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.PrestopDelay, cfg.PrestopMin = 2*time.Second, 2*time.Second // a fixed delay the signals come in
			var logs syncBuffer
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			signals := make(chan os.Signal, 4)
			done := make(chan error, 1)
			go func() {
				done <- app.Run(ctx, cfg, slog.New(slog.NewJSONHandler(&logs, nil)), signals, health.BuildInfo{})
			}()
			waitAddr(t, &logs)
			if tt.byContext {
				cancel()
			} else {
				signals <- syscall.SIGTERM
			}
			waitLog(t, &logs, `"msg":"shutdown started"`)
			for _, sig := range tt.signals {
				time.Sleep(tt.gap) // the rule is about time: wait out the window on purpose
				signals <- sig
			}
			select {
			case err := <-done:
				if got := errors.Is(err, app.ErrAborted); got != tt.wantAbort {
					t.Errorf("Run = %v; aborted %t, want %t", err, got, tt.wantAbort)
				}
				if !tt.wantAbort && err != nil {
					t.Errorf("Run = %v; want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return within 10s")
			}
		})
	}
}

// waitLog waits until the log holds want.
func waitLog(t *testing.T, logs *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s in the log:\n%s", want, logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
