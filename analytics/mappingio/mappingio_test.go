package mappingio_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/analytics/mappingio"
)

func TestReadAcceptsWhatExportWritesAndHandWrittenFiles(t *testing.T) {
	tests := []struct {
		name, format, in string
		want             []mappingio.Row
		wantErr          string
	}{
		{"csv with a header", mappingio.CSV, "vehicleId,meterId\nEV-1,meter-1\nEV-2, meter-2\n",
			[]mappingio.Row{{"EV-1", "meter-1"}, {"EV-2", "meter-2"}}, ""},
		{"csv without a header", mappingio.CSV, "EV-1,meter-1\n", []mappingio.Row{{"EV-1", "meter-1"}}, ""},
		{"csv rows of unmapped vehicles are skipped", mappingio.CSV, "EV-1,\nEV-2,meter-2\n", []mappingio.Row{{"EV-2", "meter-2"}}, ""},
		{"csv with one column is refused", mappingio.CSV, "EV-1\n", nil, "want vehicleId,meterId"},
		{"an invalid id is refused with its row", mappingio.CSV, "EV-1,meter-1\nbad id,meter-2\n", nil, "mapping 2"},
		{"json with intervals ignores them", mappingio.JSON, `[{"vehicleId":"EV-1","meterId":"meter-1","intervals":[{"meterId":"meter-0","from":"2026-11-01T00:00:00Z","to":"2026-11-02T00:00:00Z"}]}]`,
			[]mappingio.Row{{"EV-1", "meter-1"}}, ""},
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
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("Read = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestWriteThenReadRoundTripsCurrentMappings(t *testing.T) {
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	to := from.Add(48 * time.Hour)
	ms := []mappingio.Mapping{
		{VehicleID: "EV-1", MeterID: "meter-2", Intervals: []mappingio.Interval{{MeterID: "meter-1", From: from, To: &to}, {MeterID: "meter-2", From: to}}},
		{VehicleID: "EV-2", Intervals: []mappingio.Interval{{MeterID: "meter-1", From: from, To: &to}}},
	}
	for _, format := range []string{mappingio.JSON, mappingio.CSV} {
		var buf bytes.Buffer
		if err := mappingio.Write(&buf, format, ms); err != nil {
			t.Fatal(err)
		}
		got, err := mappingio.Read(&buf, format)
		if err != nil {
			t.Fatal(err)
		}
		if want := []mappingio.Row{{"EV-1", "meter-2"}}; !slices.Equal(got, want) {
			t.Fatalf("%s: read back %v, want %v", format, got, want)
		}
	}
	var buf bytes.Buffer
	if err := mappingio.Write(&buf, mappingio.JSON, ms); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"to": "2026-11-03T00:00:00Z"`) {
		t.Fatalf("JSON export lost the intervals:\n%s", buf.String())
	}
}
