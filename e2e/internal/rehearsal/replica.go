package rehearsal

import (
	"context"

	"github.com/lameduck/lameduck/e2e/internal/loadtest"
	"github.com/lameduck/lameduck/internal/child"
)

// Build compiles the lameduck binary into dir and returns its path.
func Build(ctx context.Context, dir string) (string, error) { return child.Build(ctx, dir) }

// Replica is one running lameduck process.
type Replica = child.Process

// Start runs binary as the replica name, with env (NAME=value entries) added
// to the environment (from which every other LAMEDUCK_* variable is
// removed), its listeners on loopback ports the kernel picks. Every line of
// its standard output goes to ledger as it is written. Start returns once the
// replica logs "serving"; ctx bounds that wait, not the process.
func Start(ctx context.Context, binary, name string, env []string, ledger *loadtest.Ledger) (*Replica, error) {
	return child.Start(ctx, binary, child.Config{
		Name:   name,
		Env:    env,
		OnLine: func(line []byte) { ledger.Line(name, line) },
	})
}
