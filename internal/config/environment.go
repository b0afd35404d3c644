package config

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// variable is one environment variable lameduck reads, as envconfig
// describes it.
type variable struct {
	key  string // LAMEDUCK_MAX_DELAY
	typ  string // "Duration", "Integer" or "String"
	def  string // the default tag
	desc string // the desc tag
}

// variableList returns every variable lameduck reads, in Config's order.
// The template calls envconfig's functions rather than reflect's methods: a
// method called through reflect (such as {{.Field.Type}}) makes reflect build
// a table of every type in the binary, some 300 KB that stays live for the
// process's life and that every garbage collection marks again.
var variableList = sync.OnceValue(func() []variable {
	var list strings.Builder
	tmpl := "{{range .}}{{usage_key .}}\t{{usage_type .}}\t{{usage_default .}}\t{{usage_description .}}\n{{end}}"
	if err := envconfig.Usagef(Prefix, &Config{}, &list, tmpl); err != nil {
		panic(fmt.Sprintf("config: list variables: %v", err)) // Config's tags are fixed at compile time
	}
	var vars []variable
	for line := range strings.SplitSeq(strings.TrimSpace(list.String()), "\n") {
		f := strings.SplitN(line, "\t", 4)
		vars = append(vars, variable{key: f[0], typ: f[1], def: f[2], desc: f[3]})
	}
	return vars
})

// defaultConfig is the Config of every default tag.
var defaultConfig = sync.OnceValue(func() Config {
	var c Config
	for _, v := range variableList() {
		if err := setField(&c, v.key, v.def); err != nil {
			panic(fmt.Sprintf("config: default of %s: %v", v.key, err)) // fixed at compile time
		}
	}
	return c
})

// The variables the derivation and the conflicts between values name.
const (
	envHTTPAddr        = Prefix + "_HTTP_ADDR"
	envAdminAddr       = Prefix + "_ADMIN_ADDR"
	envHelloDelay      = Prefix + "_HELLO_DELAY"
	envMaxDelay        = Prefix + "_MAX_DELAY"
	envMaxWork         = Prefix + "_MAX_WORK"
	envJobDuration     = Prefix + "_JOB_DURATION"
	envQueueSize       = Prefix + "_QUEUE_SIZE"
	envWorkers         = Prefix + "_WORKERS"
	envPrestopDelay    = Prefix + "_PRESTOP_DELAY"
	envPrestopMin      = Prefix + "_PRESTOP_MIN"
	envPrestopQuiet    = Prefix + "_PRESTOP_QUIET"
	envShutdownTimeout = Prefix + "_SHUTDOWN_TIMEOUT"
	envDrainTimeout    = Prefix + "_DRAIN_TIMEOUT"
	envGracePeriod     = Prefix + "_GRACE_PERIOD"
)

// field returns a pointer to the field that holds variable key: a
// *time.Duration, *int, *int64 or *string; nil for no such variable.
// TestFieldsCoverEveryVariable keeps it in step with Config.
func (c *Config) field(key string) any {
	switch key {
	case envPrestopDelay:
		return &c.PrestopDelay
	case envPrestopMin:
		return &c.PrestopMin
	case envPrestopQuiet:
		return &c.PrestopQuiet
	case envShutdownTimeout:
		return &c.ShutdownTimeout
	case envDrainTimeout:
		return &c.DrainTimeout
	case envGracePeriod:
		return &c.GracePeriod
	case envHelloDelay:
		return &c.HelloDelay
	case envMaxDelay:
		return &c.MaxDelay
	case Prefix + "_MAX_CONNS":
		return &c.MaxConns
	case Prefix + "_MAX_REQUESTS":
		return &c.MaxRequests
	case Prefix + "_MAX_HEADER_BYTES":
		return &c.MaxHeaderBytes
	case Prefix + "_READ_HEADER_TIMEOUT":
		return &c.ReadHeaderTimeout
	case Prefix + "_BODY_TIMEOUT":
		return &c.BodyTimeout
	case Prefix + "_WRITE_TIMEOUT":
		return &c.WriteTimeout
	case Prefix + "_IDLE_TIMEOUT":
		return &c.IdleTimeout
	case Prefix + "_MAX_BODY":
		return &c.MaxBody
	case envQueueSize:
		return &c.QueueSize
	case envWorkers:
		return &c.Workers
	case envJobDuration:
		return &c.JobDuration
	case Prefix + "_QUEUE_URL":
		return &c.QueueURL
	case Prefix + "_QUEUE_STREAM":
		return &c.QueueStream
	case Prefix + "_QUEUE_REPLICAS":
		return &c.QueueReplicas
	case envMaxWork:
		return &c.MaxWork
	case Prefix + "_IDEMPOTENCY_TTL":
		return &c.IdempotencyTTL
	case Prefix + "_IDEMPOTENCY_MAX_KEYS":
		return &c.IdempotencyMaxKeys
	case Prefix + "_IDEMPOTENCY_MAX_BYTES":
		return &c.IdempotencyMaxBytes
	case Prefix + "_LOG_FORMAT":
		return &c.LogFormat
	case Prefix + "_LOG_LEVEL":
		return &c.LogLevel
	case envHTTPAddr:
		return &c.HTTPAddr
	case envAdminAddr:
		return &c.AdminAddr
	}
	return nil
}

// setField parses s into the field of variable key.
func setField(c *Config, key, s string) error {
	var err error
	switch p := c.field(key).(type) {
	case *time.Duration:
		*p, err = time.ParseDuration(s)
	case *int:
		*p, err = strconv.Atoi(s)
	case *int64:
		*p, err = strconv.ParseInt(s, 10, 64)
	case *string:
		*p = s
	default:
		err = fmt.Errorf("no variable %s", key)
	}
	return err
}

