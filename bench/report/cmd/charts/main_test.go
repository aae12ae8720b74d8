package main

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/plot/plotutil"
)

func TestRenderingTheFixtureWritesEveryChartAsAPNG(t *testing.T) {
	out := filepath.Join(t.TempDir(), "charts")
	var stdout bytes.Buffer
	if err := run([]string{"-in", "testdata/results.json", "-out", out}, &stdout); err != nil {
		t.Fatal(err)
	}
	want := []string{"analytics-latency.png", "ingest-designs.png", "ingest-latency.png", "ingest-throughput.png"}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("wrote %v, want %v", got, want)
	}
	if printed := strings.Fields(stdout.String()); len(printed) != len(want) {
		t.Errorf("printed %v, want the %d paths written", printed, len(want))
	}
	gray, red, blue := color.RGBA{128, 128, 128, 255}, color.RGBA{214, 39, 40, 255}, color.RGBA{31, 119, 180, 255}
	// The colours each chart draws its data in: lines and design bars a colour per design,
	// latency bars a colour per percentile.
	inks := map[string][]color.Color{
		"analytics-latency.png": plotutil.SoftColors[:4],
		"ingest-designs.png":    {gray, red, blue},
		"ingest-latency.png":    plotutil.SoftColors[:4],
		"ingest-throughput.png": {red, blue},
	}
	for _, name := range want {
		t.Run(name, func(t *testing.T) {
			img := decode(t, filepath.Join(out, name))
			if b := img.Bounds(); b.Dx() < 600 || b.Dy() < 150 {
				t.Errorf("%s is %d×%d, want a chart at least 600×150", name, b.Dx(), b.Dy())
			}
			drawn := colours(img)
			for _, ink := range inks[name] {
				if !hasNear(drawn, ink) {
					t.Errorf("%s has no pixel of %v: its data are not drawn", name, ink)
				}
			}
		})
	}
}

func TestRenderingResultsWithoutDataWritesNoChart(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "results.json")
	// A benchmark with metrics only: no series, no latency, no design.
	fixture := `{"benchmarks": {"BenchmarkHistorySize": {"metrics": {"p50-1d-ms": 0.3}}}}`
	if err := os.WriteFile(in, []byte(fixture), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "charts")
	var stdout bytes.Buffer
	if err := run([]string{"-in", in, "-out", out}, &stdout); err != nil {
		t.Fatal(err)
	}
	if entries, err := os.ReadDir(out); err != nil || len(entries) != 0 || stdout.Len() != 0 {
		t.Errorf("wrote %v (%v), printed %q; want nothing", entries, err, stdout.String())
	}
}

func TestRunRefusesAMissingResultsFile(t *testing.T) {
	err := run([]string{"-in", filepath.Join(t.TempDir(), "missing.json"), "-out", t.TempDir()}, &bytes.Buffer{})
	if !os.IsNotExist(err) {
		t.Errorf("run with a missing results file = %v, want a not-exist error", err)
	}
}

func decode(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s is not a PNG: %v", path, err)
	}
	return img
}

func colours(img image.Image) map[[4]uint32]bool {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			seen[rgba(img.At(x, y))] = true
		}
	}
	return seen
}

// hasNear reports whether one of colours is ink or close to it: lines are drawn smoothed, so
// few of their pixels have exactly their colour.
func hasNear(colours map[[4]uint32]bool, ink color.Color) bool {
	want := rgba(ink)
	for c := range colours {
		near := true
		for i := range c {
			if d := int(c[i]>>8) - int(want[i]>>8); d < -16 || d > 16 {
				near = false
			}
		}
		if near {
			return true
		}
	}
	return false
}

func rgba(c color.Color) [4]uint32 {
	r, g, b, a := c.RGBA()
	return [4]uint32{r, g, b, a}
}
