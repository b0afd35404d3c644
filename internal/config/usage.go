package config

import (
	"fmt"
	"io"
	"strings"
)

// group is a set of variables `lameduck -h` prints together, with the rules
// that tie them. Config declares its fields in the same groups, in the same
// order, so the list stays the order envconfig gives (TestUsageGroups).
type group struct {
	title string
	names []string // without the prefix
	rules []string // name variables without the prefix: no line of -h may start with one
}

var groups = []group{
	{"Shutdown budget: after SIGTERM, in this order",
		[]string{"PRESTOP_DELAY", "PRESTOP_MIN", "PRESTOP_QUIET", "SHUTDOWN_TIMEOUT", "DRAIN_TIMEOUT", "GRACE_PERIOD"},
		[]string{
			fmt.Sprintf("PRESTOP_DELAY + SHUTDOWN_TIMEOUT + DRAIN_TIMEOUT + %s must fit in GRACE_PERIOD.", GraceSpare),
			"The preStop delay lasts at least PRESTOP_MIN and at most PRESTOP_DELAY, which the budget counts; in between it ends once no connection or request has arrived for PRESTOP_QUIET. PRESTOP_MIN equal to PRESTOP_DELAY makes it fixed.",
			prestopMinRule(),
			"GRACE_PERIOD is never derived: set it to the pod's terminationGracePeriodSeconds, and the phases left unset follow it.",
			fmt.Sprintf("Phases left unset share what GRACE_PERIOD leaves (less the phases set and %s) in proportion to their defaults, none below %s, %s and %s (PRESTOP_DELAY, SHUTDOWN_TIMEOUT, DRAIN_TIMEOUT).",
				GraceSpare, leastPrestop, leastShutdown, leastDrain),
			fmt.Sprintf("SHUTDOWN_TIMEOUT left unset grows to hold MAX_DELAY + %s when MAX_DELAY (or HELLO_DELAY) is set above what it holds; DRAIN_TIMEOUT to hold MAX_WORK + %s in 95%% of it when MAX_WORK (or JOB_DURATION) is.",
				RequestSpare, JobAllowance),
		}},
	{"Requests and their limits",
		[]string{"HELLO_DELAY", "MAX_DELAY", "MAX_CONNS", "MAX_REQUESTS", "MAX_HEADER_BYTES",
			"READ_HEADER_TIMEOUT", "BODY_TIMEOUT", "WRITE_TIMEOUT", "IDLE_TIMEOUT"},
		[]string{
			fmt.Sprintf("MAX_DELAY + %s must fit in SHUTDOWN_TIMEOUT: a request started as the preStop delay ends must finish. Left unset, MAX_DELAY shrinks to fit, never below HELLO_DELAY, and grows to a HELLO_DELAY set above it.",
				RequestSpare),
		}},
	{"Jobs",
		[]string{"MAX_BODY", "QUEUE_SIZE", "WORKERS", "JOB_DURATION", "MAX_WORK",
			"QUEUE_URL", "QUEUE_STREAM", "QUEUE_REPLICAS", "IDEMPOTENCY_TTL", "IDEMPOTENCY_MAX_KEYS", "IDEMPOTENCY_MAX_BYTES"},
		[]string{
			fmt.Sprintf("MAX_WORK + %s and JOB_DURATION + %s must fit in the drain budget, 95%% of DRAIN_TIMEOUT. Left unset, MAX_WORK shrinks to fit, and grows to a JOB_DURATION set above it; JOB_DURATION left unset shrinks to MAX_WORK.",
				JobAllowance, JobAllowance),
			fmt.Sprintf("QUEUE_SIZE left unset shrinks to the jobs the drain budget admits at once, WORKERS × budget / %s; set, a longer queue is only warned about.", JobAllowance),
			"With QUEUE_URL set, jobs live in a JetStream stream: QUEUE_SIZE bounds its messages, the drain budget no longer bounds admission (the drain hands unstarted jobs back to the stream), IDEMPOTENCY_TTL is the stream's de-duplication window, and a fetched job is redelivered if its worker says nothing (an ack, or an in-progress ack every third of it) within MAX_WORK, at least 1s and at most 10s.",
		}},
	{"Logging",
		[]string{"LOG_FORMAT", "LOG_LEVEL"},
		[]string{"Set LOG_FORMAT=json in a pod that has a terminal (tty: true) and ships its logs."}},
	{"Listeners",
		[]string{"HTTP_ADDR", "ADMIN_ADDR"},
		[]string{"HTTP_ADDR and ADMIN_ADDR must differ (unless both end in :0, any free port)."}},
}

// prestopMinRule says how PRESTOP_MIN and PRESTOP_DELAY derive from each other.
func prestopMinRule() string {
	rule := "PRESTOP_MIN left unset shrinks to PRESTOP_DELAY"
	if d := defaultConfig(); d.PrestopMin == d.PrestopDelay {
		rule = "PRESTOP_MIN left unset follows PRESTOP_DELAY (the default delay is fixed)"
	}
	return rule + "; PRESTOP_DELAY left unset grows to a PRESTOP_MIN set above it."
}

// usageIntro comes before the groups. No line starts with a variable's name:
// tools read the lines that do as the list of variables.
const usageIntro = `Every setting is an environment variable, and none is required: set only what you mean to change.
A limit left unset is derived from the values set (the start-up log says which, and from what);
only values set on purpose that conflict are refused (exit 2), each with a fix. Any other variable
named LAMEDUCK_* is refused too, with the name it most likely meant. The rules under each group
name the variables without their LAMEDUCK_ prefix.
`

// Usage writes every variable, grouped by what it governs, with its type,
// default and meaning, and the rules that tie the variables of each group
// (what is derived from what), to w.
func Usage(w io.Writer) error {
	vars := map[string]variable{}
	var keyW, typW, defW int
	for _, v := range variableList() {
		vars[v.key] = v
		keyW, typW, defW = max(keyW, len(v.key)), max(typW, len(v.typ)), max(defW, len(v.def))
	}
	var b strings.Builder
	b.WriteString(usageIntro)
	for _, g := range groups {
		fmt.Fprintf(&b, "\n%s\n", g.title)
		for _, name := range g.names {
			v := vars[Prefix+"_"+name]
			fmt.Fprintf(&b, "  %-*s  %-*s  %-*s  %s\n", keyW, v.key, typW, v.typ, defW, v.def, v.desc)
		}
		for _, r := range g.rules {
			b.WriteString(wrap(r, "  - ", "    ", 100))
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("print usage: %w", err)
	}
	return nil
}

// wrap breaks s into lines of at most width (a longer word stays whole), the
// first starting with first and the others with rest.
func wrap(s, first, rest string, width int) string {
	var b strings.Builder
	line := first
	for i, word := range strings.Fields(s) {
		if i > 0 && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line = rest + word
			continue
		}
		if i > 0 {
			line += " "
		}
		line += word
	}
	b.WriteString(line + "\n")
	return b.String()
}
