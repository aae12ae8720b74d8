package chart

import (
	"io"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// tileHeight is the height of one benchmark's panel in the throughput chart.
const tileHeight = 2.4 * vg.Inch

// throughput draws a panel for each benchmark that sampled its run: the readings accepted
// (solid) and committed (dashed) in each second, against the seconds since the run's start.
// Each panel has its own scale, since the runs differ by orders of magnitude; all share the
// time axis.
func throughput(title string, entries []*entry) (io.WriterTo, error) {
	var plots [][]*plot.Plot
	seconds := 0
	for i, e := range entries {
		if len(e.Accepted)+len(e.Committed) == 0 {
			continue
		}
		p, err := throughputPanel(title, e, lineStyle(e, i))
		if err != nil {
			return nil, err
		}
		plots = append(plots, []*plot.Plot{p})
		seconds = max(seconds, len(e.Accepted), len(e.Committed))
	}
	if len(plots) == 0 {
		return nil, nil
	}
	for _, row := range plots {
		row[0].X.Min, row[0].X.Max = 0, float64(seconds)
	}
	img := vgimg.New(width, vg.Length(len(plots))*tileHeight)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadY: vg.Points(8), PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(8)}
	canvases := plot.Align(plots, tiles, dc)
	for j, row := range plots {
		row[0].Draw(canvases[j][0])
	}
	return vgimg.PngCanvas{Canvas: img}, nil
}

// throughputPanel is one benchmark's panel, titled with the group's title and its label.
func throughputPanel(title string, e *entry, ink draw.LineStyle) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title + ": " + e.label
	p.X.Label.Text = "seconds since the run's start"
	p.Y.Label.Text = "readings/s"
	p.Y.Tick.Marker = thousands
	p.Y.Min = 0
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	peak := 0.0
	for _, s := range []struct {
		values []float64
		what   string
		dashed bool
	}{{e.Accepted, "accepted", false}, {e.Committed, "committed", true}} {
		if len(s.values) == 0 {
			continue
		}
		line, err := plotter.NewLine(perSecond(s.values))
		if err != nil {
			return nil, err
		}
		line.LineStyle = ink
		if s.dashed {
			line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		p.Add(line)
		p.Legend.Add(s.what, line)
		peak = max(peak, slices.Max(s.values))
	}
	// Headroom above the highest line for the legend.
	p.Y.Max = max(peak*1.35, 1)
	return p, nil
}

// lineStyle draws a benchmark's lines in its design's colour.
func lineStyle(e *entry, i int) draw.LineStyle {
	return draw.LineStyle{Color: designColor(e.Design, i), Width: vg.Points(1.5)}
}

// perSecond places value i at the end of second i of the run.
func perSecond(values []float64) plotter.XYs {
	xys := make(plotter.XYs, len(values))
	for i, v := range values {
		xys[i] = plotter.XY{X: float64(i + 1), Y: v}
	}
	return xys
}
