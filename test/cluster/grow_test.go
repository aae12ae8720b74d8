package cluster_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/api/v1alpha1"
	"github.com/fleetingest/fleetingest/controllers"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/test/natstest"
)

// growByOneShard appends a shard to spec.shards: the operator provisions its stream and
// ingester, rolls analytics onto every shard's DSN and writes the shard map's version a
// lead ahead, while the running ingesters and gateways keep their pods. From the cutover on,
// a meter and a vehicle the new version places on the new shard are stored in its database
// and analytics answers for them, and still for the readings sent before the growth.
func (s *scenario) growByOneShard() {
	s.t.Helper()
	before := s.podNames()
	shard := s.addShardDatabase()
	s.patchFleet(func(fi *v1alpha1.FleetIngestion) {
		fi.Spec.Shards = append(fi.Spec.Shards, v1alpha1.ShardSpec{DSNSecretRef: v1alpha1.SecretKeyRef{Name: fmt.Sprintf("pg-%d-dsn", shard), Key: "dsn"}})
	})
	m := s.waitForShardMapVersion(shard + 1)
	s.waitForRollout("the fleet grown by a shard")
	s.checkEvents(controllers.EventShardMapGrown)
	after := s.podNames()
	for _, d := range []string{gateway, ingesterName(0), ingesterName(1)} {
		if !slices.Equal(after[d], before[d]) {
			s.t.Errorf("%s rolled (%v → %v) when the fleet grew", d, before[d], after[d])
		}
	}
	if slices.Equal(after[analytics], before[analytics]) {
		s.t.Errorf("analytics still runs %v, started before the new shard's DSN was listed", after[analytics])
	}

	// Readings stamped from the cutover on are placed by the new version.
	ts := m.Versions[len(m.Versions)-1].From.Truncate(time.Second).Add(time.Second)
	if wait := time.Until(ts); wait > 0 {
		time.Sleep(wait)
	}
	meterID, vehicle := idsOnShard(m, shard, ts)
	s.sendAPair(meterID, vehicle, ts)
	s.eventually(30*time.Second, "the readings in the new shard's database", func() error {
		return countRows(s, s.dsns[shard], meterID, vehicle)
	})
	for _, pair := range pairs(s.t) {
		s.waitForAnswer(pair[1])
	}
}

// waitForShardMapVersion waits until the Resharding condition says the version for shards
// shards is written (or already in force), checks that the status, the ConfigMap and the map
// in NATS agree, and returns the map.
func (s *scenario) waitForShardMapVersion(shards int) *placement.ShardMap {
	s.t.Helper()
	var fi *v1alpha1.FleetIngestion
	s.eventually(2*time.Minute, fmt.Sprintf("the shard-map version for %d shards", shards), func() error {
		var err error
		if fi, err = s.fleet(); err != nil {
			return err
		}
		c := meta.FindStatusCondition(fi.Status.Conditions, v1alpha1.ConditionResharding)
		if c == nil || (c.Reason != v1alpha1.ReasonVersionWritten && c.Reason != v1alpha1.ReasonReshardingComplete) || fi.Status.ShardCount != int32(shards) {
			return fmt.Errorf("resharding %+v, %d shard(s) in the status", c, fi.Status.ShardCount)
		}
		return nil
	})
	var cm corev1.ConfigMap
	if err := s.c.Get(s.ctx, types.NamespacedName{Namespace: fleetNamespace, Name: fleetName + "-shardmap"}, &cm); err != nil {
		s.t.Fatal(err)
	}
	_, js := natstest.Connect(s.t, natsSrv.URL())
	inNATS, _, err := ingester.ReadShardMap(s.ctx, js, ingester.Topology{Namespace: fleetNamespace, Fleet: fleetName, Shards: shards})
	if err != nil {
		s.t.Fatal(err)
	}
	want, _ := inNATS.Marshal()
	status, _ := json.Marshal(fi.Status.ShardMap)
	if cm.Data["shardmap.json"] != string(want) || !bytes.Equal(status, want) {
		s.t.Errorf("shard map in NATS %s\nin the ConfigMap %s\nin the status %s", want, cm.Data["shardmap.json"], status)
	}
	if len(inNATS.Versions) != 2 || inNATS.Shards() != shards || fi.Status.ShardMapVersions != 2 {
		s.t.Fatalf("shard map %s, %d version(s) in the status: want a second version for %d shards", want, fi.Status.ShardMapVersions, shards)
	}
	return inNATS
}

