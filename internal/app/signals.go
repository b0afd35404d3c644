package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
)

// RepeatWindow is how soon after the signal that started the shutdown a
// signal counts as the same request: one SIGTERM sent both to the process and
// to its process group (a shell's kill -TERM -PGID, a wrapper such as
// timeout(1)) arrives twice within microseconds, and must not abort the
// drain. A second signal sent on purpose, by a person or by a runtime asked to
// stop the container again with a shorter grace period, comes later and
// aborts, as before.
const RepeatWindow = 250 * time.Millisecond

// watchSecondSignal returns a context that ends when a signal arrives that
// aborts the shutdown, and a stop function that ends the watching goroutine
// and waits for it.
//
// first is when the signal that started the shutdown came, zero when none
// did (the context or a failed server started it): then the first SIGTERM
// (the kubelet's) is the ordinary request to stop and only the next aborts.
// A signal within RepeatWindow of the last one that counted is a repeat of it.
// SIGHUP never aborts: a terminal that goes away, the only sender of it
// lameduck expects, is no request to drop work.
func watchSecondSignal(signals <-chan os.Signal, first time.Time, logger *slog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		last := first
		for {
			select {
			case sig := <-signals:
				now := time.Now()
				switch {
				case sig == syscall.SIGHUP:
					logger.Warn("signal ignored during the shutdown", "signal", sig.String(), "reason", "SIGHUP never aborts the drain")
				case !last.IsZero() && now.Sub(last) < RepeatWindow:
					logger.Warn("signal ignored during the shutdown", "signal", sig.String(),
						"reason", fmt.Sprintf("within %s of the one before: the same request", RepeatWindow))
				case last.IsZero():
					last = now // the ordinary request to stop, when no signal started the shutdown
				default:
					cancel(fmt.Errorf("second signal %s", sig))
					return
				}
			case <-stop:
				return
			}
		}
	})
	return ctx, func() {
		close(stop)
		wg.Wait()
		cancel(nil)
	}
}
