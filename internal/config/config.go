// Package config loads lameduck's configuration from LAMEDUCK_* environment
// variables and validates it, including the shutdown budget against the pod's
// termination grace period.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Prefix is the prefix of every environment variable lameduck reads.
const Prefix = "LAMEDUCK"

// GraceSpare is the least time the shutdown budget must leave unused inside
// the grace period, for process exit and the kubelet's own bookkeeping.
const GraceSpare = time.Second

// RequestSpare is what the longest allowed request (LAMEDUCK_MAX_DELAY) must
// leave unused of LAMEDUCK_SHUTDOWN_TIMEOUT: a request can start as late as
// the end of the preStop delay, and it still has to be read and answered.
const RequestSpare = time.Second

// JobAllowance is what admission adds to every job's work: the worker's own
// time between jobs (taking it, its log record, its metrics) and the lateness
// of its timer on a busy machine. Admission counts each job as work +
// JobAllowance.
const JobAllowance = 2 * time.Millisecond

// drainReserve is the share of LAMEDUCK_DRAIN_TIMEOUT that admission never
// promises (1/20, 5%): slack for a machine too busy to run the workers on
// time. What is left is DrainBudget.
const drainReserve = 20

// ErrInvalid marks every configuration error; callers map it to exit code 2.
var ErrInvalid = errors.New("invalid configuration")

