package main

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/fleetingest/fleetingest/controllers"
	"github.com/fleetingest/fleetingest/test/envtest"
)

const committedDashboard = "charts/fleetingest/dashboards/fleetingest.json"

// monitoringOn turns on every part of the chart's monitoring.
var monitoringOn = []string{
	"--set", "monitoring.dashboard.enabled=true",
	"--set", "monitoring.podMonitor.enabled=true",
	"--set", "monitoring.prometheusRules.enabled=true",
}

// chart is what `helm template` rendered, decoded strictly: a field the kind does not have
// fails the test, as the API server would refuse it.
type chart struct {
	kinds       []string
	configMaps  []corev1.ConfigMap
	podMonitors map[string]monitoringv1.PodMonitor // by name
	rules       []monitoringv1.PrometheusRule
	deployment  appsv1.Deployment
}

func helm(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := envtest.Tool("HELM")
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func chartDir() string { return filepath.Join(envtest.RepoRoot(), "charts", "fleetingest") }

func renderChart(t *testing.T, values ...string) chart {
	t.Helper()
	out := helm(t, append([]string{"template", "fi", chartDir(), "--namespace", "fleetingest-system"}, values...)...)
	c := chart{podMonitors: map[string]monitoringv1.PodMonitor{}}
	for _, doc := range strings.Split(out, "\n---\n") {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("decoding %q: %v", doc, err)
		}
		if meta.Kind == "" {
			continue
		}
		c.kinds = append(c.kinds, meta.Kind)
		var into any
		switch meta.Kind {
		case "ConfigMap":
			c.configMaps = append(c.configMaps, corev1.ConfigMap{})
			into = &c.configMaps[len(c.configMaps)-1]
		case "PodMonitor":
			var pm monitoringv1.PodMonitor
			strict(t, doc, &pm)
			c.podMonitors[pm.Name] = pm
			continue
		case "PrometheusRule":
			c.rules = append(c.rules, monitoringv1.PrometheusRule{})
			into = &c.rules[len(c.rules)-1]
		case "Deployment":
			into = &c.deployment
		default:
			continue
		}
		strict(t, doc, into)
	}
	return c
}

func strict(t *testing.T, doc string, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
		t.Fatalf("%v in\n%s", err, doc)
	}
}

// scrape is what one PodMonitor gives its series: a job, and the target labels.
type scrape struct {
	job    string
	labels []string
}

type scrapes struct{ fleet, operator scrape }

// The chart's two PodMonitors, of release "fi".
const (
	fleetPodMonitor    = "fi-fleetingest-fleets"
	operatorPodMonitor = "fi-fleetingest-operator"
)

// renderedScrapes reads the job and target labels off the rendered PodMonitors: the job is
// the value of their jobLabel among the pod labels they select on.
func renderedScrapes(t *testing.T) scrapes {
	t.Helper()
	c := renderChart(t, monitoringOn...)
	get := func(name string) scrape {
		pm, ok := c.podMonitors[name]
		if !ok {
			t.Fatalf("no PodMonitor %s among %v", name, sortedKeys(c.podMonitors))
		}
		s := scrape{job: pm.Spec.Selector.MatchLabels[pm.Spec.JobLabel], labels: slices.Clone(targetLabels)}
		if s.job == "" {
			t.Fatalf("PodMonitor %s: its jobLabel %q is not among the labels it selects on", name, pm.Spec.JobLabel)
		}
		for i := range pm.Spec.PodMetricsEndpoints {
			for _, r := range pm.Spec.PodMetricsEndpoints[i].RelabelConfigs {
				s.labels = append(s.labels, r.TargetLabel)
			}
		}
		return s
	}
	return scrapes{fleet: get(fleetPodMonitor), operator: get(operatorPodMonitor)}
}

// renderedRules are the PrometheusRule's alerts' expressions, by alert.
func renderedRules(t *testing.T) map[string]string {
	t.Helper()
	return renderedRulesOf(renderChart(t, monitoringOn...))
}

func TestMonitoringIsOffByDefault(t *testing.T) {
	helm(t, "lint", "--strict", chartDir())
	c := renderChart(t)
	for _, kind := range []string{"ConfigMap", "PodMonitor", "PrometheusRule"} {
		if slices.Contains(c.kinds, kind) {
			t.Errorf("the default values render a %s", kind)
		}
	}
	if !slices.Contains(c.kinds, "Deployment") {
		t.Errorf("the default values render %v, no operator Deployment", c.kinds)
	}
}

