// Package config loads lameduck's configuration from LAMEDUCK_* environment
// variables and validates it, including the shutdown budget against the pod's
// termination grace period.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"
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
type Config struct {
	HTTPAddr  string `split_words:"true" default:":8080" desc:"address of the app listener (/hello, /jobs)"`
	AdminAddr string `split_words:"true" default:":8086" desc:"address of the admin listener (/live, /ready, /metrics, /version)"`

	HelloDelay time.Duration `split_words:"true" default:"0s" desc:"default delay of GET /hello (override per request with ?delay=)"`
	MaxDelay   time.Duration `split_words:"true" default:"4s" desc:"cap on ?delay=; with 1s spare it must fit in LAMEDUCK_SHUTDOWN_TIMEOUT"`
	MaxWork    time.Duration `split_words:"true" default:"1s" desc:"cap on ?work=; one such job must fit in LAMEDUCK_DRAIN_TIMEOUT"`
	MaxBody    int64         `split_words:"true" default:"65536" desc:"largest POST /jobs body in bytes (larger is 413)"`

	QueueSize   int           `split_words:"true" default:"1000" desc:"capacity of the in-memory job queue (full is 503)"`
	Workers     int           `split_words:"true" default:"4" desc:"number of job workers"`
	JobDuration time.Duration `split_words:"true" default:"50ms" desc:"simulated work per job (override per job with ?work=)"`

	IdempotencyTTL     time.Duration `split_words:"true" default:"10m" desc:"how long an Idempotency-Key is remembered"`
	IdempotencyMaxKeys int           `split_words:"true" default:"100000" desc:"most Idempotency-Keys remembered at once (oldest forgotten first)"`

	// Bounds on what one client can hold; see limits.go and the README's memory budget.
	IdempotencyMaxBytes int64         `split_words:"true" default:"4194304" desc:"most memory in bytes the remembered Idempotency-Keys take, bookkeeping included (oldest forgotten first)"`
	MaxConns            int           `split_words:"true" default:"256" desc:"most app connections open at once; more are closed at once (the admin listener is not counted)"`
	MaxRequests         int           `split_words:"true" default:"256" desc:"most app requests in handlers at once, over every connection (an HTTP/2 connection carries up to 16); more are answered 503 with Retry-After at once"`
	MaxHeaderBytes      int           `split_words:"true" default:"8192" desc:"largest request header block in bytes (larger is 431)"`
	ReadHeaderTimeout   time.Duration `split_words:"true" default:"5s" desc:"longest a client may take to send a request's headers"`
	BodyTimeout         time.Duration `split_words:"true" default:"5s" desc:"longest a client may take to send a request's body once its headers are in (408 after)"`
	WriteTimeout        time.Duration `split_words:"true" default:"3s" desc:"longest a response may take to go out once written (a client that stops reading is closed)"`
	IdleTimeout         time.Duration `split_words:"true" default:"2m" desc:"how long an idle keep-alive connection stays open"`

	PrestopDelay    time.Duration `split_words:"true" default:"5s" desc:"after SIGTERM: keep serving (readiness failing, keep-alives off) this long"`
	ShutdownTimeout time.Duration `split_words:"true" default:"15s" desc:"then: longest wait for in-flight requests (http.Server.Shutdown)"`
	DrainTimeout    time.Duration `split_words:"true" default:"5s" desc:"then: longest wait for queued jobs to be processed"`
	GracePeriod     time.Duration `split_words:"true" default:"30s" desc:"the pod's terminationGracePeriodSeconds; the three above + 1s must fit in it"`

	LogFormat string `split_words:"true" default:"json" desc:"log format: json or text"`
	LogLevel  string `split_words:"true" default:"info" desc:"log level: debug, info, warn or error"`
}

