package deadletter_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
	"github.com/fleetingest/fleetingest/ingester"
	"github.com/fleetingest/fleetingest/ingester/deadletter"
	"github.com/fleetingest/fleetingest/test/natstest"
)

var top = ingester.Topology{Namespace: "test", Fleet: "dl", Shards: 2}

func setup(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL())
	if _, err := ingester.EnsureStreams(t.Context(), js, top, ingester.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	return js
}

var (
	published = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	meter     = telemetry.Reading{Meter: &telemetrypb.MeterReading{
		MeterId: "m-1", MwhConsumedAc: 1_250_500, Voltage: 150.5, TimestampMicros: published.Add(-time.Minute).UnixMicro()}}
	vehicle = telemetry.Reading{Vehicle: &telemetrypb.VehicleReading{
		VehicleId: "EV-1", Soc: 55, MwhDeliveredDc: 2_000_000, BatteryTemp: 31.5, TimestampMicros: published.Add(-time.Minute).UnixMicro(), MeterId: "m-1"}}
)

func refusal(r telemetry.Reading, seq uint64) deadletter.Refusal {
	return deadletter.Refusal{Reading: r, Reason: "ERROR: new row violates check constraint \"voltage_plausible\"\n(SQLSTATE 23514)",
		PublishedAt: published, Stream: top.Stream(1), Seq: seq}
}

func TestParkedReadingsAreListedWithTheirShardReasonAndFirstPublishTime(t *testing.T) {
	js := setup(t)
	ctx := t.Context()
	if err := deadletter.Park(ctx, js, top, 1, []deadletter.Refusal{refusal(meter, 7), refusal(vehicle, 7)}); err != nil {
		t.Fatal(err)
	}
	// Parked again after a crash, before the batch's acknowledgement: deduplicated.
	if err := deadletter.Park(ctx, js, top, 1, []deadletter.Refusal{refusal(meter, 7)}); err != nil {
		t.Fatal(err)
	}
	if err := deadletter.Park(ctx, js, top, 0, []deadletter.Refusal{refusal(meter, 9)}); err != nil {
		t.Fatal(err)
	}
	all, err := deadletter.List(ctx, js, top, deadletter.Filter{Shard: deadletter.AnyShard})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 {
		t.Fatalf("listed %d parked readings, want 3: %+v", len(all), all)
	}
	p := all[0]
	if p.Err != nil || p.Shard != 1 || p.Seq != 1 || !p.PublishedAt.Equal(published) || p.Source != top.Stream(1)+":7" ||
		p.Reason != `ERROR: new row violates check constraint "voltage_plausible" (SQLSTATE 23514)` || p.Reading.DeviceID() != "m-1" ||
		p.Reading.Meter.GetMwhConsumedAc() != 1_250_500 {
		t.Errorf("first parked reading %+v", p)
	}
	data, err := json.Marshal(all[1])
	if err != nil {
		t.Fatal(err)
	}
	want := `"reading":{"vehicleId":"EV-1","soc":55,"kwhDeliveredDc":2,"batteryTemp":31.5,"timestamp":"2026-03-01T11:59:00.123456Z"},"attributedMeterId":"m-1"`
	if !strings.Contains(string(data), want) || !strings.Contains(string(data), `"shard":1`) {
		t.Errorf("JSON %s, want it to hold %s", data, want)
	}
	if got := deadletter.ReadingJSON(meter); got != `{"meterId":"m-1","kwhConsumedAc":1.2505,"voltage":150.5,"timestamp":"2026-03-01T11:59:00.123456Z"}` {
		t.Errorf("meter reading JSON %s", got)
	}
	one, err := deadletter.List(ctx, js, top, deadletter.Filter{Shard: 0})
	if err != nil || len(one) != 1 || one[0].Shard != 0 || one[0].Seq != 3 {
		t.Errorf("shard 0's parked readings %+v %v, want sequence 3", one, err)
	}
	bySeq, err := deadletter.List(ctx, js, top, deadletter.Filter{Shard: deadletter.AnyShard, Seq: 2})
	if err != nil || len(bySeq) != 1 || bySeq[0].Reading.DeviceID() != "EV-1" {
		t.Errorf("sequence 2: %+v %v", bySeq, err)
	}
}

func TestReplayRepublishesWithTheFirstPublishTimeAndRemovesWhatItReplayed(t *testing.T) {
	js := setup(t)
	ctx := t.Context()
	if err := deadletter.Park(ctx, js, top, 1, []deadletter.Refusal{refusal(meter, 7), refusal(vehicle, 8)}); err != nil {
		t.Fatal(err)
	}
	if err := deadletter.Park(ctx, js, top, 0, []deadletter.Refusal{refusal(meter, 9)}); err != nil {
		t.Fatal(err)
	}
	// Something else published on the dead-letter subject: listed, never replayed.
	if _, err := js.Publish(ctx, top.DeadLetterSubject(1), []byte("junk")); err != nil {
		t.Fatal(err)
	}

	r, err := deadletter.Replay(ctx, js, top, deadletter.Filter{Shard: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Replayed != 2 || len(r.Skipped) != 1 || r.Skipped[0].Err == nil {
		t.Fatalf("replay of shard 1 = %+v, want 2 replayed and the junk skipped", r)
	}
	left, err := deadletter.List(ctx, js, top, deadletter.Filter{Shard: deadletter.AnyShard})
	if err != nil || len(left) != 2 || left[0].Shard != 0 || left[1].Err == nil {
		t.Fatalf("left after the replay: %+v %v, want shard 0's reading and the junk", left, err)
	}

	s, err := js.Stream(ctx, top.Stream(1))
	if err != nil {
		t.Fatal(err)
	}
	for seq, want := range map[uint64]string{1: "m-1", 2: "EV-1"} {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		b, err := telemetry.UnmarshalBatch(m.Data)
		if err != nil || telemetry.BatchLen(b) != 1 {
			t.Fatalf("replayed message %d: %v", seq, err)
		}
		got := append(b.GetMeters(), nil)[0].GetMeterId() + append(b.GetVehicles(), nil)[0].GetVehicleId()
		ns, _ := strconv.ParseInt(m.Header.Get(telemetry.HeaderPublishedAt), 10, 64)
		if got != want || !time.Unix(0, ns).Equal(published) {
			t.Errorf("replayed message %d holds %q published at %s, want %q at %s", seq, got, time.Unix(0, ns).UTC(), want, published)
		}
	}

	// One by sequence; a sequence gone is nothing to do.
	if r, err = deadletter.Replay(ctx, js, top, deadletter.Filter{Shard: deadletter.AnyShard, Seq: left[0].Seq}); err != nil || r.Replayed != 1 {
		t.Fatalf("replay of sequence %d: %+v %v", left[0].Seq, r, err)
	}
	if r, err = deadletter.Replay(ctx, js, top, deadletter.Filter{Shard: deadletter.AnyShard, Seq: left[0].Seq}); err != nil || r.Replayed != 0 {
		t.Fatalf("second replay of sequence %d: %+v %v", left[0].Seq, r, err)
	}
}

func TestParkingWithoutADeadLetterStreamFails(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.URL())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := deadletter.Park(ctx, js, top, 0, []deadletter.Refusal{refusal(meter, 1)})
	if err == nil {
		t.Fatal("parked a reading with no dead-letter stream")
	}
	if _, err := deadletter.List(ctx, js, top, deadletter.Filter{Shard: deadletter.AnyShard}); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("listing without a dead-letter stream: %v", err)
	}
}