func TestMonitoringRendersWhatThePrometheusOperatorAndGrafanaRead(t *testing.T) {
	helm(t, append([]string{"lint", "--strict", chartDir()}, monitoringOn...)...)
	c := renderChart(t, append(slices.Clone(monitoringOn),
		"--set", "monitoring.dashboard.namespace=grafana",
		"--set", "monitoring.dashboard.annotations.grafana_folder=Fleets",
		"--set", "monitoring.podMonitor.labels.release=prom",
		"--set", "monitoring.prometheusRules.labels.release=prom",
		"--set", "monitoring.prometheusRules.consumerLagMessages=500")...)

	if len(c.configMaps) != 1 {
		t.Fatalf("%d ConfigMaps, want the dashboard's", len(c.configMaps))
	}
	cm := c.configMaps[0]
	if cm.Namespace != "grafana" || cm.Labels["grafana_dashboard"] != "1" || cm.Annotations["grafana_folder"] != "Fleets" {
		t.Errorf("dashboard ConfigMap in %q labelled %v annotated %v", cm.Namespace, cm.Labels, cm.Annotations)
	}
	want, err := os.ReadFile(filepath.Join(envtest.RepoRoot(), committedDashboard))
	if err != nil {
		t.Fatal(err)
	}
	if got := cm.Data["fleetingest.json"] + "\n"; got != string(want) {
		t.Errorf("the ConfigMap's fleetingest.json is not %s", committedDashboard)
	}

	for _, name := range []string{fleetPodMonitor, operatorPodMonitor} {
		pm := c.podMonitors[name]
		if pm.Labels["release"] != "prom" || len(pm.Spec.PodMetricsEndpoints) != 1 || pm.Spec.PodMetricsEndpoints[0].Interval != "30s" {
			t.Errorf("PodMonitor %s: labels %v, endpoints %+v", name, pm.Labels, pm.Spec.PodMetricsEndpoints)
		}
	}

	if len(c.rules) != 1 || c.rules[0].Labels["release"] != "prom" {
		t.Fatalf("%d PrometheusRules, want one labelled release=prom", len(c.rules))
	}
	var alerts []string
	for _, g := range c.rules[0].Spec.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			if r.For != nil {
				if _, err := time.ParseDuration(string(*r.For)); err != nil {
					t.Errorf("alert %s: for %q: %v", r.Alert, *r.For, err)
				}
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("alert %s has no %s", r.Alert, a)
				}
			}
		}
	}
	wantAlerts := []string{
		"FleetingestComponentNotReady", "FleetingestConsumerLagGrowing", "FleetingestConsumerMissing", "FleetingestDeadLetterParkingFails",
		"FleetingestDeadLetters", "FleetingestGatewayRefusing", "FleetingestMetricsDown", "FleetingestWriteErrors",
	}
	slices.Sort(alerts)
	if !slices.Equal(alerts, wantAlerts) {
		t.Errorf("alerts %v, want %v (each explained in docs/operations.md)", alerts, wantAlerts)
	}
	if expr := renderedRulesOf(c)["FleetingestConsumerLagGrowing"]; !strings.Contains(expr, "> 500\n") {
		t.Errorf("consumerLagMessages is not the lag alert's threshold: %s", expr)
	}
}

func renderedRulesOf(c chart) map[string]string {
	rules := map[string]string{}
	for i := range c.rules {
		for _, g := range c.rules[i].Spec.Groups {
			for _, r := range g.Rules {
				rules[r.Alert] = r.Expr.String()
			}
		}
	}
	return rules
}

