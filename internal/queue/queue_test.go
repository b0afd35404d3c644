package queue_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/lameduck/lameduck/internal/metrics"
	"github.com/lameduck/lameduck/internal/queue"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// forever is a job's work that only the drain deadline or Abort can end.
const forever = time.Hour

// logBuffer collects log output written from any goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records parses every JSON log line written so far.
func (b *logBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	data := slices.Clone(b.buf.Bytes())
	b.mu.Unlock()
	var recs []map[string]any
	for line := range strings.Lines(string(data)) {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// jobIDs returns the job_id of every record with message msg, in log order,
// and checks each has the given level.
func (b *logBuffer) jobIDs(t *testing.T, msg, level string) []string {
	t.Helper()
	var ids []string
	for _, r := range b.records(t) {
		if r["msg"] != msg {
			continue
		}
		id, ok := r["job_id"].(string)
		if !ok {
			t.Errorf("log record %v has no string job_id", r)
			continue
		}
		if r["level"] != level {
			t.Errorf("log record %q for job %s has level %v; want %s", msg, id, r["level"], level)
		}
		ids = append(ids, id)
	}
	return ids
}

type fixture struct {
	q       *queue.Queue
	logs    *logBuffer
	metrics *metrics.Metrics
}

// unlimited is an admission budget no test job reaches, not even forever ones.
var unlimited = queue.Admission{Budget: 1000 * forever}

// newQueue starts a queue whose workers are stopped when the test ends; its
// admission lets every job in.
func newQueue(t *testing.T, capacity, workers int) fixture {
	t.Helper()
	return newAdmittingQueue(t, capacity, workers, unlimited)
}

// newAdmittingQueue is newQueue with the admission rule adm.
func newAdmittingQueue(t *testing.T, capacity, workers int, adm queue.Admission) fixture {
	t.Helper()
	logs := &logBuffer{}
	m := metrics.New(prometheus.NewRegistry())
	q := queue.New(capacity, workers, adm, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), m)
	t.Cleanup(func() { q.Abort() }) // a no-op after Drain; stops the workers when a test fails early
	return fixture{q: q, logs: logs, metrics: m}
}

// enqueue enqueues a job and fails the test when it is refused.
func enqueue(t *testing.T, q *queue.Queue, id string, work time.Duration) {
	t.Helper()
	if err := q.Enqueue(queue.Job{ID: id, Work: work}); err != nil {
		t.Fatalf("Enqueue(%q) = %v; want nil", id, err)
	}
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkAccount checks the invariant Processed + Dropped == Accepted.
func checkAccount(t *testing.T, s queue.Stats) {
	t.Helper()
	if s.Processed+s.Dropped != s.Accepted {
		t.Errorf("Stats() = %+v: Processed+Dropped = %d; want Accepted = %d", s, s.Processed+s.Dropped, s.Accepted)
	}
	if s.Depth != 0 {
		t.Errorf("Stats().Depth = %d after the workers stopped; want 0", s.Depth)
	}
}

func TestDrainProcessesEveryJob(t *testing.T) {
	tests := []struct {
		workers, jobs int
		work          time.Duration
	}{
		{workers: 1, jobs: 20, work: 0},
		{workers: 4, jobs: 200, work: 0},
		{workers: 3, jobs: 30, work: time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d workers %d jobs of %s", tt.workers, tt.jobs, tt.work), func(t *testing.T) {
			f := newQueue(t, tt.jobs, tt.workers)
			var want []string
			for i := range tt.jobs {
				id := fmt.Sprintf("job-%03d", i)
				enqueue(t, f.q, id, tt.work)
				want = append(want, id)
			}
			got := f.q.Drain(context.Background())
			checkAccount(t, got)
			if wantStats := (queue.Stats{Accepted: int64(tt.jobs), Processed: int64(tt.jobs)}); got != wantStats {
				t.Errorf("Drain() = %+v; want %+v", got, wantStats)
			}
			if s := f.q.Stats(); s != got {
				t.Errorf("Stats() after Drain = %+v; want what Drain returned, %+v", s, got)
			}

			ids := f.logs.jobIDs(t, "job processed", "INFO")
			slices.Sort(ids)
			if !slices.Equal(ids, want) {
				t.Errorf("\"job processed\" logged for %d jobs %v; want each of the %d jobs once", len(ids), ids, len(want))
			}
			if dropped := f.logs.jobIDs(t, "job dropped", "WARN"); len(dropped) > 0 {
				t.Errorf("\"job dropped\" logged for %v; want none", dropped)
			}

			for name, tc := range map[string]struct {
				c    prometheus.Collector
				want float64
			}{
				"lameduck_jobs_accepted_total":  {f.metrics.JobsAccepted, float64(tt.jobs)},
				"lameduck_jobs_processed_total": {f.metrics.JobsProcessed, float64(tt.jobs)},
				"lameduck_jobs_dropped_total":   {f.metrics.JobsDropped, 0},
				"lameduck_queue_depth":          {f.metrics.QueueDepth, 0},
			} {
				if got := testutil.ToFloat64(tc.c); got != tc.want {
					t.Errorf("%s = %v; want %v", name, got, tc.want)
				}
			}
		})
	}
}

func TestAccountingUnderConcurrentEnqueueAndDeadline(t *testing.T) {
	f := newQueue(t, 50, 2)
	var ok atomic.Int64
	var producers sync.WaitGroup
	for p := range 4 {
		producers.Go(func() {
			for i := range 200 {
				err := f.q.Enqueue(queue.Job{ID: fmt.Sprintf("p%d-%d", p, i), Work: 100 * time.Microsecond})
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, queue.ErrFull), errors.Is(err, queue.ErrClosed):
				default:
					t.Errorf("Enqueue = %v; want nil, ErrFull or ErrClosed", err)
				}
			}
		})
	}
	waitFor(t, "some jobs to be accepted", func() bool { return f.q.Stats().Accepted > 10 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	got := f.q.Drain(ctx)
	producers.Wait()

	checkAccount(t, got)
	if got.Accepted != ok.Load() {
		t.Errorf("Drain().Accepted = %d; want %d, the number of Enqueue calls that returned nil", got.Accepted, ok.Load())
	}
	if s := f.q.Stats(); s != got {
		t.Errorf("Stats() after Drain and the producers = %+v; want %+v", s, got)
	}
	if n := len(f.logs.jobIDs(t, "job processed", "INFO")); int64(n) != got.Processed {
		t.Errorf("\"job processed\" logged %d times; want Processed = %d", n, got.Processed)
	}
	if n := len(f.logs.jobIDs(t, "job dropped", "WARN")); int64(n) != got.Dropped {
		t.Errorf("\"job dropped\" logged %d times; want Dropped = %d", n, got.Dropped)
	}
}

func TestEnqueueFull(t *testing.T) {
	f := newQueue(t, 2, 1)
	enqueue(t, f.q, "running", forever)
	waitFor(t, "the worker to take the first job", func() bool { return f.q.Stats().Depth == 0 })
	enqueue(t, f.q, "queued-1", 0)
	enqueue(t, f.q, "queued-2", 0)

	if err := f.q.Enqueue(queue.Job{ID: "refused", Work: 0}); !errors.Is(err, queue.ErrFull) {
		t.Fatalf("Enqueue(%q) on a full queue = %v; want ErrFull", "refused", err)
	}
	if got, want := f.q.Stats(), (queue.Stats{Accepted: 3, Depth: 2}); got != want {
		t.Errorf("Stats() after ErrFull = %+v; want %+v", got, want)
	}
	if got := testutil.ToFloat64(f.metrics.JobsRejected.WithLabelValues(metrics.ReasonFull)); got != 1 {
		t.Errorf("lameduck_jobs_rejected_total{reason=%q} = %v; want 1", metrics.ReasonFull, got)
	}
	if got := testutil.ToFloat64(f.metrics.JobsAccepted); got != 3 {
		t.Errorf("lameduck_jobs_accepted_total = %v; want 3", got)
	}

	got := f.q.Abort()
	checkAccount(t, got)
	if want := (queue.Stats{Accepted: 3, Dropped: 3}); got != want {
		t.Errorf("Abort() = %+v; want %+v", got, want)
	}
	for _, r := range f.logs.records(t) {
		if r["job_id"] == "refused" {
			t.Errorf("refused job was logged: %v", r)
		}
	}
}

func TestClose(t *testing.T) {
	f := newQueue(t, 10, 1)
	enqueue(t, f.q, "before-close", 0)
	f.q.Close()
	f.q.Close() // idempotent

	if err := f.q.Enqueue(queue.Job{ID: "after-close"}); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("Enqueue after Close = %v; want ErrClosed", err)
	}
	if got := testutil.ToFloat64(f.metrics.JobsRejected.WithLabelValues(metrics.ReasonClosed)); got != 1 {
		t.Errorf("lameduck_jobs_rejected_total{reason=%q} = %v; want 1", metrics.ReasonClosed, got)
	}
	// A job queued before Close is still processed.
	got := f.q.Drain(context.Background())
	if want := (queue.Stats{Accepted: 1, Processed: 1}); got != want {
		t.Errorf("Drain() after Close = %+v; want %+v", got, want)
	}
	if err := f.q.Enqueue(queue.Job{ID: "after-drain"}); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Enqueue after Drain = %v; want ErrClosed", err)
	}
}

