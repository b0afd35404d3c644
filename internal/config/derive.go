package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// How values left unset are derived from the values set
//
// A value left unset (os.LookupEnv finds nothing) is a default, and a
// default bends to the values set on purpose; a value set is never changed.
// In order:
//
//  1. A cap left unset grows to admit the default set under it:
//     LAMEDUCK_MAX_DELAY to LAMEDUCK_HELLO_DELAY, LAMEDUCK_MAX_WORK to
//     LAMEDUCK_JOB_DURATION.
//  2. The shutdown phases left unset (LAMEDUCK_PRESTOP_DELAY,
//     LAMEDUCK_SHUTDOWN_TIMEOUT, LAMEDUCK_DRAIN_TIMEOUT) fit in
//     LAMEDUCK_GRACE_PERIOD, less GraceSpare and the phases set. Each needs
//     at least its least (leastPrestop, leastShutdown, leastDrain), the
//     shutdown timeout also LAMEDUCK_MAX_DELAY + RequestSpare and the drain
//     timeout a drain budget that holds LAMEDUCK_MAX_WORK + JobAllowance,
//     when those caps were set (or grown in step 1), and the preStop delay
//     (its maximum) LAMEDUCK_PRESTOP_MIN when that was set. A phase whose
//     default is short of what it needs grows to it. When the defaults do
//     not fit, they shrink in proportion to their defaults, none below what
//     it needs. LAMEDUCK_GRACE_PERIOD itself is never derived: it must match
//     the pod.
//  3. The caps left unset shrink to what the phases can finish:
//     LAMEDUCK_PRESTOP_MIN to LAMEDUCK_PRESTOP_DELAY (and follows it up too
//     while their defaults are equal: the default delay is fixed),
//     LAMEDUCK_MAX_DELAY to LAMEDUCK_SHUTDOWN_TIMEOUT - RequestSpare,
//     LAMEDUCK_MAX_WORK to the drain budget - JobAllowance,
//     LAMEDUCK_JOB_DURATION to both, LAMEDUCK_QUEUE_SIZE to the jobs the
//     drain budget admits at once (LAMEDUCK_WORKERS × budget / JobAllowance).
//
// Every value that moved is noted, with what it was derived from (Derived).
// What still conflicts after that is a conflict between values set on
// purpose, or a value set that no default can make room for; conflicts
// reports it and fix finds a change that resolves it.

// The least a shutdown phase left unset shrinks to when the grace period is
// short.
const (
	leastPrestop  = time.Second     // about what endpoints take to stop routing to the pod
	leastShutdown = 2 * time.Second // RequestSpare and a LAMEDUCK_MAX_DELAY of 1s
	leastDrain    = time.Second
)

// shareGrain is what the proportional share of a shrunk phase is rounded
// down to, so that the notes read 5.4s rather than 5.357142857s.
const shareGrain = 100 * time.Millisecond

// problem is one thing wrong with a configuration.
type problem struct {
	rule string   // "range:KEY" for a value wrong on its own; otherwise the conflict's name
	vars []string // the variables it involves, the one at fault first
	msg  string   // "KEY: what is wrong"
}

// conflict reports whether p is between values rather than in one.
func (p problem) conflict() bool { return !strings.HasPrefix(p.rule, "range:") }

// settled is a configuration after derivation, with where each value came
// from and what is still wrong.
type settled struct {
	in       Config              // the values read; the defaults stand in for bad ones
	c        Config              // in, with the values left unset derived
	def      Config              // the defaults
	set      map[string]bool     // keys set on purpose, not bad
	bad      map[string]bool     // keys whose values are wrong on their own: no conflict involving them is reported
	from     map[string][]string // derived key: the keys it was derived from
	why      map[string]string   // derived key: the rule it was derived by
	order    []string            // derived keys, in the order derived
	problems []problem
}