// The PodMonitors select the pods the operator creates, by the labels and port name its
// code gives them (read from package controllers' source, where they are unexported), and
// the operator's pods as the chart labels them.
func TestPodMonitorsSelectThePodsTheOperatorLabels(t *testing.T) {
	consts, names := controllerLabels(t)
	c := renderChart(t, monitoringOn...)

	fleet := c.podMonitors[fleetPodMonitor]
	wantSelector := map[string]string{consts["labelName"]: names, consts["labelManagedBy"]: controllers.ManagedBy}
	if !equalMaps(fleet.Spec.Selector.MatchLabels, wantSelector) || len(fleet.Spec.Selector.MatchExpressions) > 0 {
		t.Errorf("fleet PodMonitor selects %v, want the operator's pods %v", fleet.Spec.Selector, wantSelector)
	}
	if fleet.Spec.JobLabel != consts["labelName"] || fleetJob != `job="`+names+`"` {
		t.Errorf("fleet PodMonitor's job is its pods' %s, the dashboard's %s; the operator names pods %s=%s",
			fleet.Spec.JobLabel, fleetJob, consts["labelName"], names)
	}
	if !fleet.Spec.NamespaceSelector.Any {
		t.Errorf("without watchNamespaces the fleet PodMonitor selects namespaces %+v, want any", fleet.Spec.NamespaceSelector)
	}
	e := fleet.Spec.PodMetricsEndpoints[0]
	if e.Port == nil || *e.Port != consts["metricsPortName"] || e.Path != "/metrics" || e.HonorLabels {
		t.Errorf("fleet PodMonitor scrapes %+v, want port %q, /metrics, without honorLabels", e, consts["metricsPortName"])
	}
	relabel := map[string]string{}
	for _, r := range e.RelabelConfigs {
		for _, s := range r.SourceLabels {
			relabel[r.TargetLabel] = string(s)
		}
	}
	wantRelabel := map[string]string{"fleet": podLabelMeta(consts["labelInstance"]), "component": podLabelMeta(consts["labelComponent"])}
	if !equalMaps(relabel, wantRelabel) {
		t.Errorf("fleet PodMonitor relabels %v, want %v", relabel, wantRelabel)
	}

	op := c.podMonitors[operatorPodMonitor]
	pod := c.deployment.Spec.Template
	for k, v := range op.Spec.Selector.MatchLabels {
		if pod.Labels[k] != v {
			t.Errorf("operator PodMonitor selects %s=%s; the operator's pods are labelled %v", k, v, pod.Labels)
		}
	}
	ope := op.Spec.PodMetricsEndpoints[0]
	if ope.Port == nil || !slices.ContainsFunc(pod.Spec.Containers[0].Ports, func(p corev1.ContainerPort) bool { return p.Name == *ope.Port }) {
		t.Errorf("operator PodMonitor scrapes port %v; the operator's container has %v", ope.Port, pod.Spec.Containers[0].Ports)
	}
	if !ope.HonorLabels || !slices.Equal(op.Spec.NamespaceSelector.MatchNames, []string{"fleetingest-system"}) {
		t.Errorf("operator PodMonitor: honorLabels %v (its series name the fleet's namespace), namespaces %v", ope.HonorLabels, op.Spec.NamespaceSelector.MatchNames)
	}

	watched := renderChart(t, append(slices.Clone(monitoringOn), "--set", "watchNamespaces={fleet-a,fleet-b}")...)
	if ns := watched.podMonitors[fleetPodMonitor].Spec.NamespaceSelector; ns.Any || !slices.Equal(ns.MatchNames, []string{"fleet-a", "fleet-b"}) {
		t.Errorf("with watchNamespaces the fleet PodMonitor selects namespaces %+v", ns)
	}
}

// podLabelMeta is the meta label Prometheus gives a pod's label.
func podLabelMeta(label string) string {
	return "__meta_kubernetes_pod_label_" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, label)
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// controllerLabels reads package controllers' string constants (label keys, port names) and
// the one value it gives the app.kubernetes.io/name label of a fleet's objects.
func controllerLabels(t *testing.T) (consts map[string]string, name string) {
	t.Helper()
	dir := filepath.Join(envtest.RepoRoot(), "controllers")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	consts = map[string]string{}
	var names []string
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GenDecl:
				if n.Tok == token.CONST {
					for _, s := range n.Specs {
						vs := s.(*ast.ValueSpec)
						for i, id := range vs.Names {
							if i < len(vs.Values) {
								if v, ok := stringLit(vs.Values[i]); ok {
									consts[id.Name] = v
								}
							}
						}
					}
				}
			case *ast.KeyValueExpr:
				if k, ok := n.Key.(*ast.Ident); ok && k.Name == "labelName" {
					if v, ok := stringLit(n.Value); ok && !slices.Contains(names, v) {
						names = append(names, v)
					}
				}
			}
			return true
		})
	}
	for _, c := range []string{"labelName", "labelInstance", "labelComponent", "labelManagedBy", "metricsPortName"} {
		if consts[c] == "" {
			t.Fatalf("package controllers has no string constant %s", c)
		}
	}
	if len(names) != 1 {
		t.Fatalf("package controllers gives labelName the values %v, want one", names)
	}
	return consts, names[0]
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}