// Config is lameduck's whole configuration. Fields carry split_words and no
// explicit envconfig tag on purpose: an explicit tag makes envconfig fall back
// to the unprefixed name (WORKERS, PORT...), which must never be read.
//
// The fields are declared in the groups `lameduck -h` prints them in (see
// usage.go): the shutdown budget, requests, jobs, logging, listeners.
//
// A Config that Load returns remembers which values it derived (Derived), so
// two Configs with the same values compare equal only if they were derived
// alike; compare the fields when that matters.
type Config struct {
	PrestopDelay    time.Duration `split_words:"true" default:"5s" desc:"after SIGTERM: keep serving (readiness failing, keep-alives off) at most this long: the preStop delay's maximum"`
	PrestopMin      time.Duration `split_words:"true" default:"5s" desc:"and at least this long: the preStop delay's minimum (equal to the maximum: a fixed delay)"`
	PrestopQuiet    time.Duration `split_words:"true" default:"1s" desc:"in between, the delay ends once no connection or request has arrived for this long"`
	ShutdownTimeout time.Duration `split_words:"true" default:"15s" desc:"then: longest wait for in-flight requests (http.Server.Shutdown)"`
	DrainTimeout    time.Duration `split_words:"true" default:"5s" desc:"then: longest wait for queued jobs to be processed"`
	GracePeriod     time.Duration `split_words:"true" default:"30s" desc:"the pod's terminationGracePeriodSeconds; never derived: set it to match the pod"`

	HelloDelay time.Duration `split_words:"true" default:"0s" desc:"default delay of GET /hello (override per request with ?delay=)"`
	MaxDelay   time.Duration `split_words:"true" default:"4s" desc:"cap on ?delay= (larger is 400)"`

	// Bounds on what one client can hold; see limits.go and the README's memory budget.
	MaxConns          int           `split_words:"true" default:"256" desc:"most app connections open at once; more are closed at once (the admin listener is not counted)"`
	MaxRequests       int           `split_words:"true" default:"256" desc:"most app requests in handlers at once, over every connection (an HTTP/2 connection carries up to 16); more are answered 503 with Retry-After at once"`
	MaxHeaderBytes    int           `split_words:"true" default:"8192" desc:"largest request header block in bytes (larger is 431)"`
	ReadHeaderTimeout time.Duration `split_words:"true" default:"5s" desc:"longest a client may take to send a request's headers"`
	BodyTimeout       time.Duration `split_words:"true" default:"5s" desc:"longest a client may take to send a request's body once its headers are in (408 after)"`
	WriteTimeout      time.Duration `split_words:"true" default:"3s" desc:"longest a response may take to go out once written (a client that stops reading is closed)"`
	IdleTimeout       time.Duration `split_words:"true" default:"2m" desc:"how long an idle keep-alive connection stays open"`

	MaxBody     int64         `split_words:"true" default:"65536" desc:"largest POST /jobs body in bytes (larger is 413)"`
	QueueSize   int           `split_words:"true" default:"1000" desc:"capacity of the in-memory job queue (full is 503)"`
	Workers     int           `split_words:"true" default:"4" desc:"number of job workers"`
	JobDuration time.Duration `split_words:"true" default:"50ms" desc:"simulated work per job (override per job with ?work=)"`
	MaxWork     time.Duration `split_words:"true" default:"1s" desc:"cap on ?work= (larger is 400)"`

	// The queue's engine: empty is the in-memory queue; a nats:// URL is a
	// NATS JetStream stream shared by every replica (see internal/jetstream).
	QueueURL      string `split_words:"true" default:"" desc:"empty: the in-memory queue; nats://host:4222 (comma-separated for several): jobs live in a NATS JetStream stream shared by every replica"`
	QueueStream   string `split_words:"true" default:"LAMEDUCK_JOBS" desc:"with LAMEDUCK_QUEUE_URL: the JetStream stream (and its subject), created if missing"`
	QueueReplicas int    `split_words:"true" default:"1" desc:"with LAMEDUCK_QUEUE_URL: the stream's replicas (3 to survive the loss of a NATS server); a 202 means stored on a majority of them"`

	IdempotencyTTL      time.Duration `split_words:"true" default:"10m" desc:"how long an Idempotency-Key is remembered (with LAMEDUCK_QUEUE_URL: the stream's de-duplication window, across replicas)"`
	IdempotencyMaxKeys  int           `split_words:"true" default:"100000" desc:"most Idempotency-Keys remembered at once (oldest forgotten first)"`
	IdempotencyMaxBytes int64         `split_words:"true" default:"4194304" desc:"most memory in bytes the remembered Idempotency-Keys take, bookkeeping included (oldest forgotten first)"`

	LogFormat string `split_words:"true" default:"auto" desc:"json, text, or auto: text when standard output is a terminal, JSON otherwise"`
	LogLevel  string `split_words:"true" default:"info" desc:"debug, info, warn or error"`

	HTTPAddr  string `split_words:"true" default:":8080" desc:"address of the app listener (/hello, /jobs)"`
	AdminAddr string `split_words:"true" default:":8086" desc:"address of the admin listener (/live, /ready, /metrics, /version)"`

	// derived holds the notes Derived returns, one a line: a string keeps
	// Config comparable.
	derived string
}

