package config

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// conflicts reports every rule between values that c breaks. set says which
// values were set on purpose; it only changes which variable a problem is
// reported against (the one the operator set) and drops a problem another
// one already says.
func (c Config) conflicts(set map[string]bool) []problem {
	var ps []problem
	add := func(rule string, vars []string, format string, args ...any) {
		ps = append(ps, problem{rule: rule, vars: vars, msg: vars[0] + ": " + fmt.Sprintf(format, args...)})
	}
	if c.HTTPAddr == c.AdminAddr && !strings.HasSuffix(c.HTTPAddr, ":0") {
		if set[envHTTPAddr] && !set[envAdminAddr] {
			add("addresses", []string{envHTTPAddr, envAdminAddr}, "must differ from %s (%q)", envAdminAddr, c.AdminAddr)
		} else {
			add("addresses", []string{envAdminAddr, envHTTPAddr}, "must differ from %s (%q)", envHTTPAddr, c.HTTPAddr)
		}
	}
	if c.HelloDelay > c.MaxDelay {
		add("hello", []string{envHelloDelay, envMaxDelay}, "%s exceeds %s (%s)", c.HelloDelay, envMaxDelay, c.MaxDelay)
	}
	if c.JobDuration > c.MaxWork {
		add("job", []string{envJobDuration, envMaxWork}, "%s exceeds %s (%s)", c.JobDuration, envMaxWork, c.MaxWork)
	}
	if c.PrestopMin > c.PrestopDelay {
		add("prestop", []string{envPrestopMin, envPrestopDelay},
			"%s exceeds %s (%s): the preStop delay's minimum must not exceed its maximum",
			c.PrestopMin, envPrestopDelay, c.PrestopDelay)
	}
	// No request may be admitted that the shutdown budget cannot finish.
	if c.MaxDelay+RequestSpare > c.ShutdownTimeout {
		at := envMaxDelay // the cap, or the default delay it was grown to
		if !set[envMaxDelay] && set[envHelloDelay] && c.MaxDelay == c.HelloDelay {
			at = envHelloDelay
		}
		add("delay", []string{at, envShutdownTimeout},
			"%s does not fit %s (%s): a request started as the preStop delay ends must finish within it with %s spare",
			c.MaxDelay, envShutdownTimeout, c.ShutdownTimeout, RequestSpare)
	}
	// No job may be accepted that the drain budget cannot finish.
	budget := c.DrainBudget()
	if c.JobDuration+JobAllowance > budget {
		add("job-drain", []string{envJobDuration, envDrainTimeout},
			"%s does not fit %s (%s): one job (+%s allowance) must finish within the drain budget, 95%% of it, %s",
			c.JobDuration, envDrainTimeout, c.DrainTimeout, JobAllowance, budget)
	}
	// A cap grown to the default work set is reported as that default, above.
	if c.MaxWork+JobAllowance > budget && !(!set[envMaxWork] && set[envJobDuration] && c.MaxWork == c.JobDuration) {
		add("work-drain", []string{envMaxWork, envDrainTimeout},
			"%s does not fit %s (%s): the longest allowed job (+%s allowance) must finish within the drain budget, 95%% of it, %s",
			c.MaxWork, envDrainTimeout, c.DrainTimeout, JobAllowance, budget)
	}
	if need := c.Budget() + GraceSpare; need > c.GracePeriod {
		add("grace", []string{envGracePeriod, envPrestopDelay, envShutdownTimeout, envDrainTimeout},
			"%s is too short: %s (%s) + %s (%s) + %s (%s) + %s spare = %s; the kubelet would SIGKILL work in progress",
			c.GracePeriod, envPrestopDelay, c.PrestopDelay, envShutdownTimeout, c.ShutdownTimeout,
			envDrainTimeout, c.DrainTimeout, GraceSpare, need)
	}
	return ps
}

// explain is p's message: for a conflict, the fix (see fix) and, with
// origins, every variable involved with its value and whether it was set,
// defaulted or derived.
func (s *settled) explain(p problem, origins bool) string {
	if !p.conflict() {
		return p.msg
	}
	msg := p.msg
	if origins {
		var vs []string
		for _, k := range s.closure(p.vars) {
			switch o := s.origin(k); o {
			case "derived":
				vs = append(vs, fmt.Sprintf("%s=%s (derived; default %s)", k, valueOf(s.c, k), valueOf(s.def, k)))
			default:
				vs = append(vs, fmt.Sprintf("%s=%s (%s)", k, valueOf(s.c, k), o))
			}
		}
		msg += "; " + strings.Join(vs, ", ")
	}
	if fixes := s.fix(p); len(fixes) > 0 {
		msg += "; fix: " + fixes[0]
		if len(fixes) > 1 {
			msg += " (or " + fixes[1] + ")"
		}
	}
	return msg
}

