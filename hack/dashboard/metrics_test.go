package main

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetingest/fleetingest/analytics"
	"github.com/fleetingest/fleetingest/analytics/shards"
	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/controllers"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/gateway"
	"github.com/fleetingest/fleetingest/ingester/registry"
	"github.com/fleetingest/fleetingest/ingester/shard"
	"github.com/fleetingest/fleetingest/test/envtest"
	"github.com/fleetingest/fleetingest/test/natstest"
)

// registered is one metric name as the code registers it: the labels of its series and
// whether it is a histogram (read through _bucket, _sum and _count).
type registered struct {
	labels    map[string]bool
	histogram bool
}

// describer is a Prometheus registry that also keeps each collector's descriptions, so that
// vectors nobody has used yet are known by name and labels too.
type describer struct {
	*prometheus.Registry
	metrics map[string]*registered
}

func newDescriber() *describer {
	return &describer{Registry: prometheus.NewRegistry(), metrics: map[string]*registered{}}
}

// descRE reads a Desc's String(), the only way client_golang shows a description's name and
// labels.
var descRE = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*constLabels: \{([^}]*)\}, variableLabels: \{([^}]*)\}\}$`)

func (d *describer) Register(c prometheus.Collector) error {
	if err := d.Registry.Register(c); err != nil {
		return err
	}
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	for desc := range ch {
		m := descRE.FindStringSubmatch(desc.String())
		if m == nil {
			panic("unreadable metric description " + desc.String())
		}
		r := d.metrics[m[1]]
		if r == nil {
			r = &registered{labels: map[string]bool{}}
			d.metrics[m[1]] = r
		}
		for _, pair := range strings.Split(m[2], ",") {
			if name, _, ok := strings.Cut(pair, "="); ok {
				r.labels[name] = true
			}
		}
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"); l != "" {
				r.labels[l] = true
			}
		}
		if _, ok := c.(*prometheus.HistogramVec); ok {
			r.histogram = true
		}
	}
	return nil
}

func (d *describer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := d.Register(c); err != nil {
			panic(err)
		}
	}
}

// gathered marks the histograms among what has series already (a vector's type shows only
// once it has a child; a plain histogram always has one).
func (d *describer) gathered(t *testing.T) map[string]*registered {
	t.Helper()
	mfs, err := d.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if r := d.metrics[mf.GetName()]; r != nil && mf.GetType().String() == "HISTOGRAM" {
			r.histogram = true
		}
	}
	return d.metrics
}

// noStore is a shard store the ingester is never run against: building one registers its
// metrics, which is all this needs.
type noStore struct{ shard.Store }

// codeMetrics builds each component the way its command does, on a registry that keeps
// what they register: the fleet's pods' metrics (gateway, ingester, analytics) and the
// operator's.
func codeMetrics(t *testing.T) (fleet, operator map[string]*registered) {
	t.Helper()
	ctx := t.Context()
	nc, js := natstest.Connect(t, natstest.Start(t).URL())
	topo := ingester.Topology{Namespace: "metrics", Fleet: "names", Shards: 2}
	if _, err := ingester.EnsureStreams(ctx, js, topo, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	shardMap := placement.Fixed{Map: placement.MustShardMap(topo.Shards)}
	mappings, err := registry.Open(ctx, js, topo.MappingBucket(), registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	reg := newDescriber()
	if _, err := gateway.New(nc, gateway.Config{Topology: topo, ShardMap: shardMap, Placement: mappings, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := shard.New(shard.Config{JS: js, Topology: topo, Shard: 0, Store: noStore{}, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	// The pools connect lazily; nothing here asks a question.
	dsn := "postgres://metrics@127.0.0.1:1/metrics?connect_timeout=1"
	svc, err := analytics.New(analytics.Config{
		Shards:   shards.Config{DSNs: []string{dsn, dsn}, MaxConns: 1, MinConns: 1},
		ShardMap: shardMap, Registry: mappings, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	op := newDescriber()
	controllers.NewReconciler(nil, nil, nil, nil, nil, controllers.Config{Registerer: op})
	fleet, operator = reg.gathered(t), op.gathered(t)
	if len(fleet) == 0 || len(operator) == 0 {
		t.Fatalf("no metrics registered: %d of the fleet's, %d of the operator", len(fleet), len(operator))
	}
	return fleet, operator
}

// targetLabels are the labels the Prometheus Operator gives every series of a PodMonitor's
// targets, besides the relabelings' own.
var targetLabels = []string{"job", "instance", "namespace", "pod", "container", "endpoint"}

// knownSeries are the names the dashboard and the alerts may read: the code's metrics with
// the labels their scrape adds, Prometheus's up for every target, and kube-state-metrics'
// pod readiness (the one thing the components do not say about themselves).
func knownSeries(t *testing.T, s scrapes) map[string]series {
	t.Helper()
	fleet, operator := codeMetrics(t)
	known := map[string]series{}
	add := func(ms map[string]*registered, scrape scrape) {
		for name, r := range ms {
			known[name] = series{labels: withLabels(r.labels, scrape.labels...), histogram: r.histogram, jobs: []string{scrape.job}}
		}
	}
	add(fleet, s.fleet)
	add(operator, s.operator)
	known["up"] = series{
		labels: withLabels(withLabels(nil, s.fleet.labels...), s.operator.labels...),
		jobs:   []string{s.fleet.job, s.operator.job},
	}
	known["kube_pod_status_ready"] = series{labels: withLabels(nil, append([]string{"uid", "condition"}, targetLabels...)...)}
	return known
}

func TestDashboardAndAlertsReadOnlyWhatTheCodeRegisters(t *testing.T) {
	s := renderedScrapes(t)
	known := knownSeries(t, s)

	exprs, queries := dashboardQueries(t)
	if len(exprs) == 0 || len(queries) == 0 {
		t.Fatalf("the dashboard has %d panel queries and %d variable queries", len(exprs), len(queries))
	}
	for _, e := range exprs {
		for _, err := range checkExpr(e, known) {
			t.Errorf("dashboard: %v", err)
		}
	}
	for _, q := range queries {
		for _, err := range checkQuery(q, known) {
			t.Errorf("dashboard variable: %v", err)
		}
	}
	rules := renderedRules(t)
	if len(rules) == 0 {
		t.Fatal("the PrometheusRule has no rules")
	}
	for alert, expr := range rules {
		for _, err := range checkExpr(expr, known) {
			t.Errorf("alert %s: %v", alert, err)
		}
	}
}

// A series keeps its own labels only where they are not target labels: the Prometheus
// Operator renames a clashing one exported_<name> unless honorLabels, which only the
// operator's PodMonitor sets.
func TestFleetMetricLabelsAreNotTargetLabels(t *testing.T) {
	s := renderedScrapes(t)
	fleet, _ := codeMetrics(t)
	for name, r := range fleet {
		for _, l := range s.fleet.labels {
			if r.labels[l] {
				t.Errorf("%s has label %s, which its scrape sets as a target label", name, l)
			}
		}
	}
}

// dashboardQueries are the committed dashboard's panel expressions and variable queries.
func dashboardQueries(t *testing.T) (exprs, queries []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(envtest.RepoRoot(), committedDashboard))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			q, ok := v.Query.(string)
			if !ok {
				t.Fatalf("variable query %v is not a string", v.Query)
			}
			queries = append(queries, q)
		}
	}
	return exprs, queries
}

func TestTheMetricCheckRefusesWhatDoesNotExist(t *testing.T) {
	known := map[string]series{
		"fleetingest_x_total":   {labels: withLabels(nil, "shard", "job"), jobs: []string{"fleetingest"}},
		"fleetingest_x_seconds": {labels: withLabels(nil, "shard"), histogram: true},
		"fleetingest_x_gauge":   {labels: withLabels(nil, "shard")},
	}
	for _, tc := range []struct {
		expr string
		want string // in the one error; empty: no error
	}{
		{`sum by (shard) (rate(fleetingest_x_total{shard="1", job="fleetingest"}[$__rate_interval]))`, ""},
		{`histogram_quantile(0.99, sum by (le, shard) (rate(fleetingest_x_seconds_bucket[5m])))`, ""},
		{`fleetingest_x_total > 0 and deriv(fleetingest_x_gauge[15m]) > 0`, ""},
		{`sum(rate(fleetingest_y_total[5m]))`, "fleetingest_y_total, which nothing registers"},
		{`rate(fleetingest_x_gauge_bucket[5m])`, "fleetingest_x_gauge_bucket, which nothing registers"},
		{`fleetingest_x_total{kind="meter"}`, "label kind"},
		{`sum by (kind) (fleetingest_x_total)`, "groups by kind"},
		{`fleetingest_x_total{job="other"}`, `job "other"`},
		{`fleetingest_x_total{job=~"fleetingest|other"}`, `job "other"`},
		{`{__name__="fleetingest_x_total"}`, "without a metric name"},
		{`vector(1)`, "selects no series"},
	} {
		errs := checkExpr(tc.expr, known)
		switch {
		case tc.want == "" && len(errs) > 0:
			t.Errorf("%s: %v", tc.expr, errs)
		case tc.want != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want)):
			t.Errorf("%s: errors %v, want one saying %q", tc.expr, errs, tc.want)
		}
	}
	if errs := checkQuery(`label_values(fleetingest_x_total, fleet)`, known); len(errs) != 1 {
		t.Errorf("a variable over a label the series lacks: errors %v, want one", errs)
	}
	if errs := checkQuery(`label_values(fleetingest_x_total{job="fleetingest"}, shard)`, known); len(errs) != 0 {
		t.Errorf("a variable over a label the series has: %v", errs)
	}
}

// sortedKeys is for messages.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
