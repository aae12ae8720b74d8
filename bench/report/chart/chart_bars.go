package chart

import (
	"io"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/fleetingest/fleetingest/bench/report"
)

// The metric the designs chart compares.
const rateMetric = "readings/s"

// barHeight is the room each benchmark takes in a bar chart.
const barHeight = 0.55 * vg.Inch

// latency draws, for each benchmark that measured them, its latency percentiles as a group of
// horizontal bars, one colour per percentile.
func latency(title string, entries []*entry) (io.WriterTo, error) {
	var shown []*entry
	for _, e := range entries {
		if e.Latency != nil {
			shown = append(shown, e)
		}
	}
	if len(shown) == 0 {
		return nil, nil
	}
	slices.Reverse(shown) // the first benchmark on top
	p := plot.New()
	p.Title.Text = title + ": latency percentiles"
	p.X.Label.Text = "milliseconds"
	p.X.Tick.Marker = thousands
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	w := barHeight / vg.Length(len(percentiles)+1)
	top := 0.0
	for j, pc := range percentiles {
		values := make(plotter.Values, len(shown))
		for i, e := range shown {
			values[i] = pc.of(*e.Latency)
			top = max(top, values[i])
		}
		bars, err := plotter.NewBarChart(values, w)
		if err != nil {
			return nil, err
		}
		bars.Horizontal = true
		bars.Color = plotutil.Color(j)
		bars.LineStyle.Width = 0
		// The first percentile on top of its group, as the legend lists them.
		bars.Offset = (vg.Length(len(percentiles)-1)/2 - vg.Length(j)) * w
		p.Add(bars)
		p.Legend.Add(pc.name, bars)
	}
	p.X.Min = 0
	p.X.Max = top * 1.25 // room on the right for the legend
	p.NominalY(labels(shown)...)
	return p.WriterTo(width, chartHeight(len(shown)), "png")
}

// percentiles are the latency percentiles charted, in increasing order.
var percentiles = []struct {
	name string
	of   func(report.Latency) float64
}{
	{"p50", func(l report.Latency) float64 { return l.P50 }},
	{"p90", func(l report.Latency) float64 { return l.P90 }},
	{"p99", func(l report.Latency) float64 { return l.P99 }},
	{"p99.9", func(l report.Latency) float64 { return l.P999 }},
}

// designs draws readings/s of each benchmark that measures an ingestion design, one bar each
// in its design's colour, with the figure at the bar's end. The bars' labels name the
// designs, so there is no legend.
func designs(title string, entries []*entry) (io.WriterTo, error) {
	var shown []*entry
	for _, e := range entries {
		if _, ok := e.Metrics[rateMetric]; ok && e.Design != "" {
			shown = append(shown, e)
		}
	}
	if len(shown) == 0 {
		return nil, nil
	}
	slices.Reverse(shown)
	p := plot.New()
	p.Title.Text = title + ": " + rateMetric + " by design"
	p.X.Label.Text = rateMetric
	p.X.Tick.Marker = thousands
	p.X.Min = 0
	p.Add(plotter.NewGrid())
	var figures plotter.XYLabels
	top := 0.0
	for i, e := range shown {
		v := e.Metrics[rateMetric]
		top = max(top, v)
		bar, err := plotter.NewBarChart(plotter.Values{v}, barHeight*0.6)
		if err != nil {
			return nil, err
		}
		bar.Horizontal = true
		bar.XMin = float64(i)
		bar.Color = designColor(e.Design, i)
		bar.LineStyle.Width = 0
		p.Add(bar)
		figures.XYs = append(figures.XYs, plotter.XY{X: v, Y: float64(i)})
		figures.Labels = append(figures.Labels, " "+grouped(v))
	}
	text, err := plotter.NewLabels(figures)
	if err != nil {
		return nil, err
	}
	for i := range text.TextStyle {
		text.TextStyle[i].YAlign = draw.YCenter
	}
	p.Add(text)
	p.X.Max = top * 1.2 // room for the figure after the longest bar
	p.NominalY(labels(shown)...)
	return p.WriterTo(width, chartHeight(len(shown)), "png")
}

func labels(entries []*entry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.label
	}
	return out
}

// chartHeight leaves room for the title, the axis and the legend above n rows of bars.
func chartHeight(n int) vg.Length {
	return 1.6*vg.Inch + vg.Length(n)*barHeight
}
