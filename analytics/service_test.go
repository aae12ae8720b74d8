package analytics_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/fleetingest/fleetingest/analytics"
	"github.com/fleetingest/fleetingest/analytics/read"
	"github.com/fleetingest/fleetingest/analytics/window"
	analyticsv1 "github.com/fleetingest/fleetingest/api/analytics/v1"
	"github.com/fleetingest/fleetingest/api/analytics/v1/analyticsv1connect"
	"github.com/fleetingest/fleetingest/test/fleetload"
)

func TestAnalytics(t *testing.T) {
	f := newFixture(t)
	end := f.end.Format(time.RFC3339)
	start := f.end.Add(-24 * time.Hour)

	// checkVehicles asks for every vehicle's 24 hours and compares with the oracle.
	checkVehicles := func(t *testing.T) {
		t.Helper()
		sawShared, sawRemap, sawNoEff := false, false, false
		for i := 0; i < nVehicles; i++ {
			id := vehicleID(i)
			res, err := f.connect.GetVehiclePerformance(context.Background(), connect.NewRequest(&analyticsv1.GetVehiclePerformanceRequest{VehicleId: id, Window: "24h", End: end}))
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			got, want := res.Msg, f.oracleVehicle(t, id, start, f.end)
			e := got.GetEnergy()
			if e.GetDcDelivered() != kwh(want.dc) || e.GetAcConsumed() != kwh(want.ac) || int64(got.VehicleReadings) != want.n || int64(got.MeterReadings) != want.mn {
				t.Fatalf("%s: got dc %v ac %v readings %d/%d, want dc %v ac %v readings %d/%d", id, e.GetDcDelivered(), e.GetAcConsumed(), got.VehicleReadings, got.MeterReadings, want.dc, want.ac, want.n, want.mn)
			}
			if want.ac == 0 {
				sawNoEff = true
				if e.EfficiencyRatio != nil {
					t.Fatalf("%s: efficiency %v with no AC", id, e.GetEfficiencyRatio())
				}
			} else if e.GetEfficiencyRatio() != ratio(want.dc, want.ac) {
				t.Fatalf("%s: efficiency %v, want %v", id, e.GetEfficiencyRatio(), want.dc/want.ac)
			}
			if want.temp == nil || !nearFloat(got.GetBattery().GetAvgTemperature(), *want.temp) {
				t.Fatalf("%s: avg temperature %v, want %v", id, got.GetBattery().AvgTemperature, want.temp)
			}
			if got.SharedMeter != want.shared {
				t.Fatalf("%s: sharedMeter %v, want %v", id, got.SharedMeter, want.shared)
			}
			if got.Period != "last_24_hours" {
				t.Fatalf("%s: period %q", id, got.Period)
			}
			sawShared = sawShared || got.SharedMeter
			sawRemap = sawRemap || len(got.Meters) > 1
		}
		if !sawShared || !sawRemap || sawNoEff {
			t.Fatalf("the data does not exercise what it should: shared %v, re-mapped %v, vehicle without AC %v", sawShared, sawRemap, sawNoEff)
		}
	}

	t.Run("per-vehicle performance equals the raw-history computation for every vehicle", checkVehicles)

	t.Run("per-vehicle answers read from memory equal the raw-history computation", func(t *testing.T) {
		// The first questions load the hours in the background; once every shard read of a
		// pass comes from memory, that pass is checked against the oracle.
		deadline := time.Now().Add(time.Minute)
		for {
			memory, postgres := f.vehicleReads(t)
			checkVehicles(t)
			m, p := f.vehicleReads(t)
			if m-memory > 0 && p == postgres {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after a minute, a pass still read %d shards from Postgres (%d from memory)", p-postgres, m-memory)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("per-vehicle answers read from Postgres equal the raw-history computation", func(t *testing.T) {
		// A service that holds only the last hour and brings nothing else into memory.
		prom := prometheus.NewRegistry()
		saved := f.url
		f.url = f.serve(t, t.Context(), prom, read.Config{Recent: time.Hour, Horizon: time.Hour, MaxRawHours: 2})
		f.connect = analyticsv1connect.NewAnalyticsServiceClient(f.http, f.url)
		defer func() { f.url, f.connect = saved, analyticsv1connect.NewAnalyticsServiceClient(f.http, saved) }()
		checkVehicles(t)
		if memory, postgres := reads(t, prom, "vehicle"); memory != 0 || postgres == 0 {
			t.Fatalf("%d shard reads from memory and %d from Postgres, want all from Postgres", memory, postgres)
		}
	})

	t.Run("warm questions send no statement to Postgres", func(t *testing.T) {
		// No notices and a poll an hour apart: once the first questions brought their hours
		// in, every statement the shards see is a question's.
		var statements atomic.Int64
		prom := prometheus.NewRegistry()
		saved := f.url
		f.url = f.serve(t, t.Context(), prom, read.Config{Poll: time.Hour}, func(c *analytics.Config) {
			c.Shards.Tracer = countStatements{&statements}
		})
		f.connect = analyticsv1connect.NewAnalyticsServiceClient(f.http, f.url)
		defer func() { f.url, f.connect = saved, analyticsv1connect.NewAnalyticsServiceClient(f.http, saved) }()
		pass := func() {
			checkVehicles(t)
			for j := 0; j < nMeters; j++ {
				if _, err := f.connect.GetMeterPerformance(t.Context(), connect.NewRequest(&analyticsv1.GetMeterPerformanceRequest{MeterId: meterID(j), End: end})); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := f.connect.ListAlerts(t.Context(), connect.NewRequest(&analyticsv1.ListAlertsRequest{End: end})); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(time.Minute)
		for {
			before := statements.Load()
			pass()
			if statements.Load() == before {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after a minute, a pass of questions still sent %d statements", statements.Load()-before)
			}
			time.Sleep(100 * time.Millisecond)
		}
		before := statements.Load()
		for range 3 {
			pass()
		}
		if n := statements.Load() - before; n != 0 {
			t.Fatalf("three warm passes sent %d statements to Postgres", n)
		}
		if memory, postgres := reads(t, prom, "vehicle"); memory < 3*nVehicles {
			t.Fatalf("%d vehicle shard reads from memory (%d from Postgres) for three passes of %d vehicles", memory, postgres, nVehicles)
		}
	})

	t.Run("other windows and window ends also equal the raw-history computation", func(t *testing.T) {
		for _, c := range []struct{ window, end string }{
			{"90m", f.end.Add(-9*time.Hour - 41*time.Minute).Format(time.RFC3339)},
			{"7h", f.end.Add(-3 * time.Hour).Format(time.RFC3339)}, // ends on an hour boundary
			{"20m", f.end.Add(-10 * time.Hour).Format(time.RFC3339)},
			{"2d", end},
		} {
			w, _ := window.Parse(c.window, c.end, time.Now())
			for _, i := range []int{0, 5, 12, 25, 31, 42, 55, 99, 142, 235} {
				id := vehicleID(i)
				res, err := f.connect.GetVehiclePerformance(context.Background(), connect.NewRequest(&analyticsv1.GetVehiclePerformanceRequest{VehicleId: id, Window: c.window, End: c.end}))
				if err != nil {
					t.Fatalf("%s %s: %v", id, c.window, err)
				}
				want := f.oracleVehicle(t, id, w.Start, w.End)
				e := res.Msg.GetEnergy()
				if e.GetDcDelivered() != kwh(want.dc) || e.GetAcConsumed() != kwh(want.ac) || int64(res.Msg.VehicleReadings) != want.n {
					t.Fatalf("%s window %s end %s: got dc %v ac %v n %d, want dc %v ac %v n %d", id, c.window, c.end, e.GetDcDelivered(), e.GetAcConsumed(), res.Msg.VehicleReadings, want.dc, want.ac, want.n)
				}
				if res.Msg.Period != "last_"+c.window {
					t.Fatalf("period %q for window %s", res.Msg.Period, c.window)
				}
			}
		}
	})

	t.Run("a meter that has reported answers a window without its readings with zeros, not NotFound", func(t *testing.T) {
		before := hoursBefore(f.end, 100).Format(time.RFC3339) // a day well before the data set
		res, err := f.connect.GetMeterPerformance(context.Background(), connect.NewRequest(&analyticsv1.GetMeterPerformanceRequest{MeterId: meterID(0), End: before}))
		if err != nil {
			t.Fatalf("%s before its readings: %v", meterID(0), err)
		}
		if res.Msg.MeterReadings != 0 || res.Msg.VehicleReadings != 0 || res.Msg.Energy.GetAcConsumed() != 0 {
			t.Fatalf("%s before its readings: %+v, want nothing", meterID(0), res.Msg)
		}
	})

	t.Run("per-meter performance equals the raw-history computation for every meter", func(t *testing.T) {
		for j := 0; j < nMeters; j++ {
			id := meterID(j)
			res, err := f.connect.GetMeterPerformance(context.Background(), connect.NewRequest(&analyticsv1.GetMeterPerformanceRequest{MeterId: id, End: end}))
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			got, want := res.Msg, f.oracleMeter(t, id, start, f.end)
			if got.Energy.GetAcConsumed() != kwh(want.ac) || got.Energy.GetDcDelivered() != kwh(want.dc) || int64(got.MeterReadings) != want.mn || int64(got.VehicleReadings) != want.vn || got.UnattributedAc != kwh(want.unattributed) {
				t.Fatalf("%s: got ac %v dc %v n %d/%d unattributed %v, want ac %v dc %v n %d/%d unattributed %v", id,
					got.Energy.GetAcConsumed(), got.Energy.GetDcDelivered(), got.MeterReadings, got.VehicleReadings, got.UnattributedAc,
					want.ac, want.dc, want.mn, want.vn, want.unattributed)
			}
			if len(got.Vehicles) != len(want.vehicles) {
				t.Fatalf("%s: %d vehicles, want %d", id, len(got.Vehicles), len(want.vehicles))
			}
			for _, v := range got.Vehicles {
				w := want.vehicles[v.VehicleId]
				if v.DcDelivered != kwh(w[0]) || v.AcConsumed != kwh(w[1]) {
					t.Fatalf("%s/%s: dc %v ac %v, want %v %v", id, v.VehicleId, v.DcDelivered, v.AcConsumed, w[0], w[1])
				}
			}
		}
	})

	t.Run("alerts equal the raw-history computation over the hours they cover, worst first", func(t *testing.T) {
		// The threshold is between the two middle site efficiencies, so some sites are below
		// and some not, and none sits on it.
		res0, err := f.connect.ListAlerts(context.Background(), connect.NewRequest(&analyticsv1.ListAlertsRequest{Threshold: ptr(100.0), End: end, PageSize: 1000}))
		if err != nil {
			t.Fatal(err)
		}
		hs, he := res0.Msg.HoursStart.AsTime(), res0.Msg.HoursEnd.AsTime()
		if he.Sub(hs) != 24*time.Hour || !he.Equal(window.FloorHour(f.end)) {
			t.Fatalf("alert hours %s..%s", hs, he)
		}
		var effs []float64
		for _, s := range res0.Msg.Sites {
			effs = append(effs, s.EfficiencyRatio)
		}
		sort.Float64s(effs)
		threshold := (effs[len(effs)/2-1] + effs[len(effs)/2]) / 2

		res, err := f.connect.ListAlerts(context.Background(), connect.NewRequest(&analyticsv1.ListAlertsRequest{Threshold: &threshold, End: end, PageSize: 1000}))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Msg.MissingShards) != 0 {
			t.Fatalf("missing shards %v", res.Msg.MissingShards)
		}
		var wantSites []string
		for j := 0; j < nMeters; j++ {
			m := f.oracleMeter(t, meterID(j), hs, he)
			if m.ac > 0 && ratio(m.dc, m.ac) < threshold {
				wantSites = append(wantSites, meterID(j))
			}
		}
		var gotSites []string
		for k, s := range res.Msg.Sites {
			gotSites = append(gotSites, s.MeterId)
			m := f.oracleMeter(t, s.MeterId, hs, he)
			if s.AcConsumed != kwh(m.ac) || s.DcDelivered != kwh(m.dc) {
				t.Fatalf("site %s: ac %v dc %v, want %v %v", s.MeterId, s.AcConsumed, s.DcDelivered, m.ac, m.dc)
			}
			if k > 0 && res.Msg.Sites[k-1].EfficiencyRatio > s.EfficiencyRatio {
				t.Fatal("sites are not worst first")
			}
			var vs []string
			for id := range m.vehicles {
				if m.vehicles[id][0] > 0 {
					vs = append(vs, id)
				}
			}
			sort.Strings(vs)
			if !slices.Equal(vs, s.VehicleIds) {
				t.Fatalf("site %s vehicles %v, want %v", s.MeterId, s.VehicleIds, vs)
			}
		}
		sort.Strings(gotSites)
		if !slices.Equal(gotSites, wantSites) || len(wantSites) == 0 {
			t.Fatalf("sites below %v: got %v, want %v", threshold, gotSites, wantSites)
		}
		var wantVehicles []string
		for i := 0; i < nVehicles; i++ {
			v := f.oracleVehicle(t, vehicleID(i), hs, he)
			if v.ac > 0 && ratio(v.dc, v.ac) < threshold {
				wantVehicles = append(wantVehicles, vehicleID(i))
			}
		}
		var gotVehicles []string
		for k, v := range res.Msg.Vehicles {
			gotVehicles = append(gotVehicles, v.VehicleId)
			w := f.oracleVehicle(t, v.VehicleId, hs, he)
			if v.AcConsumed != kwh(w.ac) || v.DcDelivered != kwh(w.dc) {
				t.Fatalf("vehicle %s: ac %v dc %v, want %v %v", v.VehicleId, v.AcConsumed, v.DcDelivered, w.ac, w.dc)
			}
			if k > 0 && res.Msg.Vehicles[k-1].EfficiencyRatio > v.EfficiencyRatio {
				t.Fatal("vehicles are not worst first")
			}
		}
		sort.Strings(gotVehicles)
		if !slices.Equal(gotVehicles, wantVehicles) || len(wantVehicles) == 0 {
			t.Fatalf("vehicles below %v: got %v, want %v", threshold, gotVehicles, wantVehicles)
		}

		// Paging walks the same lists.
		var pagedSites, pagedVehicles []string
		tok := ""
		for {
			p, err := f.connect.ListAlerts(context.Background(), connect.NewRequest(&analyticsv1.ListAlertsRequest{Threshold: &threshold, End: end, PageSize: 7, PageToken: tok}))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range p.Msg.Sites {
				pagedSites = append(pagedSites, s.MeterId)
			}
			for _, v := range p.Msg.Vehicles {
				pagedVehicles = append(pagedVehicles, v.VehicleId)
			}
			if tok = p.Msg.NextPageToken; tok == "" {
				break
			}
		}
		sort.Strings(pagedSites)
		sort.Strings(pagedVehicles)
		if !slices.Equal(pagedSites, wantSites) || !slices.Equal(pagedVehicles, wantVehicles) {
			t.Fatalf("paging the alerts does not yield the whole lists: sites %v vehicles %v, want %v %v", pagedSites, pagedVehicles, wantSites, wantVehicles)
		}
	})

	t.Run("series equal the raw-history computation hour by hour", func(t *testing.T) {
		for _, i := range []int{3, 15, 42, 77} {
			id := vehicleID(i)
			res, err := f.connect.GetVehicleSeries(context.Background(), connect.NewRequest(&analyticsv1.GetVehicleSeriesRequest{VehicleId: id, Window: "24h", Step: "1h", End: end}))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Msg.Points) != 25 {
				t.Fatalf("%s: %d points, want 25 (two partial edges)", id, len(res.Msg.Points))
			}
			for _, p := range res.Msg.Points {
				w := f.oracleVehicle(t, id, p.Start.AsTime(), p.End.AsTime())
				if p.DcDelivered != kwh(w.dc) || p.AcConsumed != kwh(w.ac) || int64(p.Readings) != w.n {
					t.Fatalf("%s at %s: dc %v ac %v n %d, want %v %v %d", id, p.Start.AsTime(), p.DcDelivered, p.AcConsumed, p.Readings, w.dc, w.ac, w.n)
				}
			}
		}
		for _, j := range []int{5, 41, 110} {
			id := meterID(j)
			res, err := f.connect.GetMeterSeries(context.Background(), connect.NewRequest(&analyticsv1.GetMeterSeriesRequest{MeterId: id, Window: "24h", Step: "3h", End: end}))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range res.Msg.Points {
				w := f.oracleMeter(t, id, p.Start.AsTime(), p.End.AsTime())
				if p.AcConsumed != kwh(w.ac) || p.DcDelivered != kwh(w.dc) || int64(p.Readings) != w.mn {
					t.Fatalf("%s at %s: ac %v dc %v, want %v %v", id, p.Start.AsTime(), p.AcConsumed, p.DcDelivered, w.ac, w.dc)
				}
			}
		}
	})

	t.Run("status is the newest reading and silent devices are listed", func(t *testing.T) {
		for _, i := range []int{0, 12, 31, 100, 235} {
			id := vehicleID(i)
			res, err := f.connect.GetVehicleStatus(context.Background(), connect.NewRequest(&analyticsv1.GetVehicleStatusRequest{VehicleId: id}))
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			var at time.Time
			var soc float64
			var meter string
			if err := f.oracle.QueryRow(context.Background(), `SELECT ts, soc, meter_id FROM vehicle_telemetry_history WHERE vehicle_id = $1 ORDER BY ts DESC LIMIT 1`, id).Scan(&at, &soc, &meter); err != nil {
				t.Fatal(err)
			}
			if !res.Msg.LastUpdatedAt.AsTime().Equal(at) || res.Msg.GetSoc() != soc || res.Msg.MeterId != meter {
				t.Fatalf("%s: status %v, want %s soc %v meter %q", id, res.Msg, at, soc, meter)
			}
		}
		ms, err := f.connect.GetMeterStatus(context.Background(), connect.NewRequest(&analyticsv1.GetMeterStatusRequest{MeterId: meterID(7)}))
		if err != nil {
			t.Fatal(err)
		}
		var at time.Time
		if err := f.oracle.QueryRow(context.Background(), `SELECT max(ts) FROM meter_telemetry_history WHERE meter_id = $1`, meterID(7)).Scan(&at); err != nil {
			t.Fatal(err)
		}
		if !ms.Msg.LastUpdatedAt.AsTime().Equal(at) {
			t.Fatalf("meter status at %s, want %s", ms.Msg.LastUpdatedAt.AsTime(), at)
		}

		cutoff := f.clk.Now().Add(-10 * time.Minute)
		var wantV, wantM []string
		rows, _ := f.oracle.Query(context.Background(), `SELECT vehicle_id FROM vehicle_telemetry_history GROUP BY 1 HAVING max(ts) < $1 ORDER BY 1`, cutoff)
		for rows.Next() {
			var id string
			_ = rows.Scan(&id)
			wantV = append(wantV, id)
		}
		rows, _ = f.oracle.Query(context.Background(), `SELECT meter_id FROM meter_telemetry_history GROUP BY 1 HAVING max(ts) < $1 ORDER BY 1`, cutoff)
		for rows.Next() {
			var id string
			_ = rows.Scan(&id)
			wantM = append(wantM, id)
		}
		var gotV []string
		tok := ""
		for {
			res, err := f.connect.ListSilentVehicles(context.Background(), connect.NewRequest(&analyticsv1.ListSilentRequest{SilentFor: "10m", PageSize: 4, PageToken: tok}))
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range res.Msg.Vehicles {
				gotV = append(gotV, v.VehicleId)
			}
			if tok = res.Msg.NextPageToken; tok == "" {
				break
			}
		}
		sort.Strings(gotV)
		sm, err := f.connect.ListSilentMeters(context.Background(), connect.NewRequest(&analyticsv1.ListSilentRequest{SilentFor: "10m"}))
		if err != nil {
			t.Fatal(err)
		}
		var gotM []string
		for _, m := range sm.Msg.Meters {
			gotM = append(gotM, m.MeterId)
		}
		sort.Strings(gotM)
		if !slices.Equal(gotV, wantV) || !slices.Equal(gotM, wantM) || len(wantV) != 10 || len(wantM) != 5 {
			t.Fatalf("silent vehicles %v meters %v, want %v %v", gotV, gotM, wantV, wantM)
		}
	})

	t.Run("Connect, gRPC, gRPC-Web and REST JSON give the same answer", func(t *testing.T) {
		req := &analyticsv1.GetVehiclePerformanceRequest{VehicleId: vehicleID(12), Window: "24h", End: end}
		var answers []*analyticsv1.GetVehiclePerformanceResponse
		for _, c := range []struct {
			name string
			call func() (*connect.Response[analyticsv1.GetVehiclePerformanceResponse], error)
		}{
			{"connect", func() (*connect.Response[analyticsv1.GetVehiclePerformanceResponse], error) {
				return f.connect.GetVehiclePerformance(context.Background(), connect.NewRequest(req))
			}},
			{"grpc", func() (*connect.Response[analyticsv1.GetVehiclePerformanceResponse], error) {
				return f.grpc.GetVehiclePerformance(context.Background(), connect.NewRequest(req))
			}},
			{"grpc-web", func() (*connect.Response[analyticsv1.GetVehiclePerformanceResponse], error) {
				return f.grpcWeb.GetVehiclePerformance(context.Background(), connect.NewRequest(req))
			}},
		} {
			res, err := c.call()
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			answers = append(answers, res.Msg)
		}
		status, body := f.get(t, "/v1/analytics/performance/"+vehicleID(12)+"?window=24h&end="+end)
		if status != http.StatusOK {
			t.Fatalf("REST: %d %s", status, body)
		}
		var rest analyticsv1.GetVehiclePerformanceResponse
		if err := protojson.Unmarshal(body, &rest); err != nil {
			t.Fatal(err)
		}
		answers = append(answers, &rest)
		// Over HTTP/1.1, the same answer, with its length (not chunked).
		res, err := http.Get(f.url + "/v1/analytics/performance/" + vehicleID(12) + "?window=24h&end=" + end)
		if err != nil {
			t.Fatal(err)
		}
		h1, err := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK || res.ProtoMajor != 1 || res.ContentLength != int64(len(h1)) || len(res.TransferEncoding) > 0 {
			t.Fatalf("HTTP/1.1: %s %d, Content-Length %d for %d bytes, Transfer-Encoding %v, %v", res.Proto, res.StatusCode, res.ContentLength, len(h1), res.TransferEncoding, err)
		}
		var restH1 analyticsv1.GetVehiclePerformanceResponse
		if err := protojson.Unmarshal(h1, &restH1); err != nil {
			t.Fatal(err)
		}
		answers = append(answers, &restH1)
		for i, a := range answers[1:] {
			if !proto.Equal(a, answers[0]) {
				t.Fatalf("answer %d differs:\n%v\n%v", i+1, a, answers[0])
			}
		}

		// Server reflection answers, as grpcurl needs.
		stream := grpcreflect.NewClient(f.http, f.url).NewStream(context.Background())
		defer func() { _, _ = stream.Close() }()
		names, err := stream.ListServices()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(names, protoreflect.FullName(analyticsv1connect.AnalyticsServiceName)) {
			t.Fatalf("reflection lists %v", names)
		}
	})

	t.Run("the seed's mapping and performance flow works over REST with the seed's field names", func(t *testing.T) {
		// The seed's first step, a reading of EV-101 before it is mapped: stored on its own
		// id's shard, unattributed.
		now := f.clk.Now()
		reading := fleetload.VehicleReading{VehicleID: "EV-101", TS: now.Add(-time.Minute), SOC: 85.5, DC: 45_200_000, Temp: 28.5}
		shard := f.smap.ShardOf("EV-101", reading.TS)
		if _, err := f.shardSt[shard].Write(context.Background(), []fleetload.VehicleReading{reading}, nil, 1); err != nil {
			t.Fatal(err)
		}
		status, body := f.do(t, "POST", "/v1/analytics/mappings", `{"vehicleId":"EV-101","meterId":"meter-001"}`)
		var created map[string]any
		_ = json.Unmarshal(body, &created)
		if status != 200 || created["vehicleId"] != "EV-101" || created["meterId"] != "meter-001" || created["message"] != "Vehicle-meter mapping created/updated successfully" {
			t.Fatalf("create: %d %s", status, body)
		}
		status, body = f.get(t, "/v1/analytics/mappings/EV-101")
		var got map[string]any
		_ = json.Unmarshal(body, &got)
		if status != 200 || got["vehicleId"] != "EV-101" || got["meterId"] != "meter-001" {
			t.Fatalf("get: %d %s", status, body)
		}
		status, body = f.get(t, "/v1/analytics/performance/EV-101")
		var perf map[string]any
		_ = json.Unmarshal(body, &perf)
		energy, _ := perf["energy"].(map[string]any)
		battery, _ := perf["battery"].(map[string]any)
		if status != 200 || perf["vehicleId"] != "EV-101" || perf["period"] != "last_24_hours" || energy == nil || battery == nil {
			t.Fatalf("performance: %d %s", status, body)
		}
		if energy["dcDelivered"] != 45.2 || energy["acConsumed"] != 0.0 || battery["avgTemperature"] != 28.5 {
			t.Fatalf("performance: %s, want the unmapped reading's DC and no AC", body)
		}
		if _, ok := energy["efficiencyRatio"]; ok {
			t.Fatalf("efficiency present without AC: %s", body)
		}
		// Fields that hold their zero value are written out, as REST clients expect.
		if perf["meterReadings"] != 0.0 || perf["sharedMeter"] != false {
			t.Fatalf("performance: %s, want meterReadings 0 and sharedMeter false written out", body)
		}

		// Update (PUT) only for a mapped vehicle, then history is kept through DELETE.
		f.clk.Set(f.clk.Now().Add(time.Minute))
		if status, body = f.do(t, "PUT", "/v1/analytics/mappings/EV-101", `{"meterId":"meter-002"}`); status != 200 {
			t.Fatalf("put: %d %s", status, body)
		}
		if status, body = f.do(t, "PUT", "/v1/analytics/mappings/EV-never", `{"meterId":"meter-002"}`); status != 404 {
			t.Fatalf("put on an unmapped vehicle: %d %s", status, body)
		}
		f.clk.Set(f.clk.Now().Add(time.Minute))
		if status, body = f.do(t, "DELETE", "/v1/analytics/mappings/EV-101", ""); status != 200 {
			t.Fatalf("delete: %d %s", status, body)
		}
		status, body = f.get(t, "/v1/analytics/mappings/EV-101")
		var after analyticsv1.MappingResponse
		if err := protojson.Unmarshal(body, &after); err != nil || status != 200 {
			t.Fatalf("get after delete: %d %s", status, body)
		}
		if after.MeterId != "" || len(after.Intervals) != 2 || after.Intervals[1].To == nil || after.Intervals[0].MeterId != "meter-001" {
			t.Fatalf("after delete: %v", &after)
		}

		// The list pages through every mapping in id order.
		var ids []string
		tok := ""
		for {
			status, body = f.get(t, "/v1/analytics/mappings?pageSize=50&pageToken="+tok)
			var page analyticsv1.ListMappingsResponse
			if err := protojson.Unmarshal(body, &page); err != nil || status != 200 {
				t.Fatalf("list: %d %s", status, body)
			}
			for _, m := range page.Mappings {
				ids = append(ids, m.VehicleId)
			}
			if tok = page.NextPageToken; tok == "" {
				break
			}
		}
		if len(ids) != nVehicles+1 || !slices.IsSorted(ids) {
			t.Fatalf("listed %d mappings, want %d in order", len(ids), nVehicles+1)
		}
	})

	t.Run("errors carry the right code and a readable message", func(t *testing.T) {
		for _, c := range []struct {
			path   string
			status int
			says   string
		}{
			{"/v1/analytics/performance/EV-unknown", 404, "no meter mapping"},
			{"/v1/analytics/performance/bad%20id", 400, "not valid"},
			{"/v1/analytics/performance/-x", 400, "not valid"},
			{"/v1/analytics/performance/EV-001?window=abc", 400, "window"},
			{"/v1/analytics/performance/EV-001?window=0h", 400, "window"},
			{"/v1/analytics/performance/EV-001?end=yesterday", 400, "RFC 3339"},
			{"/v1/analytics/meters/meter-999/performance", 404, "never reported"},
			{"/v1/analytics/vehicles/EV-001/series?step=30m", 400, "step"},
			{"/v1/analytics/alerts?threshold=-1", 400, "threshold"},
			{"/v1/analytics/mappings/EV-unknown", 404, "no meter mapping"},
			{"/v1/status/vehicles/EV-unknown", 404, "not reported"},
			{"/v1/status/vehicles?silentFor=soon", 400, "silentFor"},
		} {
			status, body := f.get(t, c.path)
			var e struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(body, &e); err != nil || status != c.status || !strings.Contains(e.Message, c.says) {
				t.Errorf("%s: %d %s, want %d saying %q", c.path, status, body, c.status, c.says)
			}
		}
		_, err := f.connect.GetVehiclePerformance(context.Background(), connect.NewRequest(&analyticsv1.GetVehiclePerformanceRequest{VehicleId: "EV-unknown"}))
		if connect.CodeOf(err) != connect.CodeNotFound {
			t.Fatalf("connect: %v, want not_found", err)
		}
		_, err = f.grpc.GetVehiclePerformance(context.Background(), connect.NewRequest(&analyticsv1.GetVehiclePerformanceRequest{VehicleId: "EV-001", Window: "-3h"}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("grpc: %v, want invalid_argument", err)
		}
	})

	t.Run("with one shard stopped, other shards answer, alerts name the missing shard and its queries are unavailable", func(t *testing.T) {
		const down = 2
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := f.clusters[down].Stop(ctx); err != nil {
			t.Fatal(err)
		}
		// Memory answers for the shard until its next version poll fails: then its questions
		// are unavailable, since readings acknowledged meanwhile wait for it in the stream.
		onDown := func(id string) bool {
			for _, iv := range f.mappings[id].Intervals {
				if f.heldBy(iv.MeterID, down, iv.From, cmp.Or(ptrOr(iv.To), f.end)) {
					return true
				}
			}
			return false
		}
		// The alerts of the day are always in memory: they tell when the shard's poll failed.
		deadline := time.Now().Add(read.DefaultPoll + 2*time.Second) // a poll, and its failing connect
		for {
			res, err := f.connect.ListAlerts(ctx, connect.NewRequest(&analyticsv1.ListAlertsRequest{End: end}))
			if err != nil {
				t.Fatal(err)
			}
			if slices.Equal(res.Msg.MissingShards, []int32{down}) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("alerts still answer for shard %d %s after it stopped", down, read.DefaultPoll+2*time.Second)
			}
			time.Sleep(50 * time.Millisecond)
		}
		var ok, unavailable int
		for i := 10; i < nVehicles; i++ {
			if i >= 30 && i < 35 {
				continue // unmapped mid-window: also on their own id's shard
			}
			id := vehicleID(i)
			// Vehicles 10.. were mapped before the window; their readings in it live on the
			// shards of the meters of their intervals only.
			onDown := onDown(id)
			_, err := f.connect.GetVehiclePerformance(context.Background(), connect.NewRequest(&analyticsv1.GetVehiclePerformanceRequest{VehicleId: id, End: end}))
			switch {
			case !onDown && err == nil:
				ok++
			case onDown && connect.CodeOf(err) == connect.CodeUnavailable:
				unavailable++
				if !strings.Contains(err.Error(), fmt.Sprintf("shard %d", down)) {
					t.Fatalf("%s: %v does not name the shard", id, err)
				}
			default:
				t.Fatalf("%s (on the stopped shard: %v): %v", id, onDown, err)
			}
		}
		if ok == 0 || unavailable == 0 {
			t.Fatalf("%d answered, %d unavailable", ok, unavailable)
		}
		status, body := f.get(t, "/v1/analytics/alerts?threshold=0.85&window=24h&end="+end)
		var alerts analyticsv1.ListAlertsResponse
		if err := protojson.Unmarshal(body, &alerts); err != nil || status != 200 || !slices.Equal(alerts.MissingShards, []int32{down}) {
			t.Fatalf("alerts: %d %s", status, body)
		}
		for _, s := range alerts.Sites {
			if f.heldBy(s.MeterId, down, hoursBefore(f.end, 24), f.end) {
				t.Fatalf("site %s of the stopped shard reported", s.MeterId)
			}
		}
		var downMeter string
		for j := 0; j < nMeters && downMeter == ""; j++ {
			if f.heldBy(meterID(j), down, hoursBefore(f.end, 24), f.end) {
				downMeter = meterID(j)
			}
		}
		if status, body = f.get(t, "/v1/analytics/meters/"+downMeter+"/performance"); status != 503 {
			t.Fatalf("meter on the stopped shard: %d %s", status, body)
		}

		// Readiness does not hang on the stopped shard: a replica taken out of service for it
		// would take the other shards' answers and the mappings with it. Nor does a replica
		// that starts while the shard is down wait for it.
		if status, body = f.get(t, "/readyz"); status != 200 {
			t.Fatalf("readyz with a shard stopped: %d %s", status, body)
		}
		url := f.serve(t, ctx, prometheus.NewRegistry(), read.Config{})
		var upVehicle string
		for i := 10; i < nVehicles && upVehicle == ""; i++ {
			if m := f.mappings[vehicleID(i)]; m.MeterID != "" && len(m.Intervals) == 1 && !f.heldBy(m.MeterID, down, hoursBefore(f.end, 24), f.end) {
				upVehicle = vehicleID(i)
			}
		}
		if upVehicle == "" {
			t.Fatal("no vehicle mapped to one meter on a running shard")
		}
		res, err := http.Get(url + "/v1/analytics/performance/" + upVehicle + "?end=" + end)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("%s from a replica started with a shard stopped: %d", upVehicle, res.StatusCode)
		}
	})
}

func (f *fixture) get(t *testing.T, path string) (int, []byte) {
	return f.do(t, "GET", path, "")
}

func (f *fixture) do(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.url+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}