func TestDrainWaitsForQueuedJobs(t *testing.T) {
	const (
		jobs = 5
		work = 20 * time.Millisecond
	)
	f := newQueue(t, jobs, 1)
	start := time.Now()
	for i := range jobs {
		enqueue(t, f.q, fmt.Sprintf("job-%d", i), work)
	}
	got := f.q.Drain(context.Background())
	// One worker does the jobs one after another.
	if elapsed, least := time.Since(start), jobs*work; elapsed < least {
		t.Errorf("Drain returned after %s; want at least %s, the work of every queued job", elapsed, least)
	}
	if want := (queue.Stats{Accepted: jobs, Processed: jobs}); got != want {
		t.Errorf("Drain() = %+v; want %+v", got, want)
	}
	want := []string{"job-0", "job-1", "job-2", "job-3", "job-4"}
	if ids := f.logs.jobIDs(t, "job processed", "INFO"); !slices.Equal(ids, want) {
		t.Errorf("\"job processed\" logged for %v; want %v (FIFO)", ids, want)
	}
}

func TestDrainDeadlineDropsRemainingJobs(t *testing.T) {
	f := newQueue(t, 10, 1)
	enqueue(t, f.q, "done-1", 0)
	enqueue(t, f.q, "done-2", 0)
	waitFor(t, "the first two jobs to be processed", func() bool { return f.q.Stats().Processed == 2 })
	enqueue(t, f.q, "running", forever) // cancelled at the deadline
	enqueue(t, f.q, "waiting-1", 0)     // never started
	enqueue(t, f.q, "waiting-2", 0)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	got := f.q.Drain(ctx)
	if elapsed := time.Since(start); elapsed > 30*time.Second {
		t.Errorf("Drain with a 50ms deadline took %s", elapsed)
	}
	checkAccount(t, got)
	if want := (queue.Stats{Accepted: 5, Processed: 2, Dropped: 3}); got != want {
		t.Errorf("Drain() past its deadline = %+v; want %+v", got, want)
	}
	if ids, want := f.logs.jobIDs(t, "job dropped", "WARN"), []string{"running", "waiting-1", "waiting-2"}; !slices.Equal(ids, want) {
		t.Errorf("\"job dropped\" logged for %v; want %v", ids, want)
	}
	if ids, want := f.logs.jobIDs(t, "job processed", "INFO"), []string{"done-1", "done-2"}; !slices.Equal(ids, want) {
		t.Errorf("\"job processed\" logged for %v; want %v", ids, want)
	}
	for _, r := range f.logs.records(t) {
		if r["msg"] == "job dropped" && r["reason"] == nil {
			t.Errorf("\"job dropped\" record %v has no reason", r)
		}
	}
	if got := testutil.ToFloat64(f.metrics.JobsDropped); got != 3 {
		t.Errorf("lameduck_jobs_dropped_total = %v; want 3", got)
	}
	if got := testutil.ToFloat64(f.metrics.QueueDepth); got != 0 {
		t.Errorf("lameduck_queue_depth = %v; want 0", got)
	}
}

