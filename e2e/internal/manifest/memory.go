package manifest

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/lameduck/lameduck/internal/config"
)

// Memory rules: an OOM kill is a SIGKILL, which loses the whole queue and
// leaves no account, so whatever clients do must fit the container.
const (
	// NonGoReserve is what the container holds beyond the Go runtime's soft
	// limit: the binary's resident text and data, which GOMEMLIMIT does not
	// count.
	NonGoReserve = 8 << 20
	// GCHeadroom is the share of GOMEMLIMIT the worst case may fill (80%):
	// at the limit the garbage collector runs without pause and the service
	// slows to a crawl, so the worst case stays below it.
	GCHeadroom = 0.80
)

// CheckMemory reports whether cfg's worst case (config.MemoryWorstCase) fits
// the Deployment's container: below GCHeadroom of its GOMEMLIMIT, and
// GOMEMLIMIT + NonGoReserve within limits.memory. cfg is what config.Load
// makes of the ConfigMap.
func CheckMemory(m Manifests, cfg config.Config) error {
	if m.Deployment == nil || len(m.Deployment.Spec.Template.Spec.Containers) != 1 {
		return errors.New("memory: no Deployment with one container") // reported by Check
	}
	ctr := m.Deployment.Spec.Template.Spec.Containers[0]
	var errs []error
	limit, ok := ctr.Resources.Limits[corev1.ResourceMemory]
	if !ok {
		errs = append(errs, errors.New("memory: container has no limits.memory: the worst case cannot be checked against it"))
	}
	var soft int64
	for _, e := range ctr.Env {
		if e.Name == "GOMEMLIMIT" {
			n, err := parseGoMemLimit(e.Value)
			if err != nil {
				errs = append(errs, fmt.Errorf("memory: GOMEMLIMIT: %w", err))
			}
			soft = n
		}
	}
	if soft == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("memory: container sets no GOMEMLIMIT: the garbage collector would not know the limit"))
	}
	if ok && soft > 0 && soft+NonGoReserve > limit.Value() {
		errs = append(errs, fmt.Errorf("memory: GOMEMLIMIT %s + %s outside the Go heap = %s exceeds limits.memory %s",
			mib(soft), mib(NonGoReserve), mib(soft+NonGoReserve), mib(limit.Value())))
	}
	parts := cfg.MemoryWorstCase()
	if worst := config.MemoryTotal(parts); soft > 0 && float64(worst) > GCHeadroom*float64(soft) {
		var b strings.Builder
		for _, p := range parts {
			fmt.Fprintf(&b, "; %s %s", p.Name, mib(p.Bytes))
		}
		errs = append(errs, fmt.Errorf("memory: the worst case at the ConfigMap's values, %s, exceeds %.0f%% of GOMEMLIMIT %s (%s)%s",
			mib(worst), GCHeadroom*100, mib(soft), mib(int64(GCHeadroom*float64(soft))), b.String()))
	}
	return errors.Join(errs...)
}

// parseGoMemLimit parses a GOMEMLIMIT value: bytes with an optional B, KiB,
// MiB, GiB or TiB suffix, as the Go runtime reads it.
func parseGoMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}
	num, shift := s, uint(0)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, shift = n, u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("%q is not a size such as 56MiB", s)
	}
	return n << shift, nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
