package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fleetingest/fleetingest/api/placement"
	"github.com/fleetingest/fleetingest/ingester/registry"
)

// metersOnShards returns a meter id on each of shards 0 and 1.
func metersOnShards(m *placement.SlotMap) [2]string {
	var out [2]string
	for i := 0; out[0] == "" || out[1] == ""; i++ {
		id := fmt.Sprintf("site-%d", i)
		if out[m.ShardOf(id)] == "" {
			out[m.ShardOf(id)] = id
		}
	}
	return out
}

// vehicleShard returns the shard that holds the vehicle reading at ts, and its meter_id.
func vehicleShard(t *testing.T, pools []*pgxpool.Pool, vehicle string, ts time.Time) (int, string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for i, p := range pools {
			var meter string
			err := p.QueryRow(context.Background(),
				`SELECT meter_id FROM vehicle_telemetry_history WHERE vehicle_id = $1 AND ts = $2`, vehicle, ts).Scan(&meter)
			if err == nil {
				return i, meter
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("reading of %s at %s never landed", vehicle, ts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRemappingMovesLaterReadingsAndKeepsLateOnesWhereTheyBelong(t *testing.T) {
	s := startStack(t, nil)
	pools := shardPools(t, s)
	slotMap := placement.MustSlotMap(2)
	meters := metersOnShards(slotMap)
	const vehicle = "EV-remap"

	post := func(ts time.Time) {
		t.Helper()
		resp := postJSON(t, s.URL()+"/v1/telemetry", map[string]any{
			"vehicleId": vehicle, "soc": 50, "kwhDeliveredDc": 1.5, "batteryTemp": 25, "timestamp": ts.Format(time.RFC3339Nano),
		})
		if resp.Code != http.StatusAccepted {
			t.Fatalf("posting reading at %s: %d %s", ts, resp.Code, resp.Body)
		}
	}
	mapTo := func(meter string) registry.Mapping {
		t.Helper()
		resp := postJSON(t, s.URL()+"/v1/analytics/mappings", map[string]string{"vehicleId": vehicle, "meterId": meter})
		if resp.Code != http.StatusOK {
			t.Fatalf("mapping to %s: %d %s", meter, resp.Code, resp.Body)
		}
		var m registry.Mapping
		resp.json(t, &m)
		return m
	}

	first := mapTo(meters[0])
	time.Sleep(time.Second)
	before := first.Intervals[0].From.Add(200 * time.Millisecond).Truncate(time.Microsecond)
	post(before)
	if shard, meter := vehicleShard(t, pools, vehicle, before); shard != 0 || meter != meters[0] {
		t.Fatalf("reading while mapped to %s landed on shard %d attributed to %q", meters[0], shard, meter)
	}

	second := mapTo(meters[1])
	change := second.Intervals[len(second.Intervals)-1].From
	time.Sleep(time.Second) // the promise: re-routed within 1s
	after := change.Add(time.Millisecond).Truncate(time.Microsecond)
	post(after)
	if shard, meter := vehicleShard(t, pools, vehicle, after); shard != 1 || meter != meters[1] {
		t.Errorf("reading after the re-mapping landed on shard %d attributed to %q, want shard 1 and %s", shard, meter, meters[1])
	}

	// A late reading from before the change: routed by the mapping in force at its own time.
	late := change.Add(-time.Millisecond).Truncate(time.Microsecond)
	post(late)
	if shard, meter := vehicleShard(t, pools, vehicle, late); shard != 0 || meter != meters[0] {
		t.Errorf("late reading from before the change landed on shard %d attributed to %q, want shard 0 and %s", shard, meter, meters[0])
	}
	// And one from before any mapping: the vehicle's own shard, no meter.
	unmapped := first.Intervals[0].From.Add(-time.Minute).Truncate(time.Microsecond)
	post(unmapped)
	if shard, meter := vehicleShard(t, pools, vehicle, unmapped); shard != slotMap.ShardOf(vehicle) || meter != "" {
		t.Errorf("reading from before any mapping landed on shard %d attributed to %q, want shard %d and none", shard, meter, slotMap.ShardOf(vehicle))
	}
}

var twoShards = placement.MustSlotMap(2)