func TestAbortDropsEverything(t *testing.T) {
	f := newQueue(t, 10, 2)
	// The two workers take the two endless jobs first (FIFO), so no other
	// job can start before Abort, whatever the timing.
	want := []string{"running-1", "running-2"}
	enqueue(t, f.q, "running-1", forever)
	enqueue(t, f.q, "running-2", forever)
	for i := range 5 {
		id := fmt.Sprintf("waiting-%d", i)
		enqueue(t, f.q, id, 0)
		want = append(want, id)
	}
	got := f.q.Abort()
	checkAccount(t, got)
	if wantStats := (queue.Stats{Accepted: 7, Dropped: 7}); got != wantStats {
		t.Errorf("Abort() = %+v; want %+v", got, wantStats)
	}
	ids := f.logs.jobIDs(t, "job dropped", "WARN")
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("\"job dropped\" logged for %v; want %v", ids, want)
	}
	if err := f.q.Enqueue(queue.Job{ID: "after-abort"}); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Enqueue after Abort = %v; want ErrClosed", err)
	}
}

// BenchmarkEnqueue measures a job's way through the queue: Enqueue with its
// admission decision, a worker taking it and processing zero work, and the
// accounting and log on the way.
func BenchmarkEnqueue(b *testing.B) {
	q := queue.New(1024, runtime.GOMAXPROCS(0), unlimited, slog.New(slog.DiscardHandler), metrics.New(prometheus.NewRegistry()))
	j := queue.Job{ID: "0123456789abcdef0123456789abcdef"}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for errors.Is(q.Enqueue(j), queue.ErrFull) {
			runtime.Gosched()
		}
	}
	s := q.Drain(context.Background())
	b.StopTimer()
	if s.Processed != int64(b.N) {
		b.Fatalf("Drain() = %+v; want %d processed", s, b.N)
	}
}

