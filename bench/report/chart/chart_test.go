package chart

import (
	"slices"
	"testing"

	"github.com/fleetingest/fleetingest/bench/report"
)

func TestSlugAndTitle(t *testing.T) {
	for _, tc := range []struct{ group, slug, title string }{
		{"BenchmarkIngest", "ingest", "Ingest"},
		{"BenchmarkGrowOnline", "grow-online", "Grow online"},
		{"BenchmarkIngestAuth", "ingest-auth", "Ingest auth"},
	} {
		if got := slug(tc.group); got != tc.slug {
			t.Errorf("slug(%q) = %q, want %q", tc.group, got, tc.slug)
		}
		if got := title(tc.group); got != tc.title {
			t.Errorf("title(%q) = %q, want %q", tc.group, got, tc.title)
		}
	}
}

func TestGrouped(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{{0, "0"}, {2.5, "2.5"}, {950, "950"}, {12130.4, "12,130"}, {236797, "236,797"}, {1_250_000, "1,250,000"}, {-4200, "-4,200"}} {
		if got := grouped(tc.v); got != tc.want {
			t.Errorf("grouped(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

func TestGroupsPutDesignsFirstInTheirOrder(t *testing.T) {
	r := report.Results{Benchmarks: map[string]report.Benchmark{
		"BenchmarkIngest/single":               {Design: report.Fleetingest},
		"BenchmarkIngest/batch":                {Design: report.Fleetingest},
		"BenchmarkIngest/seed-design-baseline": {Design: report.Seed},
		"BenchmarkIngest/copy-baseline":        {Design: report.RawCopy},
		"BenchmarkAnalytics/alerts":            {},
		"BenchmarkIngest/other":                {},
	}}
	var got [][]string
	for _, g := range groups(r) {
		names := []string{g.name}
		for _, e := range g.entries {
			names = append(names, e.label)
		}
		got = append(got, names)
	}
	want := [][]string{
		{"BenchmarkAnalytics", "alerts"},
		{"BenchmarkIngest", "copy-baseline", "seed-design-baseline", "batch", "single", "other"},
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("groups = %v, want %v", got, want)
	}
}
