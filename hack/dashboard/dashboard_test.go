package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/fleetingest/fleetingest/test/envtest"
)

// The chart ships the generator's output; an edit to either alone is drift.
func TestTheCommittedDashboardIsWhatTheGeneratorWrites(t *testing.T) {
	want, err := render()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(envtest.RepoRoot(), committedDashboard))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what hack/dashboard writes: run `make generate` and commit", committedDashboard)
	}
}

// run writes what render returns, where it is told to.
func TestRunWritesTheDashboard(t *testing.T) {
	out := filepath.Join(t.TempDir(), "dashboard.json")
	if err := run(out); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := render()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("run wrote something other than the rendered dashboard")
	}
}
