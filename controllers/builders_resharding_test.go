package controllers

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/ingester"
)

// mustGrow is placement.Grow for a growth known to be valid.
func mustGrow(t *testing.T, m *placement.ShardMap, shards int, from time.Time) *placement.ShardMap {
	t.Helper()
	grown, err := placement.Grow(m, shards, from)
	if err != nil {
		t.Fatal(err)
	}
	return grown
}

// rolledOutState is a Deployment whose every replica runs its latest template.
func rolledOutState(name string) deploymentState {
	return deploymentState{name: name, desired: 1, ready: 1, generation: 2, observedGeneration: 2, updated: 1, total: 1, availableReplicas: 1}
}

// fleetUp is every Deployment of f rolled out, as changed by mods.
func fleetUp(f fleet, mods ...func(map[string]deploymentState)) *observed {
	obs := &observed{deployments: map[string]deploymentState{}}
	names := []string{gatewayName(f), analyticsName(f)}
	for i := range f.Spec.Shards {
		names = append(names, ingesterName(f, i))
	}
	for _, n := range names {
		obs.deployments[n] = rolledOutState(n)
	}
	for _, m := range mods {
		m(obs.deployments)
	}
	return obs
}

func TestADeploymentHasRolledOutOnlyWhenNoOldPodIsLeft(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		mod                  func(*deploymentState)
		available, rolledOut bool
	}{
		{"every replica on the latest template", func(*deploymentState) {}, true, true},
		{"the new template not yet seen by the Deployment controller", func(d *deploymentState) { d.generation = 3 }, false, false},
		{"old pods still serving while the new one starts", func(d *deploymentState) { d.updated, d.total = 1, 2 }, true, false},
		{"no pod of the latest template yet", func(d *deploymentState) { d.updated = 0 }, true, false},
		{"the new pod ready but not yet available", func(d *deploymentState) { d.availableReplicas = 0 }, true, false},
		{"no pod ready", func(d *deploymentState) { d.ready, d.availableReplicas = 0, 0 }, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := rolledOutState("analytics")
			tc.mod(&d)
			if d.available() != tc.available || d.rolledOut() != tc.rolledOut {
				t.Errorf("available %v rolledOut %v, want %v %v (%s)", d.available(), d.rolledOut(), tc.available, tc.rolledOut, d.rolloutWait())
			}
		})
	}
}