// Load reads the configuration from the environment, derives the limits
// left unset from the values that are set, and validates the result. Every
// error it returns wraps ErrInvalid and names every variable at fault.
//
// A variable counts as set when it is in the environment (os.LookupEnv),
// whatever its value; envconfig alone cannot tell a default from the same
// value set on purpose. A value left unset that does not fit the values set
// bends to them (see derive.go; Derived says what moved and why); only a
// conflict between values set on purpose is refused, and its message names
// which values were set and which defaulted, and gives a fix that works.
// LAMEDUCK_GRACE_PERIOD is never derived: it must match the pod's.
//
// Unknown LAMEDUCK_ variables (a typo), values their type cannot parse (an
// integer is decimal: "010" is refused, never read as octal 8), values out
// of range and conflicts are reported together. Load reads and, for a
// moment, changes the process environment (see processWithout): call it at
// start-up, before anything else reads the environment.
func Load() (Config, error) {
	vars := variableList()
	errs := unknownVariables(vars) // envconfig ignores them
	syntax, bad := checkSyntax(vars)
	errs = append(errs, syntax...)
	var c Config
	if err := processWithout(bad, &c); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	set, unparsed := map[string]bool{}, map[string]bool{}
	for _, v := range vars {
		if _, ok := os.LookupEnv(v.key); ok {
			set[v.key] = true
		}
	}
	for _, k := range bad {
		unparsed[k] = true // its default stands in; no rule involving it is reported
	}
	s := settle(c, set, unparsed)
	for _, p := range s.problems {
		errs = append(errs, errors.New(s.explain(p, true)))
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	c = s.c
	c.derived = strings.Join(s.notes(), "\n")
	return c, nil
}

// Derived lists the values Load derived, one sentence each, in the order it
// derived them: "LAMEDUCK_MAX_DELAY=1s (default 4s) derived from
// LAMEDUCK_SHUTDOWN_TIMEOUT=2s (set): ...". It is empty when every value is
// as set or as its default, and for a Config that Load did not return.
func (c Config) Derived() []string {
	if c.derived == "" {
		return nil
	}
	return strings.Split(c.derived, "\n")
}

// Limits that keep a typo from exhausting memory or overflowing the budget.
const (
	maxQueueSize = 1_000_000
	maxWorkers   = 10_000
	maxMaxBody   = 1 << 30
	maxKeys      = 10_000_000
	maxDuration  = 24 * time.Hour
	maxReplicas  = 5
	// leastDedupeWindow is the shortest de-duplication window JetStream
	// takes (and 0 would mean its default, 2 minutes).
	leastDedupeWindow = 100 * time.Millisecond
)

// checkQueueURL accepts a comma-separated list of nats:// (or tls://) URLs
// with a host.
func checkQueueURL(list string) error {
	for raw := range strings.SplitSeq(list, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		switch {
		case err != nil:
			return fmt.Errorf("%q is not a URL: %w", raw, err)
		case u.Scheme != "nats" && u.Scheme != "tls":
			return fmt.Errorf("%q: want nats://host:port (or tls://), got scheme %q", raw, u.Scheme)
		case u.Host == "":
			return fmt.Errorf("%q has no host: want nats://host:port", raw)
		}
	}
	return nil
}

// validStreamName reports whether name can name a JetStream stream and be
// its subject: one token of letters, digits, '-' and '_'.
func validStreamName(name string) bool {
	if name == "" || len(name) > 255 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// AckWait is how long a job fetched from the JetStream stream stays leased
// to its worker without a word from it: LAMEDUCK_MAX_WORK, the longest a
// job's work may be, within [1s, 10s]. A worker sends an in-progress ack
// every AckWait/3 while a job runs, so a live worker keeps its lease
// however long the job or slow the machine; a killed worker's jobs are
// redelivered within AckWait of its last word (10 s at most, where
// JetStream's default would be 30 s).
func (c Config) AckWait() time.Duration { return min(max(c.MaxWork, time.Second), 10*time.Second) }

// checkSyntax reports every LAMEDUCK_ variable set to a value its type
// cannot parse, and returns their names. The variables and their types come
// from envconfig itself, so they cannot drift from Config.
func checkSyntax(vars []variable) (errs []error, bad []string) {
	for _, v := range vars {
		value, ok := os.LookupEnv(v.key)
		if !ok {
			continue
		}
		if err := checkValue(v.typ, value); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", v.key, err))
			bad = append(bad, v.key)
		}
	}
	return errs, bad
}

// checkValue reports whether v parses as a value of type typ (as envconfig
// describes it). Integers are decimal only: envconfig would read "010" as octal
// 8 and "0x10" as 16.
func checkValue(typ, v string) error {
	switch typ {
	case "Duration":
		if _, err := time.ParseDuration(v); err != nil {
			return fmt.Errorf("%q is not a duration such as 250ms or 5s", v)
		}
	case "Integer":
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return fmt.Errorf("%q is not a whole number in decimal", v)
		}
		if digits := strings.TrimLeft(v, "+-"); len(digits) > 1 && digits[0] == '0' {
			return fmt.Errorf("%q has a leading zero; write it without (integers are decimal, never octal)", v)
		}
	}
	return nil
}

