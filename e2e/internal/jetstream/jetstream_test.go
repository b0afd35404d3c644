// Package jetstream_test proves lameduck's JetStream queue
// (LAMEDUCK_QUEUE_URL) on the real binary against a real NATS server
// embedded in the test: a job is stored before its 202, an engine that is
// down gets 503 and never a 202, a killed replica's job is redelivered to
// another, a job longer than the ack wait keeps its lease, an
// Idempotency-Key holds across replicas, and a shutdown leaves what it did
// not begin to the other replicas.
package jetstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/lameduck/lameduck/internal/child"
)

// stream is the stream lameduck creates by default (LAMEDUCK_QUEUE_STREAM).
const stream = "LAMEDUCK_JOBS"

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lameduck-jetstream-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary, err = child.Build(context.Background(), dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// engine is one NATS server with JetStream, on a loopback port, its store
// in a directory that outlives a restart.
type engine struct {
	t    *testing.T
	opts natsserver.Options
	srv  *natsserver.Server
}

func startEngine(t *testing.T) *engine {
	t.Helper()
	e := &engine{t: t, opts: natsserver.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	}}
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *engine) start() {
	e.t.Helper()
	opts := e.opts
	srv, err := natsserver.NewServer(&opts)
	if err != nil {
		e.t.Fatalf("nats server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		e.t.Fatal("nats server not ready within 10s")
	}
	e.srv = srv
	e.opts.Port = srv.Addr().(*net.TCPAddr).Port // a restart keeps the port
}

// stop shuts the server down; start brings it back on the same port and store.
func (e *engine) stop() {
	if e.srv != nil {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		e.srv = nil
	}
}

func (e *engine) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", e.opts.Port) }

// client is the test's own view of the stream.
func (e *engine) client(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(e.url())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// lameduck starts the binary on e's stream, with env added.
func lameduck(t *testing.T, e *engine, name string, env ...string) *child.Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := child.Start(ctx, binary, child.Config{Name: name, Env: append([]string{
		"LAMEDUCK_QUEUE_URL=" + e.url(), "LAMEDUCK_PRESTOP_DELAY=0s", "LAMEDUCK_PRESTOP_MIN=0s",
	}, env...)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	// The stream exists once a worker has created it.
	if _, err := p.WaitRecord(ctx, "job queue: stream ready"); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, p.Log())
	}
	return p
}

// answer is what POST /jobs answered.
type answer struct {
	code       int
	id         string
	retryAfter string
	body       string
}

func post(t *testing.T, p *child.Process, work time.Duration, key string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+p.HTTPAddr+"/jobs?work="+work.String(), strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("SERVICE: POST /jobs on %s: %v", p.Name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(b)}
	if a.code == http.StatusAccepted {
		var v struct{ ID string }
		if err := json.Unmarshal(b, &v); err != nil || v.ID == "" {
			t.Fatalf("SERVICE: 202 without an id: %q", b)
		}
		a.id = v.ID
	}
	return a
}

func accepted(t *testing.T, p *child.Process, work time.Duration, key string) string {
	t.Helper()
	a := post(t, p, work, key)
	if a.code != http.StatusAccepted {
		t.Fatalf("SERVICE: POST /jobs on %s = %d %q; want 202", p.Name, a.code, a.body)
	}
	return a.id
}

// seq is the stream sequence in a job id ("lameduck_jobs-42").
func seq(t *testing.T, id string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(id[strings.LastIndexByte(id, '-')+1:], 10, 64)
	if err != nil {
		t.Fatalf("job id %q does not end in a stream sequence", id)
	}
	return n
}

// processed returns the "job processed" records for id.
func processed(p *child.Process, id string) []child.Record {
	var out []child.Record
	for _, r := range p.All("job processed") {
		if r["job_id"] == id {
			out = append(out, r)
		}
	}
	return out
}

func waitProcessed(t *testing.T, p *child.Process, id string, within time.Duration) child.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var rec child.Record
	if err := child.Until(ctx, 20*time.Millisecond, func() bool {
		if r := processed(p, id); len(r) > 0 {
			rec = r[0]
			return true
		}
		return false
	}); err != nil {
		t.Fatalf("SERVICE: job %s not processed by %s within %s:\n%s", id, p.Name, within, p.Log())
	}
	return rec
}

// logTime is when a record was logged.
func logTime(r child.Record) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(r["time"]))
	return t
}

// waitHeld waits until a worker of p holds a job (fetched, not acked).
func waitHeld(t *testing.T, e *engine, p *child.Process) {
	t.Helper()
	cons, err := e.client(t).Consumer(context.Background(), stream, "lameduck-workers")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := child.Until(ctx, 10*time.Millisecond, func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 1
	}); err != nil {
		t.Fatalf("SERVICE: %s never fetched the job: %v\n%s", p.Name, err, p.Log())
	}
}

