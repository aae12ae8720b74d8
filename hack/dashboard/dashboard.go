package main

import (
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// The dashboard shows one fleet, chosen by namespace and name. The fleet's pods carry both as
// target labels (the chart's PodMonitor copies fleet from the pods' app.kubernetes.io/instance);
// the operator's series carry them as their own labels, which its PodMonitor honours.
const (
	fleetSel = `namespace="$namespace", fleet="$fleet"`
	// fleetJob is the job of the fleet's pods: the chart's PodMonitor takes it from their
	// app.kubernetes.io/name.
	fleetJob = `job="fleetingest"`
)

// query is one PromQL target of a panel. An instant query reads one value (stat panels).
type query struct {
	expr, legend string
	instant      bool
}

type panelKind int

const (
	timeseriesPanel panelKind = iota
	statPanel
)

// panel is what a panel shows; build turns it into Grafana's model.
type panel struct {
	kind               panelKind
	title, description string
	unit               string
	width              uint32 // of the 24 columns; default 8
	stacked            bool
	// redAt, when set, turns a stat red from this value on (green below).
	redAt   *float64
	queries []query
}

// row is a titled group of panels.
type row struct {
	title  string
	panels []panel
}

const panelHeight = 8

// render is the dashboard's JSON as committed: indented, with a final newline.
func render() ([]byte, error) {
	d, err := fleetDashboard().Build()
	if err != nil {
		return nil, fmt.Errorf("building the dashboard: %w", err)
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the dashboard: %w", err)
	}
	return append(b, '\n'), nil
}

// fleetDashboard is built on the classic dashboard model (the SDK prefers its v2 schema), as
// that is what Grafana's dashboard sidecar and file provisioning load on every Grafana
// version; v2 needs Grafana 12's new dashboard API.
//
//nolint:staticcheck // the classic model, on purpose (above)
func fleetDashboard() *dashboard.DashboardBuilder {
	b := dashboard.NewDashboardBuilder("fleetingest").
		Uid("fleetingest").
		Description("One fleet's ingestion: the gateway, its shards' streams and ingesters, analytics, and the readiness of each part. Alerts and what to do about them: docs/operations.md.").
		Tags([]string{"fleetingest"}).
		Editable().
		Refresh("30s").
		Time("now-3h", "now").
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Data source").Type("prometheus")).
		WithVariable(labelVariable("namespace", "Namespace", `label_values(up{`+fleetJob+`}, namespace)`)).
		WithVariable(labelVariable("fleet", "Fleet", `label_values(up{`+fleetJob+`, namespace="$namespace"}, fleet)`))
	id := uint32(0)
	for _, r := range rows() {
		id++
		b.WithRow(dashboard.NewRowBuilder(r.title).Id(id))
		for _, p := range r.panels {
			id++
			b.WithPanel(p.build(id))
		}
	}
	return b
}

func datasource() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}
}

func labelVariable(name, label, values string) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(datasource()).
		Query(dashboard.StringOrMap{String: cog.ToPtr(values)}).
		Definition(values).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
}

func (p panel) build(id uint32) cog.Builder[dashboard.Panel] {
	width := p.width
	if width == 0 {
		width = 8
	}
	targets := make([]cog.Builder[variants.Dataquery], 0, len(p.queries))
	for i, q := range p.queries {
		t := prometheus.NewDataqueryBuilder().
			RefId(string(rune('A' + i))).
			Datasource(datasource()).
			Expr(q.expr).
			LegendFormat(q.legend)
		if q.instant {
			t.Instant()
		}
		targets = append(targets, t)
	}
	if p.kind == statPanel {
		s := stat.NewPanelBuilder().
			Id(id).Title(p.title).Description(p.description).Unit(p.unit).
			Datasource(datasource()).Height(panelHeight).Span(width).
			Targets(targets).
			GraphMode(common.BigValueGraphModeNone).
			ColorMode(common.BigValueColorModeValue).
			Orientation(common.VizOrientationAuto).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}))
		if p.redAt != nil {
			s.Thresholds(dashboard.NewThresholdsConfigBuilder().
				Mode(dashboard.ThresholdsModeAbsolute).
				Steps([]dashboard.Threshold{{Color: "green"}, {Value: p.redAt, Color: "red"}}))
		}
		return s
	}
	ts := timeseries.NewPanelBuilder().
		Id(id).Title(p.title).Description(p.description).Unit(p.unit).
		Datasource(datasource()).Height(panelHeight).Span(width).
		Targets(targets).
		Min(0).
		FillOpacity(10).
		Legend(common.NewVizLegendOptionsBuilder().
			ShowLegend(true).
			DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom)).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
	if p.stacked {
		ts.Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal))
	}
	return ts
}

// rate, increase and quantile spell the dashboard's usual PromQL shapes over the chosen
// fleet's series of metric.
func rate(metric, by string) string {
	return fmt.Sprintf("sum by (%s) (rate(%s{%s}[$__rate_interval]))", by, metric, fleetSel)
}

func quantile(q, histogram, by string) string {
	return fmt.Sprintf("histogram_quantile(%s, sum by (le%s) (rate(%s_bucket{%s}[$__rate_interval])))", q, by, histogram, fleetSel)
}

// p50p99 is a histogram's median and 99th percentile, summed by (le+by), each legend
// "p50"/"p99" followed by legend.
func p50p99(histogram, by, legend string) []query {
	return []query{
		{expr: quantile("0.5", histogram, by), legend: "p50" + legend},
		{expr: quantile("0.99", histogram, by), legend: "p99" + legend},
	}
}

func rangeIncrease(metric string) string {
	return fmt.Sprintf("sum(increase(%s{%s}[$__range]))", metric, fleetSel)
}