// BenchmarkEnqueueParallel is BenchmarkEnqueue with concurrent producers.
func BenchmarkEnqueueParallel(b *testing.B) {
	q := queue.New(1024, runtime.GOMAXPROCS(0), unlimited, slog.New(slog.DiscardHandler), metrics.New(prometheus.NewRegistry()))
	j := queue.Job{ID: "0123456789abcdef0123456789abcdef"}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			for errors.Is(q.Enqueue(j), queue.ErrFull) {
				runtime.Gosched()
			}
		}
	})
	s := q.Drain(context.Background())
	b.StopTimer()
	if s.Processed != s.Accepted || s.Dropped != 0 {
		b.Fatalf("Drain() = %+v; want every job processed", s)
	}
}

// BenchmarkEnqueueRefused measures the admission refusing a job over the
// budget: what each excess POST /jobs costs the queue under overload.
func BenchmarkEnqueueRefused(b *testing.B) {
	q := queue.New(1024, runtime.GOMAXPROCS(0), queue.Admission{Budget: 0, PerJob: time.Millisecond},
		slog.New(slog.DiscardHandler), metrics.New(prometheus.NewRegistry()))
	j := queue.Job{ID: "0123456789abcdef0123456789abcdef"}
	b.ReportAllocs()
	for b.Loop() {
		if err := q.Enqueue(j); !errors.Is(err, queue.ErrBudget) {
			b.Fatalf("Enqueue = %v; want ErrBudget", err)
		}
	}
	b.StopTimer()
	if s := q.Drain(context.Background()); s.Accepted != 0 {
		b.Fatalf("Drain() = %+v; want nothing accepted", s)
	}
}