func TestStoredBefore202(t *testing.T) {
	e := startEngine(t)
	p := lameduck(t, e, "a", "LAMEDUCK_WORKERS=1", "LAMEDUCK_MAX_WORK=2s")
	js := e.client(t)
	st, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	// One worker, 2 s jobs: the jobs after the first wait in the stream,
	// and each is there, with its work, the moment its 202 arrives.
	for i := range 3 {
		id := accepted(t, p, 2*time.Second, "")
		msg, err := st.GetMsg(context.Background(), seq(t, id))
		if err != nil {
			t.Fatalf("SERVICE: job %d (%s) answered 202 but not in the stream: %v", i, id, err)
		}
		if !strings.Contains(string(msg.Data), `"work":2000000000`) {
			t.Errorf("stored job %s = %s; want its work of 2s", id, msg.Data)
		}
	}
}

func TestEngineDownIs503(t *testing.T) {
	e := startEngine(t)
	p := lameduck(t, e, "a")
	accepted(t, p, 0, "")
	e.stop()
	for i := range 5 {
		a := post(t, p, 0, "")
		if a.code != http.StatusServiceUnavailable || a.retryAfter == "" {
			t.Fatalf("SERVICE: POST /jobs %d with the engine down = %d (Retry-After %q) %q; want 503 with a Retry-After",
				i, a.code, a.retryAfter, a.body)
		}
	}
	// The pod stays ready: it serves everything else, and a 503 with
	// Retry-After is the honest answer for jobs.
	resp, err := http.Get("http://" + p.AdminAddr + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("SERVICE: /ready with the engine down = %d; want 200", resp.StatusCode)
	}
	// Back: jobs are taken again once the connection is.
	e.start()
	acceptedAgain(t, p, "the engine's return")
}

// acceptedAgain posts a job to p until one is answered 202 (within 20 s of
// what made p refuse them, why), and waits for it to be processed.
func acceptedAgain(t *testing.T, p *child.Process, why string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var last answer
	if err := child.Until(ctx, 100*time.Millisecond, func() bool {
		last = post(t, p, 0, "")
		return last.code == http.StatusAccepted
	}); err != nil {
		t.Fatalf("SERVICE: no 202 within 20s of %s; last %d %q\n%s", why, last.code, last.body, p.Log())
	}
	waitProcessed(t, p, last.id, 10*time.Second)
}

func TestFullStreamIs503(t *testing.T) {
	e := startEngine(t)
	// The stream holds 2 jobs, the one running included (a job leaves it
	// when acked): the third waits for room.
	p := lameduck(t, e, "a", "LAMEDUCK_WORKERS=1", "LAMEDUCK_QUEUE_SIZE=2", "LAMEDUCK_MAX_WORK=3s")
	accepted(t, p, 3*time.Second, "")
	accepted(t, p, 3*time.Second, "")
	a := post(t, p, 3*time.Second, "")
	if a.code != http.StatusServiceUnavailable || a.retryAfter == "" || !strings.Contains(a.body, "full") {
		t.Fatalf("SERVICE: POST /jobs on a full stream = %d (Retry-After %q) %q; want 503, full, with a Retry-After",
			a.code, a.retryAfter, a.body)
	}
}

func TestDeletedStreamIsCreatedAgain(t *testing.T) {
	e := startEngine(t)
	p := lameduck(t, e, "a")
	waitProcessed(t, p, accepted(t, p, 0, ""), 10*time.Second)
	// Lost with a NATS server that came back empty, or deleted by hand:
	// the workers create the stream and the consumer again.
	if err := e.client(t).DeleteStream(context.Background(), stream); err != nil {
		t.Fatal(err)
	}
	acceptedAgain(t, p, "the stream's deletion")
}

func TestKilledReplicasJobIsRedelivered(t *testing.T) {
	e := startEngine(t)
	env := []string{"LAMEDUCK_WORKERS=1", "LAMEDUCK_MAX_WORK=2s"} // ack wait 2s
	a := lameduck(t, e, "a", env...)
	id := accepted(t, a, 2*time.Second, "")
	// Once a's worker holds the job, SIGKILL a: nothing of a is left to
	// hand it back.
	waitHeld(t, e, a)
	if err := a.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-a.Exited()
	b := lameduck(t, e, "b", env...)
	rec := waitProcessed(t, b, id, 30*time.Second)
	redelivered := b.Find("job redelivered")
	if redelivered == nil || redelivered["job_id"] != id {
		t.Fatalf("SERVICE: b processed %s without logging its redelivery:\n%s", id, b.Log())
	}
	if d, _ := rec["deliveries"].(float64); d != 2 {
		t.Errorf("deliveries = %v; want 2", rec["deliveries"])
	}
	t.Logf("job %s: killed with a at %s; processed by b %s after the kill (ack wait 2s)",
		id, killed.Format(time.TimeOnly), time.Since(killed).Round(time.Millisecond))
}

