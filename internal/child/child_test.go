package child

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv makes this test binary act as the child: a stand-in for lameduck
// that logs JSON records as lameduck does (see child).
const childEnv = "BINPROC_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

// child logs what it was given and "serving", then, in mode "serve", waits
// for SIGTERM and logs "shutdown complete" and exits 0; in mode "refuse" it
// writes to standard error and exits 2 without serving.
func child(mode string) int {
	enc := json.NewEncoder(os.Stdout)
	if mode == "refuse" {
		fmt.Fprintln(os.Stderr, "configuration: LAMEDUCK_X: bad value")
		return 2
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LAMEDUCK_") || strings.HasPrefix(kv, "GOMAXPROCS=") || strings.HasPrefix(kv, "GOGC=") {
			env = append(env, kv)
		}
	}
	_ = enc.Encode(map[string]any{"msg": "args", "args": os.Args[1:], "env": env})
	_ = enc.Encode(map[string]any{"msg": "job processed", "id": "1"})
	_ = enc.Encode(map[string]any{"msg": "serving", "http_addr": "127.0.0.1:1", "admin_addr": "127.0.0.1:2"})
	<-term
	_ = enc.Encode(map[string]any{"msg": "shutdown complete", "requests_cut": 0})
	return 0
}

// TestStartTerminate runs the child through Start as the tests run lameduck:
// it must return once "serving" is logged, with the addresses from it, pass
// the arguments and only cfg's LAMEDUCK_ and runtime settings, keep the
// records Keep allows plus the lifecycle ones, and report a clean exit after
// SIGTERM.
func TestStartTerminate(t *testing.T) {
	t.Setenv("LAMEDUCK_FROM_PARENT", "leaks")
	t.Setenv("GOGC", "5")
	var lines int
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := Start(ctx, os.Args[0], Config{
		Name: "child",
		Args: []string{"-flag", "value"},
		Env:  []string{childEnv + "=serve", "LAMEDUCK_GIVEN=1", "GOMAXPROCS=1"},
		OnLine: func([]byte) {
			lines++ // read only after the exit: the reader goroutine has ended
		},
		Keep: func(r Record) bool { return r.Msg() != "job processed" },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if p.HTTPAddr != "127.0.0.1:1" || p.AdminAddr != "127.0.0.1:2" {
		t.Errorf("addresses %q and %q, want those of the serving record", p.HTTPAddr, p.AdminAddr)
	}
	args := p.Find("args")
	if args == nil {
		t.Fatalf("no args record kept:\n%s", p.Log())
	}
	if got := fmt.Sprint(args["args"]); got != "[-flag value]" {
		t.Errorf("arguments %s, want [-flag value]", got)
	}
	got := fmt.Sprint(args["env"])
	for _, want := range []string{"LAMEDUCK_GIVEN=1", "GOMAXPROCS=1", "LAMEDUCK_LOG_FORMAT=json", "LAMEDUCK_HTTP_ADDR=127.0.0.1:0"} {
		if !strings.Contains(got, want) {
			t.Errorf("child environment %s lacks %s", got, want)
		}
	}
	for _, leaked := range []string{"LAMEDUCK_FROM_PARENT", "GOGC"} {
		if strings.Contains(got, leaked) {
			t.Errorf("child environment %s has the parent's %s", got, leaked)
		}
	}
	if p.Find("job processed") != nil {
		t.Error("a record Keep refused was kept")
	}
	if err := p.Terminate(); err != nil {
		t.Fatal(err)
	}
	if p.Terminated().IsZero() {
		t.Error("Terminated is zero after Terminate")
	}
	code, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 || p.Find("shutdown complete") == nil {
		t.Errorf("exit %d, shutdown complete %v; want 0 and the record:\n%s", code, p.Find("shutdown complete"), p.Log())
	}
	if lines != 4 {
		t.Errorf("OnLine saw %d lines, want 4", lines)
	}
}

// TestStartRefused checks that a process that exits without serving fails
// Start at once, with its standard error in the error.
func TestStartRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := Start(ctx, os.Args[0], Config{Name: "child", Env: []string{childEnv + "=refuse"}})
	if err == nil {
		t.Fatal("Start returned no error for a process that exited without serving")
	}
	if !strings.Contains(err.Error(), "LAMEDUCK_X: bad value") {
		t.Errorf("error %q lacks the process's standard error", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("Start took %s: it waited for its context, not for the exit", took)
	}
}