// retryAfter returns the RetryAfter of a refusal, failing the test when err is
// not one.
func retryAfter(t *testing.T, err error) time.Duration {
	t.Helper()
	rejected, ok := errors.AsType[*queue.RejectedError](err)
	if !ok {
		t.Fatalf("Enqueue = %v; want a *queue.RejectedError", err)
	}
	return rejected.RetryAfter
}

// TestAdmission: a job is taken only if it can finish within the budget,
// counting the work ahead of it spread over the workers plus its own
// indivisible work; a refusal says when the job would fit. The jobs are long
// so that the time the test itself takes (well under the 500 ms tolerance)
// cannot move a decision: every case is at least 500 ms from its boundary.
func TestAdmission(t *testing.T) {
	const s = time.Second
	type step struct {
		work time.Duration
		want error         // nil, or the refusal
		wait time.Duration // the refusal's RetryAfter, ±500 ms
	}
	tests := []struct {
		name    string
		workers int
		adm     queue.Admission
		steps   []step
	}{
		{"one worker: the sum of the work", 1, queue.Admission{Budget: 10 * s}, []step{
			{4 * s, nil, 0}, {4 * s, nil, 0},
			{4 * s, queue.ErrBudget, 2 * s}, // 8 s ahead + 4 s = 12 s: fits in 2 s
			{s, nil, 0},                     // 8 + 1 = 9 s
			{1500 * time.Millisecond, queue.ErrBudget, 500 * time.Millisecond},
		}},
		{"two workers share the work ahead", 2, queue.Admission{Budget: 10 * s}, []step{
			{6 * s, nil, 0}, {6 * s, nil, 0}, // both run at once: done in 6 s
			{8 * s, queue.ErrBudget, 4 * s},                  // starts in 12/2 = 6 s, ends at 14 s: indivisible
			{3 * s, nil, 0},                                  // 12/2 + 3 = 9 s
			{3 * s, queue.ErrBudget, 500 * time.Millisecond}, // 15/2 + 3 = 10.5 s
		}},
		{"a job longer than the budget never fits", 4, queue.Admission{Budget: 10 * s}, []step{
			{11 * s, queue.ErrBudget, s},
			{10 * s, nil, 0},
		}},
		{"the per-job allowance counts", 1, queue.Admission{Budget: 10 * s, PerJob: s}, []step{
			{4 * s, nil, 0}, // costs 5 s
			{4 * s, nil, 0}, // 5 + 5 = 10 s
			{0, queue.ErrBudget, s},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAdmittingQueue(t, 100, tt.workers, tt.adm)
			accepted := 0
			for i, st := range tt.steps {
				err := f.q.Enqueue(queue.Job{ID: fmt.Sprintf("job-%d", i), Work: st.work})
				if st.want == nil {
					if err != nil {
						t.Fatalf("step %d: Enqueue(work %s) = %v; want nil", i, st.work, err)
					}
					accepted++
					continue
				}
				if !errors.Is(err, st.want) {
					t.Fatalf("step %d: Enqueue(work %s) = %v; want %v", i, st.work, err, st.want)
				}
				if got := retryAfter(t, err); got < st.wait-500*time.Millisecond || got > st.wait+500*time.Millisecond {
					t.Errorf("step %d: Enqueue(work %s) RetryAfter = %s; want %s ± 500ms", i, st.work, got, st.wait)
				}
			}
			if got := f.q.Stats().Accepted; got != int64(accepted) {
				t.Errorf("Stats().Accepted = %d; want %d", got, accepted)
			}
			if got := testutil.ToFloat64(f.metrics.JobsRejected.WithLabelValues(metrics.ReasonBudget)); got != float64(len(tt.steps)-accepted) {
				t.Errorf("lameduck_jobs_rejected_total{reason=%q} = %v; want %d", metrics.ReasonBudget, got, len(tt.steps)-accepted)
			}
		})
	}
}

