package controllers

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/test/envtest"
)

// startOperator runs the reconciler under a manager watching the harness's namespace, as
// the operator command wires it; it stops when the test ends.
func (h *harness) startOperator(cfg Config) {
	h.t.Helper()
	mgr, err := ctrl.NewManager(kube.Config, ctrl.Options{
		Scheme:                 envtest.Scheme(),
		Cache:                  CacheOptions([]string{h.ns}),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	cfg.DefaultImage = "fleetingest:test"
	cfg.NATSRequestTimeout = 3 * time.Second
	cfg.Registerer = prometheus.NewRegistry()
	r := NewReconciler(mgr.GetClient(), mgr.GetAPIReader(), h.natsPool, mgr.GetEventRecorder("fleetingest-operator"), nil, cfg)
	if err := r.SetupWithManager(mgr); err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("manager: %v", err)
		}
	})
}

// passes is the number of reconcile passes the FleetIngestion controller has run in this
// process, from controller-runtime's own counter.
func passes(t *testing.T) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "fleetingestion" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// quiet waits until no pass has run for a second and returns the count then.
func quiet(t *testing.T) float64 {
	t.Helper()
	last := passes(t)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(time.Second)
		n := passes(t)
		if n == last {
			return n
		}
		last = n
	}
	t.Fatal("the controller never went quiet")
	return 0
}

// A status write starts no pass (the operator writes it itself, once per pass); a change to
// the spec or to an annotation does.
func TestOnlySpecAndAnnotationChangesStartAPass(t *testing.T) {
	h := newHarness(t)
	h.startOperator(Config{})
	fi := h.create(h.fleetIngestion("watch", 1))
	waitFor(t, 30*time.Second, "the first status", func() bool {
		fi = h.get(fi.Name)
		return meta.IsStatusConditionTrue(fi.Status.Conditions, v1alpha1.ConditionStreamsReady)
	})
	n := quiet(t)

	base := fi.DeepCopy()
	meta.SetStatusCondition(&fi.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionGatewayReady, Status: metav1.ConditionFalse,
		Reason: v1alpha1.ReasonDeploymentsProgressing, Message: "a message written by an earlier pass"})
	if err := h.c.Status().Patch(h.ctx, fi, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if got := passes(t); got != n {
		t.Errorf("a status write started %v pass(es), want none", got-n)
	}

	for _, change := range []struct {
		what string
		mod  func(*v1alpha1.FleetIngestion)
	}{
		{"an annotation", func(fi *v1alpha1.FleetIngestion) {
			fi.Annotations = map[string]string{"example.com/touched": time.Now().Format(time.RFC3339Nano)}
		}},
		{"the spec", func(fi *v1alpha1.FleetIngestion) { fi.Spec.Gateway.Replicas = ptr.To[int32](2) }},
	} {
		fi = h.get(fi.Name)
		base := fi.DeepCopy()
		change.mod(fi)
		if err := h.c.Patch(h.ctx, fi, client.MergeFrom(base)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "a pass after a change to "+change.what, func() bool { return passes(t) > n })
		n = quiet(t)
	}
}

// While NATS is down, passes come at the backoff's pace: the status each failed pass
// writes (its message naming the servers tried) does not start the next one at once.
func TestANATSOutageIsRetriedAtTheBackoffsPace(t *testing.T) {
	h := newHarness(t)
	h.startOperator(Config{RetryBaseDelay: time.Second})
	n := passes(t)
	h.create(h.fleetIngestion("outage", 1, func(fi *v1alpha1.FleetIngestion) {
		// One server that does not resolve: which error the pass reports depends on the
		// order the client tried them in, so the status message changes from pass to pass.
		fi.Spec.NATS.URL = "nats://127.0.0.1:1,nats://nats-1.invalid:4222,nats://127.0.0.1:3"
	}))
	time.Sleep(5 * time.Second)
	// Backoff 1s, 2s, 4s: passes at 0, 1 and 3 s.
	if got := passes(t) - n; got < 2 || got > 4 {
		t.Errorf("%v passes in 5s of an outage, want 3 (backoff 1s, 2s, 4s)", got)
	}
	c := condition(t, h.get("outage"), v1alpha1.ConditionStreamsReady)
	if c.Reason != v1alpha1.ReasonNATSUnreachable {
		t.Errorf("StreamsReady = %+v", c)
	}
}