// idsOnShard returns a meter id and a vehicle id that m places on shard at t.
func idsOnShard(m *placement.ShardMap, shard int, t time.Time) (meterID, vehicle string) {
	for i := 0; meterID == "" || vehicle == ""; i++ {
		if id := fmt.Sprintf("meter-grown-%d", i); meterID == "" && m.ShardOf(id, t) == shard {
			meterID = id
		}
		if id := fmt.Sprintf("EV-grown-%d", i); vehicle == "" && m.ShardOf(id, t) == shard {
			vehicle = id
		}
	}
	return meterID, vehicle
}

// sendAPair maps vehicle to meterID from an hour before ts, posts a reading of each stamped
// ts and waits for analytics to answer with them.
func (s *scenario) sendAPair(meterID, vehicle string, ts time.Time) {
	s.t.Helper()
	gw := s.node.Pods(fleetNamespace, gateway)[0].URL("http")
	an := s.node.Pods(fleetNamespace, analytics)[0].URL("http")
	mapping := fmt.Sprintf(`{"vehicleId":%q,"meterId":%q,"from":%q}`, vehicle, meterID, ts.Add(-time.Hour).Format(time.RFC3339))
	if code, body := s.post(an+"/v1/analytics/mappings", s.adminToken, mapping); code != http.StatusOK {
		s.t.Fatalf("mapping %s to %s: %d %s", vehicle, meterID, code, body)
	}
	stamp := ts.UTC().Format(time.RFC3339)
	for _, reading := range []string{
		fmt.Sprintf(`{"meterId":%q,"kwhConsumedAc":1.2,"voltage":231.5,"timestamp":%q}`, meterID, stamp),
		fmt.Sprintf(`{"vehicleId":%q,"soc":55,"kwhDeliveredDc":1.0,"batteryTemp":24,"timestamp":%q}`, vehicle, stamp),
	} {
		if code, body := s.post(gw+"/v1/telemetry", s.deviceToken, reading); code != http.StatusAccepted {
			s.t.Fatalf("POST /v1/telemetry %s: %d %s", reading, code, body)
		}
	}
	s.waitForAnswer(vehicle)
}

// waitForAnswer waits for analytics to answer a vehicle's 24 h performance with the AC and
// DC of the one pair of readings sent for it.
func (s *scenario) waitForAnswer(vehicle string) {
	s.t.Helper()
	an := s.node.Pods(fleetNamespace, analytics)[0].URL("http")
	s.eventually(30*time.Second, "analytics to answer for "+vehicle, func() error {
		var perf struct {
			Energy map[string]float64 `json:"energy"`
		}
		if err := json.Unmarshal([]byte(s.get(an+"/v1/analytics/performance/"+vehicle+"?window=24h", s.adminToken)), &perf); err != nil {
			return err
		}
		if perf.Energy["acConsumed"] != 1.2 || perf.Energy["dcDelivered"] != 1.0 {
			return fmt.Errorf("energy of %s = %v, want AC 1.2 and DC 1.0", vehicle, perf.Energy)
		}
		return nil
	})
}

// countRows checks that a shard's database holds the meter's and the vehicle's readings.
func countRows(s *scenario, dsn, meterID, vehicle string) error {
	conn, err := pgx.Connect(s.ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(s.ctx)
	var meters, vehicles int
	err = conn.QueryRow(s.ctx, `SELECT (SELECT count(*) FROM meter_telemetry_history WHERE meter_id = $1),
		(SELECT count(*) FROM vehicle_telemetry_history WHERE vehicle_id = $2)`, meterID, vehicle).Scan(&meters, &vehicles)
	if err != nil {
		return err
	}
	if meters != 1 || vehicles != 1 {
		return errors.New("the new shard's database does not hold the pair's readings yet")
	}
	return nil
}