// TestAdmissionIsExactUnderConcurrency: producers racing for the last of the
// budget never overcommit it. One worker, a 10 s budget and 1 s jobs: exactly
// 10 are taken, whatever the interleaving (the test takes far less than the
// 1 s that would let an 11th in).
func TestAdmissionIsExactUnderConcurrency(t *testing.T) {
	f := newAdmittingQueue(t, 1000, 1, queue.Admission{Budget: 10 * time.Second})
	var ok atomic.Int64
	var producers sync.WaitGroup
	for p := range 8 {
		producers.Go(func() {
			for i := range 20 {
				err := f.q.Enqueue(queue.Job{ID: fmt.Sprintf("p%d-%d", p, i), Work: time.Second})
				switch {
				case err == nil:
					ok.Add(1)
				case !errors.Is(err, queue.ErrBudget):
					t.Errorf("Enqueue = %v; want nil or ErrBudget", err)
				}
			}
		})
	}
	producers.Wait()
	if got := ok.Load(); got != 10 {
		t.Errorf("%d jobs of 1s accepted by one worker with a 10s budget; want exactly 10", got)
	}
	if got := f.q.Stats().Accepted; got != ok.Load() {
		t.Errorf("Stats().Accepted = %d; want %d", got, ok.Load())
	}
}

// TestBacklog: the backlog is the accepted work not yet done per worker, in
// the queue's account and in lameduck_jobs_backlog_seconds, and it empties as
// the workers finish.
func TestBacklog(t *testing.T) {
	f := newAdmittingQueue(t, 100, 2, queue.Admission{Budget: time.Minute, PerJob: 10 * time.Millisecond})
	for i := range 4 {
		enqueue(t, f.q, fmt.Sprintf("job-%d", i), 4990*time.Millisecond) // costs 5 s
	}
	// 20 s of work over 2 workers; the running jobs have begun to shrink it.
	if got := f.q.Backlog(); got > 10*time.Second || got < 9*time.Second {
		t.Errorf("Backlog() = %s; want 10s, less the little the workers have done", got)
	}
	if got := testutil.ToFloat64(f.metrics.Backlog); got > 10 || got < 9 {
		t.Errorf("lameduck_jobs_backlog_seconds = %v; want 10, less the little the workers have done", got)
	}
	f.q.Abort()

	g := newAdmittingQueue(t, 100, 2, queue.Admission{Budget: time.Minute})
	for i := range 20 {
		enqueue(t, g.q, fmt.Sprintf("short-%d", i), time.Millisecond)
	}
	waitFor(t, "every job processed", func() bool { return g.q.Stats().Processed == 20 })
	waitFor(t, "an empty backlog", func() bool {
		return g.q.Backlog() == 0 && testutil.ToFloat64(g.metrics.Backlog) == 0
	})
}

// TestFullRetryAfter: a full queue's refusal says when it expects to take the
// job: no sooner than a worker frees a slot.
func TestFullRetryAfter(t *testing.T) {
	f := newAdmittingQueue(t, 1, 1, queue.Admission{Budget: time.Minute})
	enqueue(t, f.q, "running", 3*time.Second)
	// Begun: the job's time left, not its whole cost, is in the backlog.
	waitFor(t, "the worker to begin the first job", func() bool { return f.q.Backlog() < 3*time.Second })
	enqueue(t, f.q, "queued", 0)
	err := f.q.Enqueue(queue.Job{ID: "refused"})
	if !errors.Is(err, queue.ErrFull) {
		t.Fatalf("Enqueue on a full queue = %v; want ErrFull", err)
	}
	if got := retryAfter(t, err); got < 2*time.Second || got > 3*time.Second {
		t.Errorf("RetryAfter on a full queue = %s; want about 3s, when the running job ends", got)
	}
}
