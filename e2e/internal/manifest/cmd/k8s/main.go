// Command k8s writes k8s/ from charts/lameduck rendered with its default
// values (manifest.K8sFiles): `make k8s` runs it after a change to the chart.
// It removes the files of k8s/ it no longer writes.
//
//	go run ./internal/manifest/cmd/k8s [-chart ../charts/lameduck] [-out ../k8s]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lameduck/lameduck/e2e/internal/manifest"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "k8s:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("k8s", flag.ContinueOnError)
	chart := fs.String("chart", "../charts/lameduck", "the chart")
	out := fs.String("out", "../k8s", "the folder to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r, err := manifest.RenderChart(*chart, manifest.K8sRelease, nil, nil)
	if err != nil {
		return err
	}
	files, err := manifest.K8sFiles(r)
	if err != nil {
		return err
	}
	old, err := os.ReadDir(*out)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, e := range old {
		if _, ok := files[e.Name()]; !ok && !e.IsDir() {
			if err := os.Remove(filepath.Join(*out, e.Name())); err != nil {
				return err
			}
			fmt.Printf("removed %s\n", filepath.Join(*out, e.Name()))
		}
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(*out, name), data, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("wrote %d files to %s\n", len(files), *out)
	return nil
}
