package mappingio_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/api/mappingio"
)

var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// at is t0 plus n hours, as a pointer for an interval's end.
func at(n int) *time.Time { t := t0.Add(time.Duration(n) * time.Hour); return &t }

// now is a row that maps the vehicle from now on; iv one interval of its history.
func now(vehicle, meter string) mappingio.Row {
	return mappingio.Row{VehicleID: vehicle, MeterID: meter}
}

func iv(vehicle, meter string, from int, to *time.Time) mappingio.Row {
	return mappingio.Row{VehicleID: vehicle, MeterID: meter, From: *at(from), To: to}
}

func sameRows(a, b []mappingio.Row) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.VehicleID != y.VehicleID || x.MeterID != y.MeterID || !x.From.Equal(y.From) || (x.To == nil) != (y.To == nil) || (x.To != nil && !x.To.Equal(*y.To)) {
			return false
		}
	}
	return true
}

func TestReadAcceptsWhatExportWritesAndHandWrittenFiles(t *testing.T) {
	tests := []struct {
		name, format, in string
		want             []mappingio.Row
		wantErr          string
	}{
		{"csv with a header", mappingio.CSV, "vehicleId,meterId\nEV-1,meter-1\nEV-2, meter-2\n",
			[]mappingio.Row{now("EV-1", "meter-1"), now("EV-2", "meter-2")}, ""},
		{"csv without a header", mappingio.CSV, "EV-1,meter-1\n", []mappingio.Row{now("EV-1", "meter-1")}, ""},
		{"csv rows of unmapped vehicles are skipped", mappingio.CSV, "EV-1,\nEV-2,meter-2\n", []mappingio.Row{now("EV-2", "meter-2")}, ""},
		{"csv with one column is refused", mappingio.CSV, "EV-1\n", nil, "want vehicleId,meterId"},
		{"an invalid id is refused with its row", mappingio.CSV, "EV-1,meter-1\nbad id,meter-2\n", nil, "mapping 2"},
		{"json without intervals maps from now on", mappingio.JSON, `[{"vehicleId":"EV-1","meterId":"meter-1"}]`,
			[]mappingio.Row{now("EV-1", "meter-1")}, ""},
		{"json intervals are replayed oldest first across vehicles, then mappings from now", mappingio.JSON, `[
			{"vehicleId":"EV-1","meterId":"meter-1","intervals":[
				{"meterId":"meter-0","from":"2026-11-01T00:00:00Z","to":"2026-11-01T05:00:00Z"},
				{"meterId":"meter-1","from":"2026-11-01T05:00:00Z"}]},
			{"vehicleId":"EV-3","meterId":"meter-3"},
			{"vehicleId":"EV-2","intervals":[{"meterId":"meter-2","from":"2026-11-01T02:00:00+02:00","to":"2026-11-01T03:00:00Z"}]}]`,
			[]mappingio.Row{iv("EV-1", "meter-0", 0, at(5)), iv("EV-2", "meter-2", 0, at(3)), iv("EV-1", "meter-1", 5, nil), now("EV-3", "meter-3")}, ""},
		{"json intervals out of order are refused", mappingio.JSON, `[{"vehicleId":"EV-1","intervals":[
			{"meterId":"meter-1","from":"2026-11-02T00:00:00Z","to":"2026-11-03T00:00:00Z"},
			{"meterId":"meter-0","from":"2026-11-01T00:00:00Z","to":"2026-11-01T05:00:00Z"}]}]`, nil, "interval 2 overlaps interval 1"},
		{"json with an open interval before another is refused", mappingio.JSON, `[{"vehicleId":"EV-1","intervals":[
			{"meterId":"meter-0","from":"2026-11-01T00:00:00Z"},
			{"meterId":"meter-1","from":"2026-11-02T00:00:00Z"}]}]`, nil, "interval 2 overlaps interval 1"},
		{"json with an interval ending before it starts is refused", mappingio.JSON, `[{"vehicleId":"EV-1","intervals":[
			{"meterId":"meter-0","from":"2026-11-02T00:00:00Z","to":"2026-11-01T00:00:00Z"}]}]`, nil, "ends before it starts"},
		{"json whose meterId is not its open interval's is refused", mappingio.JSON, `[{"vehicleId":"EV-1","meterId":"meter-1","intervals":[
			{"meterId":"meter-0","from":"2026-11-01T00:00:00Z","to":"2026-11-02T00:00:00Z"}]}]`, nil, "not the meter of an open last interval"},
		{"json with an invalid interval meter is refused", mappingio.JSON, `[{"vehicleId":"EV-1","intervals":[{"meterId":"a b","from":"2026-11-01T00:00:00Z"}]}]`, nil, "mapping 1"},
		{"malformed json is refused", mappingio.JSON, `{"vehicleId":`, nil, "JSON"},
		{"an unknown format is refused", "xml", "", nil, "unknown format"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mappingio.Read(strings.NewReader(tc.in), tc.format)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !sameRows(got, tc.want) {
				t.Fatalf("Read = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestWriteThenReadRoundTrips(t *testing.T) {
	ms := []mappingio.Mapping{
		{VehicleID: "EV-1", MeterID: "meter-2", Intervals: []mappingio.Interval{{MeterID: "meter-1", From: t0, To: at(48)}, {MeterID: "meter-2", From: *at(48)}}},
		{VehicleID: "EV-2", Intervals: []mappingio.Interval{{MeterID: "meter-1", From: t0, To: at(48)}}},
	}
	tests := []struct {
		format string
		want   []mappingio.Row
	}{
		// JSON keeps every interval; CSV the current mappings.
		{mappingio.JSON, []mappingio.Row{iv("EV-1", "meter-1", 0, at(48)), iv("EV-2", "meter-1", 0, at(48)), iv("EV-1", "meter-2", 48, nil)}},
		{mappingio.CSV, []mappingio.Row{now("EV-1", "meter-2")}},
	}
	for _, tc := range tests {
		var buf bytes.Buffer
		if err := mappingio.Write(&buf, tc.format, ms); err != nil {
			t.Fatal(err)
		}
		if tc.format == mappingio.JSON && !strings.Contains(buf.String(), `"to": "2026-11-03T00:00:00Z"`) {
			t.Fatalf("JSON export lost the intervals:\n%s", buf.String())
		}
		got, err := mappingio.Read(&buf, tc.format)
		if err != nil {
			t.Fatal(err)
		}
		if !sameRows(got, tc.want) {
			t.Fatalf("%s: read back %v, want %v", tc.format, got, tc.want)
		}
	}
}
