package loadtest

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Summary is one replica's "shutdown complete" record.
type Summary struct {
	Source         string
	JobsAccepted   int64   `json:"jobs_accepted"`
	JobsProcessed  int64   `json:"jobs_processed"`
	JobsDropped    int64   `json:"jobs_dropped"`
	RequestsCut    int64   `json:"requests_cut"`
	AfterSignal    float64 `json:"requests_after_signal"`
	PrestopSeconds float64 `json:"prestop_seconds"`
	// PrestopEnd says how the preStop delay ended (quiet, minimum, maximum,
	// fixed), and PrestopLastArrival when, after the signal, the last
	// connection or request came during it: when traffic really stopped.
	PrestopEnd         string  `json:"prestop_end"`
	PrestopLastArrival float64 `json:"prestop_last_arrival_seconds"`
	// RequestsLate counts the requests that came after the delay, answered
	// 503 with Retry-After and Connection: close at once.
	RequestsLate float64 `json:"requests_late"`
	HTTPSeconds  float64 `json:"http_seconds"`
	QueueSeconds float64 `json:"queue_seconds"`
	TotalSeconds float64 `json:"total_seconds"`
	// RequestsByCode is the replica's final lameduck_http_requests_total
	// by code: what its handlers answered.
	RequestsByCode map[string]float64 `json:"requests_by_code"`
	// ConnsPeak and ConnsRefused are the most app connections the replica
	// had open at once, and those it closed at once over LAMEDUCK_MAX_CONNS.
	ConnsPeak    int64 `json:"connections_peak"`
	ConnsRefused int64 `json:"connections_refused"`
	// ReqsRefused counts the requests answered 503 at once over
	// LAMEDUCK_MAX_REQUESTS, before any handler (so not in RequestsByCode).
	ReqsRefused float64 `json:"requests_refused"`
	// JobsRejected counts the jobs the replica's queue refused with 503 and
	// Retry-After, by reason: full, budget (capacity) or closed.
	JobsRejected map[string]float64 `json:"jobs_rejected"`
}

// Refusals lists the codes other than 200 and 202 that s's handlers
// answered, with their counts ("503:12 400:1"), or "-".
func (s Summary) Refusals() string {
	var parts []string
	if s.ReqsRefused > 0 {
		parts = append(parts, fmt.Sprintf("503-over-max-requests:%.0f", s.ReqsRefused))
	}
	if s.RequestsLate > 0 {
		parts = append(parts, fmt.Sprintf("503-late:%.0f", s.RequestsLate))
	}
	for _, code := range slices.Sorted(maps.Keys(s.RequestsByCode)) {
		if n := s.RequestsByCode[code]; code != "200" && code != "202" && n > 0 {
			parts = append(parts, fmt.Sprintf("%s:%.0f", code, n))
		}
	}
	for _, reason := range slices.Sorted(maps.Keys(s.JobsRejected)) {
		if n := s.JobsRejected[reason]; n > 0 {
			parts = append(parts, fmt.Sprintf("jobs-%s:%.0f", reason, n))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// Ledger reads replicas' JSON logs and keeps what a rollout test checks: the
// ids of processed and dropped jobs (and how many times each was
// processed), when jobs were redelivered (the JetStream queue) and each
// shutdown summary. It is safe for concurrent use; feed it one goroutine
// per replica.
type Ledger struct {
	mu          sync.Mutex
	processed   map[string]int
	dropped     map[string]bool
	redelivered []time.Time
	summaries   []Summary
	bad         []string // lines that are not JSON records
}

// NewLedger returns an empty Ledger.
func NewLedger() *Ledger {
	return &Ledger{processed: map[string]int{}, dropped: map[string]bool{}}
}

// Line records one log line from source.
func (l *Ledger) Line(source string, line []byte) {
	var rec struct {
		Msg   string    `json:"msg"`
		JobID string    `json:"job_id"`
		Time  time.Time `json:"time"`
	}
	if err := json.Unmarshal(line, &rec); err != nil {
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.bad) < 20 {
			l.bad = append(l.bad, source+": "+string(line))
		}
		return
	}
	switch rec.Msg {
	case "job processed":
		l.mu.Lock()
		l.processed[rec.JobID]++
		l.mu.Unlock()
	case "job redelivered":
		l.mu.Lock()
		l.redelivered = append(l.redelivered, rec.Time)
		l.mu.Unlock()
	case "job dropped":
		l.mu.Lock()
		l.dropped[rec.JobID] = true
		l.mu.Unlock()
	case "shutdown complete", "shutdown aborted":
		s := Summary{Source: source}
		if err := json.Unmarshal(line, &s); err == nil {
			if rec.Msg == "shutdown aborted" {
				s.Source += " (aborted)"
			}
			l.mu.Lock()
			l.summaries = append(l.summaries, s)
			l.mu.Unlock()
		}
	}
}

// Processed returns how many distinct job ids were logged as processed.
func (l *Ledger) Processed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.processed)
}

// Summaries returns the shutdown summaries read so far, by source.
func (l *Ledger) Summaries() []Summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := append([]Summary(nil), l.summaries...)
	sort.Slice(s, func(i, j int) bool { return s[i].Source < s[j].Source })
	return s
}

// Unprocessed returns the accepted ids with no "job processed" record, and
// how many of them were logged as dropped.
func (l *Ledger) Unprocessed(accepted []string) (missing []string, dropped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range accepted {
		if l.processed[id] == 0 {
			missing = append(missing, id)
			if l.dropped[id] {
				dropped++
			}
		}
	}
	return missing, dropped
}

// Duplicates returns how many jobs were logged as processed more than
// once, and how many processings beyond each one's first there were.
func (l *Ledger) Duplicates() (jobs, extra int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.processed {
		if n > 1 {
			jobs++
			extra += n - 1
		}
	}
	return jobs, extra
}

// Redeliveries returns when each "job redelivered" record was logged, in
// the order read.
func (l *Ledger) Redeliveries() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.redelivered)
}

// SummaryTable renders the shutdown summaries, one line each.
func SummaryTable(ss []Summary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %-28s %8s %9s %7s %4s %8s %7s %-7s %7s %7s %7s %5s %7s  %s\n",
		"replica", "accepted", "processed", "dropped", "cut", "after-sig", "prestop", "ended", "last-in", "http", "queue",
		"conns", "refused", "other codes")
	for _, s := range ss {
		fmt.Fprintf(&b, "  %-28s %8d %9d %7d %4d %8.0f %6.2fs %-7s %6.2fs %6.2fs %6.2fs %5d %7d  %s\n", s.Source, s.JobsAccepted,
			s.JobsProcessed, s.JobsDropped, s.RequestsCut, s.AfterSignal, s.PrestopSeconds, s.PrestopEnd, s.PrestopLastArrival,
			s.HTTPSeconds, s.QueueSeconds, s.ConnsPeak, s.ConnsRefused, s.Refusals())
	}
	return b.String()
}