func TestLongJobKeepsItsLease(t *testing.T) {
	e := startEngine(t)
	// The ack wait is 10 s at most; a 12 s job outlives it and must keep
	// its lease with in-progress acks, or b is given it too.
	env := []string{"LAMEDUCK_WORKERS=1", "LAMEDUCK_MAX_WORK=12s"}
	a := lameduck(t, e, "a", env...)
	b := lameduck(t, e, "b", env...)
	id := accepted(t, a, 12*time.Second, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := child.Until(ctx, 50*time.Millisecond, func() bool {
		return len(processed(a, id))+len(processed(b, id)) > 0
	}); err != nil {
		t.Fatalf("SERVICE: job %s not processed within 60s\n%s\n%s", id, a.Log(), b.Log())
	}
	for _, p := range []*child.Process{a, b} {
		if r := p.Find("job redelivered"); r != nil {
			t.Errorf("SERVICE: %s was given job %s again while the other still ran it: %v", p.Name, id, r)
		}
	}
}

func TestIdempotencyKeyAcrossReplicas(t *testing.T) {
	e := startEngine(t)
	a := lameduck(t, e, "a")
	b := lameduck(t, e, "b")
	first := post(t, a, 0, "order-7")
	again := post(t, b, 0, "order-7")
	other := post(t, b, 0, "order-8")
	if first.code != http.StatusAccepted || again.code != http.StatusAccepted || other.code != http.StatusAccepted {
		t.Fatalf("codes %d, %d, %d; want 202 each", first.code, again.code, other.code)
	}
	if again.id != first.id {
		t.Errorf("SERVICE: the retry on b answered %s; want the first job's id %s", again.id, first.id)
	}
	if other.id == first.id {
		t.Errorf("SERVICE: another key answered the same id %s", other.id)
	}
	st, err := e.client(t).Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != 2 {
		t.Errorf("SERVICE: the stream stored %d jobs; want 2 (the retry stored nothing)", info.State.LastSeq)
	}
}

func TestShutdownLeavesJobsToOthers(t *testing.T) {
	t.Run("drain", func(t *testing.T) {
		e := startEngine(t)
		env := []string{"LAMEDUCK_WORKERS=1", "LAMEDUCK_MAX_WORK=1s"}
		a := lameduck(t, e, "a", env...)
		var ids []string
		for range 6 {
			ids = append(ids, accepted(t, a, time.Second, ""))
		}
		if err := a.Terminate(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if code, err := a.Wait(ctx); err != nil || code != 0 {
			t.Fatalf("SERVICE: a exited %d (%v); want 0: it lost nothing\n%s", code, err, a.Log())
		}
		done := a.Find("shutdown complete")
		left, _ := done["jobs_left_in_stream"].(float64)
		n, _ := done["jobs_processed"].(float64)
		if int(n)+int(left) != len(ids) || left == 0 {
			t.Fatalf("SERVICE: a processed %v and left %v of %d jobs; want the rest left in the stream\n%s",
				n, left, len(ids), a.Log())
		}
		b := lameduck(t, e, "b", env...)
		for _, id := range ids {
			if len(processed(a, id)) == 0 {
				waitProcessed(t, b, id, 30*time.Second)
			}
			if len(processed(a, id))+len(processed(b, id)) != 1 {
				t.Errorf("SERVICE: job %s processed %d times by a, %d by b; want once", id,
					len(processed(a, id)), len(processed(b, id)))
			}
		}
	})
	t.Run("second signal", func(t *testing.T) {
		e := startEngine(t)
		env := []string{"LAMEDUCK_WORKERS=1", "LAMEDUCK_MAX_WORK=6s"} // ack wait 6s
		a := lameduck(t, e, "a", env...)
		id := accepted(t, a, 6*time.Second, "")
		waitHeld(t, e, a)
		b := lameduck(t, e, "b", env...) // fetching, idle: a holds the only job
		if err := a.Terminate(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := a.WaitRecord(ctx, "prestop ended"); err != nil {
			t.Fatal(err)
		}
		// The job runs; a second signal aborts the drain: the job goes
		// back to the stream at once, not after the ack wait. (lameduck
		// takes signals within 250 ms of the first for the same request.)
		time.Sleep(time.Until(a.Terminated().Add(300 * time.Millisecond)))
		if err := a.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		back := a.Find("job handed back")
		if back == nil || back["job_id"] != id {
			t.Fatalf("SERVICE: a did not hand job %s back:\n%s", id, a.Log())
		}
		rec := waitProcessed(t, b, id, 30*time.Second)
		if d, _ := rec["deliveries"].(float64); d != 2 {
			t.Errorf("deliveries = %v; want 2", rec["deliveries"])
		}
		// Handed back, the job is b's at its next fetch; left to the ack
		// wait, it stays leased to the dead a for 4 to 6 s more.
		if d := logTime(b.Find("job redelivered")).Sub(logTime(back)); d > 2*time.Second {
			t.Errorf("SERVICE: b began the job %s after a handed it back; want at once, not after the 6s ack wait",
				d.Round(time.Millisecond))
		}
	})
}
