// Package chart renders benchmark results (package report) as PNG charts with gonum/plot, one
// set per top-level benchmark ("BenchmarkIngest" → ingest-*.png):
//
//   - <name>-throughput.png: readings accepted (solid) and committed (dashed) in each second
//     of the runs that sampled them;
//   - <name>-latency.png: the latency percentiles of each benchmark that measured them;
//   - <name>-designs.png: readings/s of each benchmark that measures an ingestion design
//     (this system, the seed's, raw COPY), side by side.
//
// A chart with nothing to show is not written.
package chart

import (
	"fmt"
	"image/color"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/fleetingest/fleetingest/bench/report"
)

// entry is one benchmark of a group, with the label charts give it.
type entry struct {
	label string
	report.Benchmark
}

// Render writes the charts of r into dir (created if missing) and returns the paths written,
// in order.
func Render(r report.Results, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var written []string
	for _, g := range groups(r) {
		for _, c := range []struct {
			suffix string
			draw   func(title string, entries []*entry) (io.WriterTo, error)
		}{
			{"throughput", throughput},
			{"latency", latency},
			{"designs", designs},
		} {
			png, err := c.draw(title(g.name), g.entries)
			if err != nil {
				return written, fmt.Errorf("%s %s chart: %w", g.name, c.suffix, err)
			}
			if png == nil {
				continue
			}
			path := filepath.Join(dir, slug(g.name)+"-"+c.suffix+".png")
			if err := writeFile(path, png); err != nil {
				return written, err
			}
			written = append(written, path)
		}
	}
	return written, nil
}

func writeFile(path string, png io.WriterTo) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := png.WriteTo(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// width of every chart; heights follow what each shows.
const width = 8 * vg.Inch

type group struct {
	name    string
	entries []*entry
}

// groups splits r by top-level benchmark, in name order; within a group, benchmarks of a
// design come first (raw COPY, the seed's, this system's), then the rest, each by name.
func groups(r report.Results) []group {
	byName := map[string]*group{}
	var out []*group
	for _, name := range slices.Sorted(maps.Keys(r.Benchmarks)) {
		b := r.Benchmarks[name]
		gname := report.Group(name)
		g := byName[gname]
		if g == nil {
			g = &group{name: gname}
			byName[gname] = g
			out = append(out, g)
		}
		g.entries = append(g.entries, &entry{label: report.LabelOf(name, b), Benchmark: b})
	}
	res := make([]group, 0, len(out))
	for _, g := range out {
		slices.SortStableFunc(g.entries, func(a, b *entry) int { return designRank(a.Design) - designRank(b.Design) })
		res = append(res, *g)
	}
	return res
}

func designRank(d report.Design) int {
	switch d {
	case report.RawCopy:
		return 0
	case report.Seed:
		return 1
	case report.Fleetingest:
		return 2
	default:
		return 3
	}
}

// designColor is the colour of a design in every chart.
func designColor(d report.Design, i int) color.Color {
	switch d {
	case report.RawCopy:
		return color.RGBA{R: 128, G: 128, B: 128, A: 255}
	case report.Seed:
		return color.RGBA{R: 214, G: 39, B: 40, A: 255}
	case report.Fleetingest:
		return color.RGBA{R: 31, G: 119, B: 180, A: 255}
	default:
		return plotutil.Color(i)
	}
}

// title is a group's name as a chart's title: "BenchmarkGrowOnline" → "Grow online".
func title(group string) string {
	words := strings.ReplaceAll(slug(group), "-", " ")
	if words == "" {
		return group
	}
	return strings.ToUpper(words[:1]) + words[1:]
}

// slug is a group's name as a file name: "BenchmarkGrowOnline" → "grow-online".
func slug(group string) string {
	var b strings.Builder
	for i, r := range strings.TrimPrefix(group, "Benchmark") {
		if unicode.IsUpper(r) && i > 0 {
			b.WriteByte('-')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// thousands labels an axis's major ticks with digit grouping (12,500 rather than 12500).
var thousands = plot.TickerFunc(func(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i, t := range ticks {
		if t.Label != "" {
			ticks[i].Label = grouped(t.Value)
		}
	}
	return ticks
})

// grouped formats v with commas between groups of three digits; below 10 (latencies of a few
// milliseconds) it keeps the decimals.
func grouped(v float64) string {
	if v != 0 && v < 10 && v > -10 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