// valueOf formats the value of variable key in c as it would be set.
func valueOf(c Config, key string) string {
	switch p := c.field(key).(type) {
	case *time.Duration:
		return p.String()
	case *int:
		return strconv.Itoa(*p)
	case *int64:
		return strconv.FormatInt(*p, 10)
	case *string:
		return *p
	}
	return ""
}

// copyField sets variable key in dst to its value in src.
func copyField(dst *Config, src Config, key string) {
	if err := setField(dst, key, valueOf(src, key)); err != nil {
		panic(fmt.Sprintf("config: copy %s: %v", key, err)) // valueOf formats what setField parses
	}
}

// serviceLinkSuffixes are the variables Kubernetes injects for a Service
// named lameduck when enableServiceLinks is on.
var serviceLinkSuffixes = []string{"_PORT", "_SERVICE_HOST", "_SERVICE_PORT"}

// unknownVariables reports every variable whose name starts with LAMEDUCK_
// (in any case) that lameduck does not read, with the variable it most
// likely meant when one is close (see suggest).
//
// An unknown variable is an error, not a warning: LAMEDUCK_PRESTOP_DELAI in
// a ConfigMap would otherwise leave the default in force, silently, and a
// warning is a line in a log nobody reads while the rollout goes on. Refused,
// the new pods exit 2 before they listen, the rollout stalls with the old
// pods still serving (maxUnavailable 0), and the message names the fix. The
// cost: a ConfigMap that names a variable only a newer lameduck reads cannot
// be rolled back to an older binary without rolling back the ConfigMap too.
func unknownVariables(vars []variable) []error {
	known := map[string]bool{}
	for _, v := range vars {
		known[v.key] = true
	}
	var errs []error
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if known[k] || !strings.HasPrefix(strings.ToUpper(k), Prefix+"_") {
			continue
		}
		rest := strings.TrimPrefix(strings.ToUpper(k), Prefix)
		switch near := suggest(k, vars); {
		case slices.ContainsFunc(serviceLinkSuffixes, func(s string) bool { return strings.HasPrefix(rest, s) }):
			errs = append(errs, fmt.Errorf("%s: not a variable lameduck reads; Kubernetes sets it for a Service named lameduck: set enableServiceLinks: false in the pod", k))
		case len(near) > 0:
			errs = append(errs, fmt.Errorf("%s: not a variable lameduck reads, so its value would be ignored; did you mean %s?", k, orList(near)))
		default:
			errs = append(errs, fmt.Errorf("%s: not a variable lameduck reads, so its value would be ignored (lameduck -h lists them)", k))
		}
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errs
}

// suggest returns the variables name most likely meant, closest first: those
// within a small edit distance of it (Damerau-Levenshtein: a letter wrong,
// missing, extra, or two swapped) once both are upper-cased and stripped of
// the prefix and underscores; failing that, those that begin or end with it or
// it with them, three letters or more (LAMEDUCK_GRACE_PERIOD_SECONDS,
// LAMEDUCK_TTL). At most three; none when nothing is close, or when too many
// are (LAMEDUCK_MAX).
func suggest(name string, vars []variable) []string {
	squash := func(s string) string {
		s = strings.ToUpper(s)
		s = strings.TrimPrefix(s, Prefix+"_")
		return strings.ReplaceAll(s, "_", "")
	}
	n := squash(name)
	// A threshold of about 2, scaled by length: 1 for a short name, where 2
	// would match half the list; 3 for a long one.
	limit := 2
	switch {
	case len(n) <= 5:
		limit = 1
	case len(n) >= 14:
		limit = 3
	}
	type candidate struct {
		key  string
		dist int
	}
	var close, affix []candidate
	for _, v := range vars {
		k := squash(v.key)
		if d := editDistance(n, k); d <= limit {
			close = append(close, candidate{v.key, d})
			continue
		}
		short, long := n, k
		if len(short) > len(long) {
			short, long = long, short
		}
		if len(short) >= 3 && (strings.HasPrefix(long, short) || strings.HasSuffix(long, short)) {
			affix = append(affix, candidate{v.key, len(long) - len(short)})
		}
	}
	found := close
	if len(found) == 0 {
		found = affix
	}
	slices.SortStableFunc(found, func(a, b candidate) int { return a.dist - b.dist })
	if len(close) > 0 { // only the closest: "WORKER" is WORKERS, not also something 2 away
		i := 0
		for i < len(found) && found[i].dist == found[0].dist {
			i++
		}
		found = found[:i]
	}
	if len(found) > 3 {
		return nil
	}
	var keys []string
	for _, c := range found {
		keys = append(keys, c.key)
	}
	return keys
}

// editDistance is the optimal string alignment distance between a and b
// (bytes): the fewest insertions, deletions, substitutions and swaps of two
// adjacent letters that turn a into b, no substring edited twice.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// orList joins names as "A", "A or B", "A, B or C".
func orList(names []string) string {
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// processWithout runs envconfig.Process with the variables skip unset, so
// their defaults stand in while their syntax errors are reported, and puts
// them back before it returns.
func processWithout(skip []string, c *Config) error {
	for _, k := range skip {
		if v, ok := os.LookupEnv(k); ok {
			_ = os.Unsetenv(k)
			defer os.Setenv(k, v)
		}
	}
	return envconfig.Process(Prefix, c)
}
