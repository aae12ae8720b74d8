package telemetry

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestEnergyTextConvertsToMilliwattHoursRoundingHalfAwayFromZero(t *testing.T) {
	for _, tc := range []struct {
		in   string
		mwh  int64
		want energyText
	}{
		{"0.0000005", 1, energyOK},
		{"0.0000004", 0, energyOK},
		{"0.00000049999999999", 0, energyOK},
		{"0.0000015", 2, energyOK},
		{"0.30000000000000004", 300_000, energyOK},
		{"1e3", 1_000_000_000, energyOK},
		{"1E+3", 1_000_000_000, energyOK},
		{"2.5e-7", 0, energyOK},
		{"5e-7", 1, energyOK},
		{"0.6", 600_000, energyOK},
		{"0.1", 100_000, energyOK},
		{"1.25", 1_250_000, energyOK},
		{"0", 0, energyOK},
		{"-0", 0, energyOK},
		{"-0.0e5", 0, energyOK},
		{"10000", 10_000_000_000, energyOK},
		{"10000.0000004", 10_000_000_000, energyOK},
		{"10000.000001", 0, energyTooLarge},
		{"99999", 0, energyTooLarge},
		{"1e308", 0, energyTooLarge},
		{"123456789012345678901234567890123456789012345", 0, energyTooLarge},
		{"0." + "000000" + "5" + "00000000000000000000000000000000000000000001", 1, energyOK},
		{"1e-400", 0, energyOK},
		{"-1", 0, energyNegative},
		{"-0.0000001", 0, energyNegative},
	} {
		got, kind := parseMWh([]byte(tc.in))
		if got != tc.mwh || kind != tc.want {
			t.Errorf("parseMWh(%s) = %d, %d; want %d, %d", tc.in, got, kind, tc.mwh, tc.want)
		}
	}
}

func TestMWhFromKWhRoundsAFloatOfThePreviousFormat(t *testing.T) {
	for in, want := range map[float64]int64{0.30000000000000004: 300_000, 1.25: 1_250_000, 0.0000005: 1, 17.999999999999996: 18_000_000, 0: 0} {
		if got := MWhFromKWh(in); got != want {
			t.Errorf("MWhFromKWh(%v) = %d, want %d", in, got, want)
		}
	}
	if KWh(18_000_000) != 18 || KWh(3_000_000) != 3 {
		t.Errorf("KWh(18,000,000) = %v, KWh(3,000,000) = %v", KWh(18_000_000), KWh(3_000_000))
	}
}

func TestTheDecoderKeepsEnergyAsWholeMilliwattHours(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		kwh  string
		mwh  int64
		code Class // 0: accepted
	}{
		{"0.0000005", 1, 0},
		{"0.0000004", 0, 0},
		{"0.30000000000000004", 300_000, 0},
		{"1e3", 1_000_000_000, 0},
		{"10000.000001", 0, Implausible},
		{"-0", 0, 0},
		{"-0.5", 0, Implausible},
		{"-1e-9", 0, Implausible},
	} {
		for _, kind := range []string{"meter", "vehicle"} {
			body := `{"meterId":"m-1","kwhConsumedAc":` + tc.kwh + `,"voltage":230,"timestamp":"2026-12-03T09:00:00Z"}`
			if kind == "vehicle" {
				body = `{"vehicleId":"v-1","soc":50,"kwhDeliveredDc":` + tc.kwh + `,"batteryTemp":20,"timestamp":"2026-12-03T09:00:00Z"}`
			}
			r, err := DecodeReading([]byte(body), now, DefaultLimits())
			switch {
			case tc.code != 0 && (err == nil || err.Class != tc.code):
				t.Errorf("%s %s: %v, want class %d", kind, tc.kwh, err, tc.code)
			case tc.code == 0 && err != nil:
				t.Errorf("%s %s: %v", kind, tc.kwh, err)
			case tc.code == 0 && kind == "meter" && r.Meter.GetMwhConsumedAc() != tc.mwh:
				t.Errorf("meter %s: %d mWh, want %d", tc.kwh, r.Meter.GetMwhConsumedAc(), tc.mwh)
			case tc.code == 0 && kind == "vehicle" && r.Vehicle.GetMwhDeliveredDc() != tc.mwh:
				t.Errorf("vehicle %s: %d mWh, want %d", tc.kwh, r.Vehicle.GetMwhDeliveredDc(), tc.mwh)
			}
		}
	}
}

// TestAStreamMessageOfThePreviousVersionDecodes reads testdata/batch-v1.bin, a ReadingBatch
// encoded by the previous version (energy as float kWh only): its energy arrives in mWh.
func TestAStreamMessageOfThePreviousVersionDecodes(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "batch-v1.bin"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := UnmarshalBatch(data)
	if err != nil {
		t.Fatal(err)
	}
	var meters, vehicles []int64
	for _, m := range b.GetMeters() {
		meters = append(meters, m.GetMwhConsumedAc())
	}
	for _, v := range b.GetVehicles() {
		vehicles = append(vehicles, v.GetMwhDeliveredDc())
	}
	if !slices.Equal(meters, []int64{1_250_000, 300_000, 1}) || !slices.Equal(vehicles, []int64{1_080_000, 600_000}) {
		t.Errorf("energy of the previous version's message: meters %v, vehicles %v mWh", meters, vehicles)
	}
	if b.GetVehicles()[0].GetMeterId() != "meter-001" || b.GetMeters()[1].GetTimestampMicros() != 1764756060000000 {
		t.Errorf("other fields changed: %v", b)
	}
}

// TestThisVersionWritesBothEnergyFields keeps ingesters of the previous version reading the
// energy of this version's messages during an upgrade.
func TestThisVersionWritesBothEnergyFields(t *testing.T) {
	r, err := DecodeReading([]byte(`{"meterId":"m-1","kwhConsumedAc":0.6,"voltage":230,"timestamp":"2026-12-03T09:00:00Z"}`), time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if r.Meter.GetMwhConsumedAc() != 600_000 || r.Meter.GetKwhConsumedAc() != 0.6 { //nolint:staticcheck // the previous version's field
		t.Errorf("mWh %d, kWh %v", r.Meter.GetMwhConsumedAc(), r.Meter.GetKwhConsumedAc()) //nolint:staticcheck // the previous version's field
	}
}

func TestACommitNoticeRoundTrips(t *testing.T) {
	h := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	want := []HourVersion{{h, 41}, {h.Add(-time.Hour), 42}}
	data, err := MarshalNotice(3, want)
	if err != nil {
		t.Fatal(err)
	}
	shard, got, err := UnmarshalNotice(data)
	if err != nil || shard != 3 || !slices.Equal(got, want) {
		t.Fatalf("notice read back as shard %d %v (%v), want 3 %v", shard, got, err, want)
	}
	if _, _, err := UnmarshalNotice([]byte{0x12, 0x01, 0x05}); err == nil {
		t.Error("a notice with an hour and no version decoded")
	}
}