// settle derives the values of in that are not in set, and finds what is
// still wrong. Values wrong on their own (and the keys in bad, which did not
// parse) are replaced by their defaults and count as unset, so that they
// move nothing and no conflict involving them is reported.
func settle(in Config, set, bad map[string]bool) *settled {
	s := &settled{
		def: defaultConfig(), set: maps.Clone(set), bad: maps.Clone(bad),
		from: map[string][]string{}, why: map[string]string{},
	}
	if s.set == nil {
		s.set = map[string]bool{}
	}
	if s.bad == nil {
		s.bad = map[string]bool{}
	}
	s.problems = in.rangeProblems()
	for _, p := range s.problems {
		s.bad[p.vars[0]] = true
	}
	for k := range s.bad {
		copyField(&in, s.def, k)
		delete(s.set, k)
	}
	s.in, s.c = in, in
	s.derive()
	for _, p := range s.c.conflicts(s.set) {
		if !slices.ContainsFunc(s.closure(p.vars), func(k string) bool { return s.bad[k] }) {
			s.problems = append(s.problems, p)
		}
	}
	return s
}

// derive applies the three steps above to s.c.
func (s *settled) derive() {
	c := &s.c
	// 1. Caps grow to admit the defaults set under them.
	if !s.set[envMaxDelay] && c.HelloDelay > c.MaxDelay {
		c.MaxDelay = c.HelloDelay
		s.derived(envMaxDelay, []string{envHelloDelay}, "the cap on ?delay= admits the default delay")
	}
	if !s.set[envMaxWork] && c.JobDuration > c.MaxWork {
		c.MaxWork = c.JobDuration
		s.derived(envMaxWork, []string{envJobDuration}, "the cap on ?work= admits the default work")
	}

	// 2. The phases fit in the grace period.
	s.fitPhases()

	// 3. Caps shrink to what the phases can finish.
	if !s.set[envPrestopMin] {
		least, why := min(c.PrestopMin, c.PrestopDelay), "the preStop delay's minimum cannot exceed its maximum"
		if s.def.PrestopMin == s.def.PrestopDelay {
			least, why = c.PrestopDelay, "the preStop delay is fixed (its minimum is its maximum) unless "+envPrestopMin+" is set"
		}
		if least != c.PrestopMin {
			c.PrestopMin = least
			s.derived(envPrestopMin, []string{envPrestopDelay}, why)
		}
	}
	if !s.set[envMaxDelay] {
		if d := max(c.HelloDelay, min(c.MaxDelay, c.ShutdownTimeout-RequestSpare), 0); d != c.MaxDelay {
			c.MaxDelay = d
			s.derived(envMaxDelay, []string{envShutdownTimeout},
				fmt.Sprintf("a request started as the preStop delay ends must finish within the shutdown timeout with %s spare", RequestSpare))
		}
	}
	most := max(c.DrainBudget()-JobAllowance, 0) // the longest job the drain budget finishes
	if !s.set[envMaxWork] {
		var least time.Duration
		if s.set[envJobDuration] {
			least = c.JobDuration
		}
		if w := max(least, min(c.MaxWork, most)); w != c.MaxWork {
			c.MaxWork = w
			s.derived(envMaxWork, []string{envDrainTimeout},
				fmt.Sprintf("the longest job (+%s) must finish within the drain budget, 95%% of the drain timeout", JobAllowance))
		}
	}
	if !s.set[envJobDuration] {
		if w := min(c.JobDuration, c.MaxWork, most); w != c.JobDuration {
			by := envMaxWork
			if most < c.MaxWork {
				by = envDrainTimeout
			}
			c.JobDuration = w
			s.derived(envJobDuration, []string{by}, "the default work must fit the cap on ?work= and the drain budget")
		}
	}
	if !s.set[envHelloDelay] && c.HelloDelay > c.MaxDelay {
		c.HelloDelay = c.MaxDelay
		s.derived(envHelloDelay, []string{envMaxDelay}, "the default delay must fit the cap on ?delay=")
	}
	if !s.set[envQueueSize] && c.Workers > 0 && c.DrainBudget() >= JobAllowance {
		if jobs := int64(c.Workers) * int64(c.DrainBudget()/JobAllowance); int64(c.QueueSize) > jobs {
			c.QueueSize = int(jobs)
			s.derived(envQueueSize, []string{envDrainTimeout, envWorkers},
				fmt.Sprintf("the drain budget admits at most workers × budget / %s jobs at once (even of ?work=0s): a longer queue could never fill", JobAllowance))
		}
	}
}

