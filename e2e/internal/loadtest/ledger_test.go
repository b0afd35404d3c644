package loadtest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLedger(t *testing.T) {
	logs := map[string]string{
		"a": `{"time":"2026-12-04T06:00:00Z","msg":"job processed","job_id":"j1"}
{"time":"2026-12-04T06:00:01Z","msg":"job processed","job_id":"j2"}
{"time":"2026-12-04T06:00:02Z","msg":"job dropped","job_id":"j3"}
not json`,
		"b": `{"time":"2026-12-04T06:00:05Z","msg":"job redelivered","job_id":"j2","deliveries":2}
{"time":"2026-12-04T06:00:06Z","msg":"job processed","job_id":"j2","deliveries":2}
{"time":"2026-12-04T06:00:07Z","msg":"shutdown complete","jobs_accepted":2,"jobs_processed":1}`,
	}
	l := NewLedger()
	for source, log := range logs {
		for line := range strings.SplitSeq(log, "\n") {
			l.Line(source, []byte(line))
		}
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"distinct processed", l.Processed(), 2},
		{"summaries", len(l.Summaries()), 1},
		{"redeliveries", l.Redeliveries(), []time.Time{time.Date(2026, 12, 4, 6, 0, 5, 0, time.UTC)}},
	}
	missing, dropped := l.Unprocessed([]string{"j1", "j2", "j3", "j4"})
	jobs, extra := l.Duplicates()
	tests = append(tests, []struct {
		name      string
		got, want any
	}{
		{"missing", strings.Join(missing, ","), "j3,j4"},
		{"missing logged dropped", dropped, 1},
		{"jobs processed twice or more", jobs, 1},
		{"processings beyond the first", extra, 1},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if g, w := fmtAny(tt.got), fmtAny(tt.want); g != w {
				t.Errorf("%s = %s; want %s", tt.name, g, w)
			}
		})
	}
}

func fmtAny(v any) string {
	if ts, ok := v.([]time.Time); ok {
		var parts []string
		for _, t := range ts {
			parts = append(parts, t.UTC().Format(time.RFC3339Nano))
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
}
