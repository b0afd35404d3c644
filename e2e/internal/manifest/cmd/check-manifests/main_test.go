package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRun: check-manifests takes a folder of manifests, a kustomization, or
// a chart with values files, and says what falls short.
func TestRun(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, []byte("config: {maxConns: 4000}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const root = "../../../../.."
	tests := []struct {
		args []string
		code int
		want string // part of stdout or stderr
	}{
		{[]string{root + "/k8s"}, exitOK, "(kustomization): every check passes"},
		{[]string{root + "/k8s/deployment.yaml"}, exitProblem, "no ConfigMap"},
		{[]string{root + "/e2e/internal/manifest/testdata"}, exitUsage, "not one lameduck deploys"},
		{[]string{root + "/overlays/example"}, exitOK, "(kustomization): every check passes"},
		{[]string{"-f", root + "/charts/lameduck/ci/production-values.yaml", root + "/charts/lameduck"}, exitOK, "(chart with"},
		{[]string{"-f", big, root + "/charts/lameduck"}, exitProblem, "exceeds 80% of GOMEMLIMIT"},
		{[]string{"-f", big, root + "/k8s"}, exitUsage, "values files are for a chart"},
		{[]string{root + "/nowhere"}, exitUsage, "no such file or directory"},
		{nil, exitUsage, "usage: check-manifests"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(tt.args, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if code != tt.code || !strings.Contains(out, tt.want) {
			t.Errorf("check-manifests %q = %d, %q; want %d and output containing %q", tt.args, code, out, tt.code, tt.want)
		}
	}
}