func TestPlanReshardingWritesAVersionOnlyOnceEveryNewShardIsServed(t *testing.T) {
	now := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	f := newFleet(t, 3)
	two := placement.MustShardMap(2)
	coming := mustGrow(t, two, 3, now.Add(30*time.Second))
	inForce := mustGrow(t, two, 3, now.Add(-time.Hour))
	newIngesterStarting := func(ds map[string]deploymentState) {
		ds[ingesterName(f, 2)] = deploymentState{name: ingesterName(f, 2), desired: 1, generation: 1, observedGeneration: 1, updated: 1, total: 1}
	}
	analyticsOnOldPods := func(ds map[string]deploymentState) {
		d := rolledOutState(analyticsName(f))
		d.generation, d.observedGeneration, d.total = 3, 3, 2
		ds[analyticsName(f)] = d
	}
	analyticsUnseen := func(ds map[string]deploymentState) {
		d := rolledOutState(analyticsName(f))
		d.generation = 3
		ds[analyticsName(f)] = d
	}
	cases := []struct {
		name       string
		m          *placement.ShardMap
		obs        *observed
		streamsErr error
		applyErr   error
		want       string // status/reason
		grow       bool
		message    string
	}{
		{"the new shard's ingester is not available yet", two, fleetUp(f, newIngesterStarting), nil, nil,
			"True/ProvisioningShards", false, "growing from 2 to 3 shards: waiting for the new shards' ingesters: fleet-a-ingester-2 0/1 ready"},
		{"the new shard's ingester has never been seen", two, fleetUp(f, func(ds map[string]deploymentState) { delete(ds, ingesterName(f, 2)) }), nil, nil,
			"True/ProvisioningShards", false, "fleet-a-ingester-2"},
		{"the streams are not provisioned", two, fleetUp(f), errors.New("creating stream: insufficient resources"), nil,
			"True/ProvisioningShards", false, "waiting for the new shards' streams (see StreamsReady)"},
		{"an object was refused", two, fleetUp(f), nil, errors.New("applying deployment fleet-a-analytics: forbidden"),
			"True/ProvisioningShards", false, "applying deployment fleet-a-analytics: forbidden"},
		{"analytics still runs pods without the new shard's DSN", two, fleetUp(f, analyticsOnOldPods), nil, nil,
			"True/WaitingForAnalytics", false, "fleet-a-analytics 1/1 replicas updated, 2 pod(s) in all"},
		{"analytics' new template is not yet seen", two, fleetUp(f, analyticsUnseen), nil, nil,
			"True/WaitingForAnalytics", false, "fleet-a-analytics rolling out generation 3"},
		{"every new shard is served: the version is written", two, fleetUp(f), nil, nil, "/", true, ""},
		{"a version written and still to come is not written again", coming, fleetUp(f), nil, nil,
			"True/VersionWritten", false, "shard-map version 2 written: readings stamped from 2026-11-27T08:00:30Z on are placed on 3 shards"},
		{"a version in force completes the growth", inForce, fleetUp(f), nil, nil,
			"False/Complete", false, "the shard map places readings on all 3 shards spec.shards lists (2 version(s))"},
		{"a fleet that never grew is complete", placement.MustShardMap(3), fleetUp(f), nil, nil,
			"False/Complete", false, "(1 version(s))"},
		{"a map with more shards than the spec is reported and left alone", placement.MustShardMap(5), fleetUp(f), nil, nil,
			"False/ShardMapAhead", false, "places readings on 5 shards but spec.shards lists 3: list shards 3..4 again"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			step := planResharding(f, tc.m, tc.obs, tc.streamsErr, tc.applyErr, now)
			if got := string(step.status) + "/" + step.reason; got != tc.want || step.grow != tc.grow {
				t.Errorf("step = %s grow %v, want %s grow %v", got, step.grow, tc.want, tc.grow)
			}
			if !strings.Contains(step.message, tc.message) {
				t.Errorf("message = %q, want it to contain %q", step.message, tc.message)
			}
		})
	}
	if step := planResharding(f, coming, fleetUp(f), nil, nil, now); !step.cutover.Equal(now.Add(30 * time.Second)) {
		t.Errorf("cutover = %v, want the version's from", step.cutover)
	}
}

// The status and the ConfigMap carry the shard map's own JSON, which placement reads back.
func TestTheShardMapIsMirroredAsItsOwnJSON(t *testing.T) {
	m := mustGrow(t, mustGrow(t, placement.MustShardMap(2), 3, time.Date(2026, 3, 1, 0, 0, 0, 123456789, time.UTC)), 5,
		time.Date(2026, 4, 1, 12, 30, 0, 0, time.UTC))
	want, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	st, err := json.Marshal(shardMapStatus(m))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(st, want) {
		t.Errorf("status JSON = %s\nwant the map's %s", st, want)
	}
	back, err := placement.ParseShardMap(st)
	if err != nil || len(back.Versions) != 3 || !back.Versions[1].From.Equal(m.Versions[1].From) || back.Shards() != 5 {
		t.Errorf("status JSON parsed back = %+v, %v", back, err)
	}

	cm, err := shardMapConfigMap(newFleet(t, 5), m)
	if err != nil {
		t.Fatal(err)
	}
	if *cm.Name != "fleet-a-shardmap" || cm.Data[shardMapConfigMapKey] != string(want) || len(cm.OwnerReferences) != 1 {
		t.Errorf("config map %s data %v owners %d", *cm.Name, cm.Data, len(cm.OwnerReferences))
	}
}