// fix returns up to two changes, "KEY=value", each of which resolves p
// without adding a problem: each is found by trying values and settling the
// whole configuration again, so it works by construction. The first changes
// a value that was set, nearest to it; LAMEDUCK_GRACE_PERIOD comes last, as
// it must change with the pod.
func (s *settled) fix(p problem) []string {
	before := map[string]bool{}
	for _, q := range s.problems {
		before[q.rule] = true
	}
	works := func(key, value string) bool {
		in, set := s.in, maps.Clone(s.set) // settle makes s.set

		if err := setField(&in, key, value); err != nil {
			return false
		}
		set[key] = true
		for _, q := range settle(in, set, s.bad).problems {
			if q.rule == p.rule || !before[q.rule] {
				return false
			}
		}
		return true
	}
	var candidates []string
	grace := false
	for _, k := range s.closure(p.vars) {
		switch {
		case k == envGracePeriod:
			grace = true
		case s.set[k]:
			candidates = append(candidates, k)
		}
	}
	if grace {
		candidates = append(candidates, envGracePeriod)
	}
	var fixes []string
	for _, k := range candidates {
		var v string
		var ok bool
		switch k {
		case envHTTPAddr, envAdminAddr:
			v, ok = s.fixAddress(k, works)
		default:
			v, ok = s.fixDuration(k, works)
		}
		if !ok {
			continue
		}
		f := k + "=" + v
		if k == envGracePeriod {
			f += ", with the pod's terminationGracePeriodSeconds"
		}
		if fixes = append(fixes, f); len(fixes) == 2 {
			break
		}
	}
	return fixes
}

// fixDuration finds the value of duration key nearest to its own for which
// works holds, on the millisecond grid: it steps away from the value, down
// and up, in doubling steps until works holds, then halves the last step
// back to the boundary; then it rounds to 1 s, 100 ms or 10 ms when that
// moves it by at most 0.5 % and still works.
func (s *settled) fixDuration(key string, works func(key, value string) bool) (string, bool) {
	d, ok := s.in.field(key).(*time.Duration)
	if !ok {
		return "", false
	}
	const unit = time.Millisecond
	cur := *d
	try := func(v time.Duration) bool { return works(key, v.String()) }
	best, found := time.Duration(0), false
	for _, dir := range []time.Duration{-1, 1} {
		base := cur.Truncate(unit) // the grid point next to cur in direction dir
		if dir > 0 && base < cur {
			base += unit
		}
		bad := cur
		for step := time.Duration(0); ; step = max(unit, 2*step) {
			v := min(max(base+dir*step, 0), maxDuration)
			if v == cur {
				continue
			}
			if !try(v) {
				if v == 0 || v == maxDuration {
					break
				}
				bad = v
				continue
			}
			good := v // bisect between bad (fails) and good (works)
			for {
				mid := (bad + (good-bad)/2).Truncate(unit)
				if (mid-bad)*dir <= 0 || (good-mid)*dir <= 0 {
					break
				}
				if try(mid) {
					good = mid
				} else {
					bad = mid
				}
			}
			for _, grain := range []time.Duration{time.Second, 100 * time.Millisecond, 10 * time.Millisecond} {
				r := good.Truncate(grain)
				if dir > 0 && r < good {
					r += grain
				}
				if r == good {
					break
				}
				if (r-good)*dir*200 <= good && try(r) {
					good = r
					break
				}
			}
			if !found || (good-cur)*dir < (best-cur).Abs() {
				best, found = good, true
			}
			break
		}
	}
	return best.String(), found
}

// fixAddress finds another address for key for which works holds: its
// default, or the other listener's port plus one.
func (s *settled) fixAddress(key string, works func(key, value string) bool) (string, bool) {
	other := envAdminAddr
	if key == envAdminAddr {
		other = envHTTPAddr
	}
	tries := []string{valueOf(s.def, key)}
	if host, port, err := net.SplitHostPort(valueOf(s.in, other)); err == nil {
		if n, err := strconv.Atoi(port); err == nil && n < 65535 {
			tries = append(tries, net.JoinHostPort(host, strconv.Itoa(n+1)))
		}
	}
	i := slices.IndexFunc(tries, func(v string) bool { return v != valueOf(s.in, key) && works(key, v) })
	if i < 0 {
		return "", false
	}
	return tries[i], true
}