// Validate reports every problem in c at once, each naming its variable, and
// for each conflict between values a fix. It treats every value as set on
// purpose: a literal says nothing of defaults, so nothing is derived.
func (c Config) Validate() error {
	all := map[string]bool{}
	for _, v := range variableList() {
		all[v.key] = true
	}
	s := settle(c, all, nil)
	var errs []error
	for _, p := range s.problems {
		errs = append(errs, errors.New(s.explain(p, false)))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
}

// rangeProblems reports every value that is wrong on its own, whatever the
// others are: out of range, empty, unknown. A variable with such a problem
// takes no part in derivation or in the conflicts between values.
func (c Config) rangeProblems() []problem {
	var ps []problem
	bad := func(field, format string, args ...any) {
		key := Prefix + "_" + field
		ps = append(ps, problem{rule: "range:" + key, vars: []string{key}, msg: key + ": " + fmt.Sprintf(format, args...)})
	}
	if c.HTTPAddr == "" {
		bad("HTTP_ADDR", "must not be empty")
	}
	if c.AdminAddr == "" {
		bad("ADMIN_ADDR", "must not be empty")
	}
	durations := []struct {
		name string
		d    time.Duration
	}{
		{"HELLO_DELAY", c.HelloDelay}, {"MAX_DELAY", c.MaxDelay}, {"MAX_WORK", c.MaxWork}, {"JOB_DURATION", c.JobDuration},
		{"IDEMPOTENCY_TTL", c.IdempotencyTTL}, {"PRESTOP_DELAY", c.PrestopDelay}, {"PRESTOP_MIN", c.PrestopMin},
		{"PRESTOP_QUIET", c.PrestopQuiet},
		{"SHUTDOWN_TIMEOUT", c.ShutdownTimeout}, {"DRAIN_TIMEOUT", c.DrainTimeout}, {"GRACE_PERIOD", c.GracePeriod},
	}
	for _, d := range durations {
		switch {
		case d.d < 0:
			bad(d.name, "must not be negative, got %s", d.d)
		case d.d > maxDuration:
			bad(d.name, "must be at most %s, got %s", maxDuration, d.d)
		}
	}
	counts := []struct {
		name     string
		n, limit int64
	}{
		{"MAX_BODY", c.MaxBody, maxMaxBody}, {"QUEUE_SIZE", int64(c.QueueSize), maxQueueSize},
		{"WORKERS", int64(c.Workers), maxWorkers}, {"IDEMPOTENCY_MAX_KEYS", int64(c.IdempotencyMaxKeys), maxKeys},
	}
	for _, n := range counts {
		if n.n < 1 || n.n > n.limit {
			bad(n.name, "must be between 1 and %d, got %d", n.limit, n.n)
		}
	}
	if c.QueueURL != "" {
		if err := checkQueueURL(c.QueueURL); err != nil {
			bad("QUEUE_URL", "%v", err)
		}
		if !validStreamName(c.QueueStream) {
			bad("QUEUE_STREAM", "must be 1 to 255 letters, digits, '-' or '_', got %q", c.QueueStream)
		}
		if c.QueueReplicas < 1 || c.QueueReplicas > maxReplicas {
			bad("QUEUE_REPLICAS", "must be between 1 and %d (JetStream's limit), got %d", maxReplicas, c.QueueReplicas)
		}
		if c.IdempotencyTTL >= 0 && c.IdempotencyTTL < leastDedupeWindow {
			bad("IDEMPOTENCY_TTL", "must be at least %s with LAMEDUCK_QUEUE_URL set: it is the stream's de-duplication window, and JetStream refuses a shorter one, got %s",
				leastDedupeWindow, c.IdempotencyTTL)
		}
	}
	if c.PrestopQuiet == 0 {
		bad("PRESTOP_QUIET", "must be positive: it is how long no request may arrive before the preStop delay ends")
	}
	switch {
	case c.ShutdownTimeout == 0:
		bad("SHUTDOWN_TIMEOUT", "must be positive: in-flight requests need time to finish")
	case c.ShutdownTimeout > 0 && c.ShutdownTimeout < RequestSpare:
		bad("SHUTDOWN_TIMEOUT", "%s is shorter than the %s every request gets to be answered after the preStop delay (even with LAMEDUCK_MAX_DELAY=0s); make it at least %s",
			c.ShutdownTimeout, RequestSpare, RequestSpare)
	}
	if c.DrainTimeout > 0 && c.DrainBudget() < JobAllowance {
		bad("DRAIN_TIMEOUT", "%s cannot finish even one job: its budget, 95%% of it, must hold the %s every job counts beyond its work; make it at least %s",
			c.DrainTimeout, JobAllowance, leastDrainTimeout())
	}
	if _, err := c.Level(); err != nil {
		bad("LOG_LEVEL", "%v", err)
	}
	c.validateLimits(bad)
	switch c.LogFormat {
	case "json", "text", "auto":
	default:
		bad("LOG_FORMAT", "must be json or text (or auto: text on a terminal, JSON otherwise), got %q", c.LogFormat)
	}
	return ps
}

// leastDrainTimeout is the shortest LAMEDUCK_DRAIN_TIMEOUT, in whole
// milliseconds, whose budget holds one job of ?work=0s.
func leastDrainTimeout() time.Duration {
	d := time.Millisecond
	for (Config{DrainTimeout: d}).DrainBudget() < JobAllowance {
		d += time.Millisecond
	}
	return d
}

// DrainBudget is the time admission lets accepted work take: every job
// answered 202 can finish within DrainBudget of its acceptance, so within
// the drain timeout whenever the queue closes.
func (c Config) DrainBudget() time.Duration { return c.DrainTimeout - c.DrainTimeout/drainReserve }

// Warnings lists what in c is allowed but probably not meant.
func (c Config) Warnings() []string {
	var w []string
	if c.PrestopMin < c.PrestopDelay && c.PrestopQuiet >= c.PrestopDelay {
		w = append(w, fmt.Sprintf("%s_PRESTOP_QUIET=%s is no shorter than %s_PRESTOP_DELAY (%s): the preStop delay always lasts its maximum",
			Prefix, c.PrestopQuiet, Prefix, c.PrestopDelay))
	}
	// The cheapest job is a ?work=0s job, which admission counts as
	// JobAllowance: the budget holds at most this many jobs at once.
	if c.Workers > 0 && c.DrainBudget() > 0 && c.QueueURL == "" {
		if most := int64(c.Workers) * int64(c.DrainBudget()/JobAllowance); int64(c.QueueSize) > most {
			w = append(w, fmt.Sprintf("%s_QUEUE_SIZE=%d can never fill: %s_WORKERS (%d) × the drain budget (%s) admits at most %d jobs at once, even of ?work=0s; the queue's size is its memory bound, the budget decides what it takes",
				Prefix, c.QueueSize, Prefix, c.Workers, c.DrainBudget(), most))
		}
	}
	return w
}

// Budget is the longest the shutdown sequence may take.
func (c Config) Budget() time.Duration {
	return c.PrestopDelay + c.ShutdownTimeout + c.DrainTimeout
}

// Level parses LogLevel.
func (c Config) Level() (slog.Level, error) {
	var l slog.Level
	switch strings.ToLower(c.LogLevel) {
	case "debug":
		l = slog.LevelDebug
	case "info":
		l = slog.LevelInfo
	case "warn", "warning":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		return 0, fmt.Errorf("unknown level %q (want debug, info, warn or error)", c.LogLevel)
	}
	return l, nil
}