// Load reads the configuration from the environment and validates it. Every
// error it returns wraps ErrInvalid and names every variable at fault.
//
// Unknown LAMEDUCK_ variables (a typo), values their type cannot parse (an
// integer is decimal: "010" is refused, never read as octal 8) and values out
// of range are reported together. Load reads and, for a moment, changes the
// process environment (see processWithout): call it at start-up, before
// anything else reads the environment.
func Load() (Config, error) {
	errs := unknownVariables()   // envconfig ignores them
	syntax, bad := checkSyntax() // envconfig would stop at the first
	errs = append(errs, syntax...)
	var c Config
	if err := processWithout(bad, &c); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	// Range errors of the variables that parsed; a rule that involves a
	// variable that did not parse would only report its default.
	for _, err := range problems(c.Validate()) {
		if !mentionsAny(err, bad) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return c, nil
}

// Limits that keep a typo from exhausting memory or overflowing the budget.
const (
	maxQueueSize = 1_000_000
	maxWorkers   = 10_000
	maxMaxBody   = 1 << 30
	maxKeys      = 10_000_000
	maxDuration  = 24 * time.Hour
)

// checkSyntax reports every LAMEDUCK_ variable set to a value its type
// cannot parse, and returns their names. The variables and their types come
// from envconfig itself, so they cannot drift from Config.
func checkSyntax() (errs []error, bad []string) {
	for key, typ := range variables() {
		v, ok := os.LookupEnv(key)
		if !ok {
			continue
		}
		if err := checkValue(typ, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			bad = append(bad, key)
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

// Validate reports every problem in c at once, each naming its variable.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s_%s: %s", Prefix, field, fmt.Sprintf(format, args...)))
	}
	if c.HTTPAddr == "" {
		bad("HTTP_ADDR", "must not be empty")
	}
	if c.AdminAddr == "" {
		bad("ADMIN_ADDR", "must not be empty")
	}
	if c.HTTPAddr != "" && c.HTTPAddr == c.AdminAddr && !strings.HasSuffix(c.HTTPAddr, ":0") {
		bad("ADMIN_ADDR", "must differ from LAMEDUCK_HTTP_ADDR (%q)", c.HTTPAddr)
	}
	durations := []struct {
		name string
		d    time.Duration
	}{
		{"HELLO_DELAY", c.HelloDelay}, {"MAX_DELAY", c.MaxDelay}, {"MAX_WORK", c.MaxWork}, {"JOB_DURATION", c.JobDuration},
		{"IDEMPOTENCY_TTL", c.IdempotencyTTL}, {"PRESTOP_DELAY", c.PrestopDelay},
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
	if c.HelloDelay > c.MaxDelay {
		bad("HELLO_DELAY", "%s exceeds LAMEDUCK_MAX_DELAY (%s)", c.HelloDelay, c.MaxDelay)
	}
	if c.JobDuration > c.MaxWork {
		bad("JOB_DURATION", "%s exceeds LAMEDUCK_MAX_WORK (%s)", c.JobDuration, c.MaxWork)
	}
	// No request may be admitted that the shutdown budget cannot finish.
	if c.MaxDelay+RequestSpare > c.ShutdownTimeout && c.ShutdownTimeout > 0 {
		bad("MAX_DELAY", "%s does not fit LAMEDUCK_SHUTDOWN_TIMEOUT (%s): a request started as the preStop delay ends must finish within it with %s spare; lower LAMEDUCK_MAX_DELAY to at most %s or raise LAMEDUCK_SHUTDOWN_TIMEOUT",
			c.MaxDelay, c.ShutdownTimeout, RequestSpare, max(0, c.ShutdownTimeout-RequestSpare))
	}
	if c.DrainTimeout >= 0 {
		budget := c.DrainBudget()
		fits := func(work time.Duration) bool { return budget > 0 && work+JobAllowance <= budget }
		if !fits(c.JobDuration) {
			bad("JOB_DURATION", "%s does not fit LAMEDUCK_DRAIN_TIMEOUT (%s): one job (+%s allowance) must finish within the drain budget, 95%% of it, %s",
				c.JobDuration, c.DrainTimeout, JobAllowance, budget)
		}
		if !fits(c.MaxWork) {
			bad("MAX_WORK", "%s does not fit LAMEDUCK_DRAIN_TIMEOUT (%s): the longest allowed job (+%s allowance) must finish within the drain budget, 95%% of it, %s",
				c.MaxWork, c.DrainTimeout, JobAllowance, budget)
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
	if c.ShutdownTimeout == 0 {
		bad("SHUTDOWN_TIMEOUT", "must be positive: in-flight requests need time to finish")
	}
	if need := c.Budget() + GraceSpare; need > c.GracePeriod {
		bad("GRACE_PERIOD", "%s is too short: LAMEDUCK_PRESTOP_DELAY (%s) + LAMEDUCK_SHUTDOWN_TIMEOUT (%s) + LAMEDUCK_DRAIN_TIMEOUT (%s) + %s spare = %s; the kubelet would SIGKILL work in progress",
			c.GracePeriod, c.PrestopDelay, c.ShutdownTimeout, c.DrainTimeout, GraceSpare, need)
	}
	if _, err := c.Level(); err != nil {
		bad("LOG_LEVEL", "%v", err)
	}
	c.validateLimits(bad)
	if c.LogFormat != "json" && c.LogFormat != "text" {
		bad("LOG_FORMAT", "must be json or text, got %q", c.LogFormat)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
}

// DrainBudget is the time admission lets accepted work take: every job
// answered 202 can finish within DrainBudget of its acceptance, so within
// the drain timeout whenever the queue closes.
func (c Config) DrainBudget() time.Duration { return c.DrainTimeout - c.DrainTimeout/drainReserve }

// Warnings lists what in c is allowed but probably not meant.
func (c Config) Warnings() []string {
	var w []string
	// The cheapest job is a ?work=0s job, which admission counts as
	// JobAllowance: the budget holds at most this many jobs at once.
	if c.Workers > 0 && c.DrainBudget() > 0 {
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

// Usage writes every variable with its type, default and meaning to w.
func Usage(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 1, 0, 4, ' ', 0)
	if err := envconfig.Usagef(Prefix, &Config{}, tw, envconfig.DefaultTableFormat); err != nil {
		return fmt.Errorf("print usage: %w", err)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print usage: %w", err)
	}
	return nil
}