func TestAPassRequeuesForTheCutoverOfTheVersionItWrote(t *testing.T) {
	now := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		res  shardMapResult
		want time.Duration
	}{
		{"no version waits", shardMapResult{step: reshardStep{reason: v1alpha1.ReasonReshardingComplete}}, 0},
		{"a version takes effect in 30s", shardMapResult{step: reshardStep{cutover: now.Add(30 * time.Second)}}, 31 * time.Second},
		{"a cutover already past asks for a pass soon", shardMapResult{step: reshardStep{cutover: now.Add(-time.Minute)}}, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.res.untilCutover(now); got != tc.want {
				t.Errorf("untilCutover = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAShardMapAheadOfTheSpecHoldsReady(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC))
	f := newFleet(t, 2)
	obs := fleetUp(f)
	ok := streamsResult{reason: v1alpha1.ReasonProvisioned}
	ahead := placement.MustShardMap(3)
	st := fleetStatus(f, v1alpha1.FleetIngestionStatus{}, obs, ok, shardMapResult{m: ahead, step: planResharding(f, ahead, obs, nil, nil, now.Time)}, nil, now)
	r := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
	if r.Status != metav1.ConditionFalse || r.Reason != v1alpha1.ReasonShardMapAhead || !strings.Contains(r.Message, "list shards 2..2 again") {
		t.Errorf("Ready = %+v, want False/ShardMapAhead saying what to do", r)
	}
	if st.ShardMapVersions != 1 || st.ShardMap.Versions[0].Shards != 3 || st.ShardCount != 2 {
		t.Errorf("status = shard count %d, shard map %d version(s) %+v", st.ShardCount, st.ShardMapVersions, st.ShardMap)
	}

	// While the fleet grows, Ready follows the components alone.
	two := placement.MustShardMap(2)
	growing := newFleet(t, 3)
	gobs := fleetUp(growing, func(ds map[string]deploymentState) { delete(ds, ingesterName(growing, 2)) })
	st = fleetStatus(growing, v1alpha1.FleetIngestionStatus{}, gobs, ok, shardMapResult{m: two, step: planResharding(growing, two, gobs, nil, nil, now.Time)}, nil, now)
	if r := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); r.Reason != v1alpha1.ReasonComponentsNotReady || strings.Contains(r.Message, "Resharding") {
		t.Errorf("Ready while growing = %+v, want the shards named, not Resharding", r)
	}
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionResharding); c.Status != metav1.ConditionTrue || c.Reason != v1alpha1.ReasonProvisioningShards {
		t.Errorf("Resharding = %+v", c)
	}
}

func TestReshardingEvents(t *testing.T) {
	status := func(reason, message string) v1alpha1.FleetIngestionStatus {
		return v1alpha1.FleetIngestionStatus{Conditions: []metav1.Condition{{Type: v1alpha1.ConditionResharding, Reason: reason, Message: message}}}
	}
	for _, tc := range []struct {
		name     string
		old, cur v1alpha1.FleetIngestionStatus
		grown    bool
		want     []string
	}{
		{"a version written by the pass", status(v1alpha1.ReasonWaitingForAnalytics, "waiting"), status(v1alpha1.ReasonVersionWritten, "version 2 written"), true,
			[]string{"Normal ShardMapGrown version 2 written"}},
		{"a version written before, seen again after an outage, says nothing", status(v1alpha1.ReasonNATSUnreachable, "down"),
			status(v1alpha1.ReasonVersionWritten, "version 2 written"), false, nil},
		{"the steps before the write say nothing", status(v1alpha1.ReasonProvisioningShards, "a"), status(v1alpha1.ReasonWaitingForAnalytics, "b"), false, nil},
		{"a map ahead of the spec warns", v1alpha1.FleetIngestionStatus{}, status(v1alpha1.ReasonShardMapAhead, "list shards 2..2 again"), false,
			[]string{"Warning ShardMapAhead list shards 2..2 again"}},
		{"and warns once", status(v1alpha1.ReasonShardMapAhead, "list shards 2..2 again"), status(v1alpha1.ReasonShardMapAhead, "list shards 2..2 again"), false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, e := range passEvents(tc.old, tc.cur, ingester.Provisioned{}, nil, tc.grown) {
				got = append(got, e.typ+" "+e.reason+" "+e.note)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("events = %q, want %q", got, tc.want)
			}
		})
	}
}