// phase is one shutdown phase being fitted into the grace period.
type phase struct {
	key    string
	p      *time.Duration
	def    time.Duration // its default
	least  time.Duration // the least it may shrink to
	need   time.Duration // what the caps set need of it, at least least
	needBy []string      // the caps behind need, when need > least
	target time.Duration // max(def, need): what it would be with room enough
}

// fitPhases is step 2: the phases left unset share what the grace period
// leaves.
func (s *settled) fitPhases() {
	c := &s.c
	// What the caps need: a cap set (or grown from a default set) holds;
	// one left unset shrinks in step 3, to the default under it.
	delayCap, delayBy := c.HelloDelay, envHelloDelay
	if s.set[envMaxDelay] || s.from[envMaxDelay] != nil {
		delayCap, delayBy = c.MaxDelay, envMaxDelay
	}
	var workCap time.Duration
	workBy := envJobDuration
	switch {
	case s.set[envMaxWork] || s.from[envMaxWork] != nil:
		workCap, workBy = c.MaxWork, envMaxWork
	case s.set[envJobDuration]:
		workCap = c.JobDuration
	}
	prestopNeed := leastPrestop // what a minimum set needs of the maximum
	if s.set[envPrestopMin] {
		prestopNeed = max(leastPrestop, c.PrestopMin)
	}
	all := []phase{
		{key: envPrestopDelay, p: &c.PrestopDelay, def: s.def.PrestopDelay, least: leastPrestop,
			need: prestopNeed, needBy: []string{envPrestopMin}},
		{key: envShutdownTimeout, p: &c.ShutdownTimeout, def: s.def.ShutdownTimeout, least: leastShutdown,
			need: max(leastShutdown, delayCap+RequestSpare), needBy: []string{delayBy}},
		{key: envDrainTimeout, p: &c.DrainTimeout, def: s.def.DrainTimeout, least: leastDrain,
			need: max(leastDrain, drainFor(workCap)), needBy: []string{workBy}},
	}
	room := c.GracePeriod - GraceSpare
	var free []phase
	var fixed []string // the phases set, which take their room first
	for _, f := range all {
		if s.set[f.key] {
			room -= *f.p
			fixed = append(fixed, f.key)
			continue
		}
		if f.need == f.least {
			f.needBy = nil
		}
		f.target = max(f.def, f.need)
		free = append(free, f)
	}
	if len(free) == 0 {
		return
	}
	var target, need, least time.Duration
	for _, f := range free {
		target += f.target
		need += f.need
		least += f.least
	}
	got := make([]time.Duration, len(free))
	switch {
	case target <= room:
		for i, f := range free {
			got[i] = f.target
		}
	case need <= room:
		shrink(free, room, got)
	case least <= room:
		// Room for no default, nor for every cap set: each phase gets its
		// least, and those that need more share the rest in proportion to
		// what they miss. A conflict names the cap that does not fit.
		var missing time.Duration
		last := 0
		for i, f := range free {
			if f.need > f.least {
				missing += f.need - f.least
				last = i
			}
		}
		left := room - least
		for i, f := range free {
			got[i] = f.least
			if f.need > f.least && i != last {
				share := time.Duration(float64(room-least) * float64(f.need-f.least) / float64(missing)).Truncate(time.Millisecond)
				got[i] += share
				left -= share
			}
		}
		got[last] += left // the shares add up to the room exactly
	default:
		// Not even the least of each fits: the grace period conflicts with
		// the phases set.
		for i, f := range free {
			got[i] = f.least
		}
	}
	for i, f := range free {
		*f.p = got[i]
	}
	for i, f := range free {
		switch {
		case got[i] >= f.target && got[i] > f.def:
			s.derived(f.key, f.needBy, whyNeed[f.key])
		case got[i] < f.target:
			from := append([]string{envGracePeriod}, fixed...)
			if got[i] < f.need {
				from = append(from, f.needBy...)
			}
			for j, g := range free {
				if j != i && got[j] > g.def {
					from = append(from, g.key) // a phase grown takes room from this one
				}
			}
			s.derived(f.key, from, fmt.Sprintf("the shutdown phases left unset share what the grace period leaves (less %s spare and the phases set) in proportion to their defaults", GraceSpare))
		}
	}
}

