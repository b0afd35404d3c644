// Command check-manifests runs lameduck's manifest checks on what a path
// deploys: a folder of manifests (kubectl apply -f), a kustomization
// (kubectl apply -k), or a chart rendered with values files (helm install
// -f). It prints every problem at once and exits 1 if there is any, 2 if
// the path cannot be read or rendered. `make check-manifests DIR=... VALUES=...`
// runs it.
//
//	check-manifests [-f values.yaml]... PATH
//
// The checks are internal/manifest's: Check (the shutdown budget fits the
// grace period, which the program is told; probes, ports, the rollout, the
// disruption budget, the restricted security context), then the program's
// own validation of the ConfigMap's values (config.Load), then CheckMemory
// (the worst case of what clients can hold fits the container).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lameduck/lameduck/e2e/internal/manifest"
	"github.com/lameduck/lameduck/internal/config"
)

// Exit codes.
const (
	exitOK      = 0
	exitProblem = 1 // the manifests fall short
	exitUsage   = 2 // the path cannot be read or rendered
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// valuesFlag collects repeated -f flags.
type valuesFlag []string

func (v *valuesFlag) String() string     { return strings.Join(*v, ",") }
func (v *valuesFlag) Set(s string) error { *v = append(*v, s); return nil }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-manifests", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var values valuesFlag
	fs.Var(&values, "f", "a values `file` for a chart (repeatable, later ones win, as helm -f)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: check-manifests [-f values.yaml]... PATH (a folder or file of manifests, a kustomization, or a chart)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	path := fs.Arg(0)
	m, source, err := manifest.LoadAny(path, values)
	if err != nil {
		fmt.Fprintf(stderr, "check-manifests: %s: %v\n", path, err)
		return exitUsage
	}
	what := fmt.Sprintf("%s (%s", path, source)
	if len(values) > 0 {
		what += " with " + values.String()
	}
	what += ")"
	if err := validate(m); err != nil {
		fmt.Fprintf(stderr, "check-manifests: %s falls short:\n", what)
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "  - %s\n", line)
		}
		return exitProblem
	}
	fmt.Fprintf(stdout, "check-manifests: %s: every check passes\n", what)
	return exitOK
}

// validate runs every check, as internal/manifest's tests do. config.Load
// reads the process environment: validate sets it to exactly the
// ConfigMap's variables first (this process does nothing else).
func validate(m manifest.Manifests) error {
	errs := []error{manifest.Check(m)}
	if m.ConfigMap == nil {
		return errors.Join(errs...)
	}
	vars, err := manifest.Variables()
	if err != nil {
		return err
	}
	for _, v := range vars {
		os.Unsetenv(v)
	}
	for k, v := range m.ConfigMap.Data {
		os.Setenv(k, v)
	}
	cfg, err := config.Load()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("the program refuses the ConfigMap's values: %w", err))...)
	}
	return errors.Join(append(errs, manifest.CheckMemory(m, cfg))...)
}