// whyNeed says why a phase grows to what a cap needs of it.
var whyNeed = map[string]string{
	envPrestopDelay:    "the preStop delay's maximum must hold its minimum",
	envShutdownTimeout: fmt.Sprintf("a request as long as the cap on ?delay= must finish within it with %s spare", RequestSpare),
	envDrainTimeout:    fmt.Sprintf("the longest job (+%s) must finish within its drain budget, 95%% of it", JobAllowance),
}

// shrink shares room among phases in proportion to their targets, none
// below its need: a phase whose share would fall short gets its need, and
// the others share the rest. The sum of needs must fit in room.
func shrink(phases []phase, room time.Duration, got []time.Duration) {
	pinned := make([]bool, len(phases))
	for {
		rest, weight := float64(room), 0.0
		for i, f := range phases {
			if pinned[i] {
				rest -= float64(f.need)
			} else {
				weight += float64(f.target)
			}
		}
		more := false
		for i, f := range phases {
			if !pinned[i] && float64(f.target)*rest/weight < float64(f.need) {
				pinned[i], more = true, true
			}
		}
		if more {
			continue
		}
		for i, f := range phases {
			got[i] = f.need
			if !pinned[i] {
				got[i] = max(f.need, time.Duration(float64(f.target)*rest/weight).Truncate(shareGrain))
			}
		}
		return
	}
}

// drainFor is the shortest drain timeout, in steps of 10 ms, whose budget
// finishes a job of work.
func drainFor(work time.Duration) time.Duration {
	const grain = 10 * time.Millisecond
	need := work + JobAllowance
	d := (need + need/(drainReserve-1)).Truncate(grain) // budget = d - d/20, so d ≈ need × 20/19
	for (Config{DrainTimeout: d}).DrainBudget() < need {
		d += grain
	}
	return d
}

// derived records that key was derived from the keys in from, by the rule
// why; a value that came back to its default is no longer derived.
func (s *settled) derived(key string, from []string, why string) {
	if valueOf(s.c, key) == valueOf(s.def, key) {
		delete(s.from, key)
		delete(s.why, key)
		s.order = slices.DeleteFunc(s.order, func(k string) bool { return k == key })
		return
	}
	if s.from[key] == nil {
		s.order = append(s.order, key)
	}
	s.from[key] = slices.Compact(slices.Clone(from))
	s.why[key] = why
}

// origin says where the value of key came from: "set", "derived" or
// "default".
func (s *settled) origin(key string) string {
	switch {
	case s.set[key]:
		return "set"
	case s.from[key] != nil:
		return "derived"
	}
	return "default"
}

// closure returns keys and, after them, every key they were derived from,
// directly or not, each once.
func (s *settled) closure(keys []string) []string {
	out := slices.Clone(keys)
	for i := 0; i < len(out); i++ {
		for _, k := range s.from[out[i]] {
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	return out
}

// notes says, one sentence each, what was derived and from what.
func (s *settled) notes() []string {
	var out []string
	for _, k := range s.order {
		var from []string
		for _, f := range s.from[k] {
			from = append(from, fmt.Sprintf("%s=%s (%s)", f, valueOf(s.c, f), s.origin(f)))
		}
		out = append(out, fmt.Sprintf("%s=%s (default %s) derived from %s: %s",
			k, valueOf(s.c, k), valueOf(s.def, k), strings.Join(from, ", "), s.why[k]))
	}
	return out
}
