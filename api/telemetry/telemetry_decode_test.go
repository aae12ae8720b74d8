package telemetry

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
)

var testNow = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

const (
	goodMeter   = `{"meterId":"meter-001","kwhConsumedAc":12.5,"voltage":230.1,"timestamp":"2026-11-20T11:59:00Z"}`
	goodVehicle = `{"vehicleId":"EV-101","soc":55,"kwhDeliveredDc":10.75,"batteryTemp":31.5,"timestamp":"2026-11-20T11:59:00.123456789+01:00"}`
)

func TestDecodeReadingAcceptsBothKinds(t *testing.T) {
	r, err := DecodeReading([]byte(goodMeter), testNow, DefaultLimits())
	if err != nil {
		t.Fatalf("meter refused: %v", err)
	}
	if r.Kind() != KindMeter || r.Meter.GetMeterId() != "meter-001" || r.Meter.GetMwhConsumedAc() != 12_500_000 || r.Meter.GetVoltage() != 230.1 {
		t.Fatalf("meter decoded as %+v", r.Meter)
	}
	if want := time.Date(2026, 11, 20, 11, 59, 0, 0, time.UTC).UnixMicro(); r.TimestampMicros() != want {
		t.Fatalf("meter timestamp %d, want %d", r.TimestampMicros(), want)
	}

	r, err = DecodeReading([]byte(" \n"+goodVehicle+"\t\r\n"), testNow, DefaultLimits())
	if err != nil {
		t.Fatalf("vehicle refused: %v", err)
	}
	v := r.Vehicle
	if r.Kind() != KindVehicle || v.GetVehicleId() != "EV-101" || v.GetSoc() != 55 || v.GetMwhDeliveredDc() != 10_750_000 || v.GetBatteryTemp() != 31.5 || v.GetMeterId() != "" {
		t.Fatalf("vehicle decoded as %+v", v)
	}
	// +01:00 is one hour ahead of UTC; the nanoseconds are truncated to microseconds.
	if want := time.Date(2026, 11, 20, 10, 59, 0, 123456000, time.UTC); !r.Time().Equal(want) {
		t.Fatalf("vehicle time %s, want %s", r.Time(), want)
	}
}

func TestDecodeReadingAcceptsEscapedNamesAndValues(t *testing.T) {
	in := `{"\u006deterId":"met\u0065r-1","kwhConsumedAc":1e1,"voltage":-0,"timestamp":"2026-11-20T11:00:00.5Z"}`
	r, err := DecodeReading([]byte(in), testNow, DefaultLimits())
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	if r.Meter.GetMeterId() != "meter-1" || r.Meter.GetMwhConsumedAc() != 10_000_000 {
		t.Fatalf("decoded %+v", r.Meter)
	}
	if got := r.Time(); got.Nanosecond() != 500_000_000 {
		t.Fatalf("fraction lost: %s", got)
	}
}

func TestDecodeReadingRefuses(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		class Class
		field string // the field the first violation names
	}{
		{"an empty body is not JSON", ``, Malformed, ""},
		{"plain text is not JSON", `hello`, Malformed, ""},
		{"an array is not a reading", `[` + goodMeter + `]`, Malformed, ""},
		{"a truncated object is not JSON", goodMeter[:40], Malformed, ""},
		{"a missing colon is not JSON", `{"meterId" "m"}`, Malformed, ""},
		{"a trailing comma is not JSON", `{"meterId":"m",}`, Malformed, ""},
		{"a second object is trailing data", goodMeter + goodMeter, Malformed, ""},
		{"garbage after the object is trailing data", goodMeter + ` x`, Malformed, ""},
		{"an unterminated string is not JSON", `{"meterId":"m`, Malformed, ""},
		{"a raw control character in a string is not JSON", "{\"meterId\":\"m\x01\"}", Malformed, ""},
		{"invalid UTF-8 is not JSON", "{\"meterId\":\"m\xff\"}", Malformed, ""},
		{"a bad escape is not JSON", `{"meterId":"m\x"}`, Malformed, ""},
		{"a number with a leading zero is not JSON", `{"meterId":"m","kwhConsumedAc":01,"voltage":1,"timestamp":"2026-11-20T11:00:00Z"}`, Malformed, ""},
		{"a number without digits after the point is not JSON", `{"meterId":"m","kwhConsumedAc":1.,"voltage":1,"timestamp":"2026-11-20T11:00:00Z"}`, Malformed, ""},
		{"NaN is not JSON", `{"meterId":"m","kwhConsumedAc":NaN,"voltage":1,"timestamp":"2026-11-20T11:00:00Z"}`, Malformed, ""},
		{"a number as a string is the wrong type", `{"meterId":"m","kwhConsumedAc":"1","voltage":1,"timestamp":"2026-11-20T11:00:00Z"}`, Malformed, "kwhConsumedAc"},
		{"null is the wrong type", `{"vehicleId":"v","soc":null,"kwhDeliveredDc":1,"batteryTemp":20,"timestamp":"2026-11-20T11:00:00Z"}`, Malformed, "soc"},
		{"a numeric id is the wrong type", `{"meterId":42,"kwhConsumedAc":1,"voltage":1,"timestamp":"2026-11-20T11:00:00Z"}`, Malformed, "meterId"},
		{"a numeric timestamp is the wrong type", `{"meterId":"m","kwhConsumedAc":1,"voltage":1,"timestamp":1763640000}`, Malformed, "timestamp"},
		{"an object value is the wrong type", `{"vehicleId":"v","soc":{},"kwhDeliveredDc":1,"batteryTemp":20,"timestamp":"2026-11-20T11:00:00Z"}`, Malformed, "soc"},
		{"an unknown field", `{"meterId":"m","kwhConsumedAc":1,"voltage":1,"timestamp":"2026-11-20T11:00:00Z","extra":1}`, Malformed, "extra"},
		{"field names are case-sensitive", `{"MeterId":"m","kwhConsumedAc":1,"voltage":1,"timestamp":"2026-11-20T11:00:00Z"}`, Malformed, "MeterId"},
		{"a duplicate field", `{"meterId":"m","kwhConsumedAc":1,"kwhConsumedAc":2,"voltage":1,"timestamp":"2026-11-20T11:00:00Z"}`, Malformed, "kwhConsumedAc"},
		{"a duplicate field spelled with an escape", `{"meterId":"m","kwhConsumedAc":1,"voltage":1,"timestamp":"2026-11-20T11:00:00Z","\u0074imestamp":"2026-11-20T11:00:00Z"}`, Malformed, "timestamp"},
		{"a missing field", `{"meterId":"m","kwhConsumedAc":1,"timestamp":"2026-11-20T11:00:00Z"}`, Malformed, "voltage"},
		{"a missing timestamp", `{"vehicleId":"v","soc":1,"kwhDeliveredDc":1,"batteryTemp":20}`, Malformed, "timestamp"},
		{"both ids", `{"meterId":"m","vehicleId":"v","kwhConsumedAc":1,"voltage":1,"timestamp":"2026-11-20T11:00:00Z"}`, Malformed, "meterId"},
		{"neither id", `{"kwhConsumedAc":1,"voltage":1,"timestamp":"2026-11-20T11:00:00Z"}`, Malformed, "meterId"},
		{"an empty object has neither id", `{}`, Malformed, "meterId"},
		{"a field of the other kind", `{"meterId":"m","kwhConsumedAc":1,"voltage":1,"soc":3,"timestamp":"2026-11-20T11:00:00Z"}`, Malformed, "soc"},
		{"an empty id", `{"meterId":"","kwhConsumedAc":1,"voltage":1,"timestamp":"2026-11-20T11:00:00Z"}`, Malformed, "meterId"},
		{"an id with a slash", `{"vehicleId":"ev/1","soc":1,"kwhDeliveredDc":1,"batteryTemp":20,"timestamp":"2026-11-20T11:00:00Z"}`, Malformed, "vehicleId"},
		{"an id starting with a dash", `{"vehicleId":"-ev","soc":1,"kwhDeliveredDc":1,"batteryTemp":20,"timestamp":"2026-11-20T11:00:00Z"}`, Malformed, "vehicleId"},
		{"an id of 65 characters", `{"vehicleId":"` + strings.Repeat("a", 65) + `","soc":1,"kwhDeliveredDc":1,"batteryTemp":20,"timestamp":"2026-11-20T11:00:00Z"}`, Malformed, "vehicleId"},
		{"a date without a time", `{"meterId":"m","kwhConsumedAc":1,"voltage":1,"timestamp":"2026-11-20"}`, Malformed, "timestamp"},
		{"a time without a zone", `{"meterId":"m","kwhConsumedAc":1,"voltage":1,"timestamp":"2026-11-20T11:00:00"}`, Malformed, "timestamp"},
		{"a space instead of T", `{"meterId":"m","kwhConsumedAc":1,"voltage":1,"timestamp":"2026-11-20 11:00:00Z"}`, Malformed, "timestamp"},
		{"the 31st of November", `{"meterId":"m","kwhConsumedAc":1,"voltage":1,"timestamp":"2026-11-31T11:00:00Z"}`, Malformed, "timestamp"},
		{"hour 24", `{"meterId":"m","kwhConsumedAc":1,"voltage":1,"timestamp":"2026-11-20T24:00:00Z"}`, Malformed, "timestamp"},
		{"a zone without a colon", `{"meterId":"m","kwhConsumedAc":1,"voltage":1,"timestamp":"2026-11-20T11:00:00+0100"}`, Malformed, "timestamp"},
		{"a Unix time as a string", `{"meterId":"m","kwhConsumedAc":1,"voltage":1,"timestamp":"1763640000"}`, Malformed, "timestamp"},
		{"soc above 100", `{"vehicleId":"v","soc":100.5,"kwhDeliveredDc":1,"batteryTemp":20,"timestamp":"2026-11-20T11:00:00Z"}`, Implausible, "soc"},
		{"negative energy", `{"vehicleId":"v","soc":1,"kwhDeliveredDc":-0.1,"batteryTemp":20,"timestamp":"2026-11-20T11:00:00Z"}`, Implausible, "kwhDeliveredDc"},
		{"energy too large for a float", `{"meterId":"m","kwhConsumedAc":1e400,"voltage":1,"timestamp":"2026-11-20T11:00:00Z"}`, Implausible, "kwhConsumedAc"},
		{"voltage out of range", `{"meterId":"m","kwhConsumedAc":1,"voltage":5000,"timestamp":"2026-11-20T11:00:00Z"}`, Implausible, "voltage"},
		{"battery too cold", `{"vehicleId":"v","soc":1,"kwhDeliveredDc":1,"batteryTemp":-80,"timestamp":"2026-11-20T11:00:00Z"}`, Implausible, "batteryTemp"},
		{"a timestamp older than the lateness", `{"meterId":"m","kwhConsumedAc":1,"voltage":1,"timestamp":"2026-11-01T11:00:00Z"}`, Implausible, "timestamp"},
		{"a timestamp too far in the future", `{"meterId":"m","kwhConsumedAc":1,"voltage":1,"timestamp":"2026-11-20T12:06:00Z"}`, Implausible, "timestamp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := DecodeReading([]byte(tt.in), testNow, DefaultLimits())
			if err == nil {
				t.Fatalf("accepted %q as %+v", tt.in, r)
			}
			if r.Meter != nil || r.Vehicle != nil {
				t.Fatalf("returned a reading with an error: %+v", r)
			}
			if err.Class != tt.class {
				t.Fatalf("class %d, want %d (%v)", err.Class, tt.class, err)
			}
			if len(err.Violations) == 0 {
				t.Fatal("no violations")
			}
			if got := err.Violations[0].Field; got != tt.field {
				t.Fatalf("field %q, want %q (%v)", got, tt.field, err)
			}
			for _, v := range err.Violations {
				if v.Description == "" {
					t.Fatalf("violation of %q has no description", v.Field)
				}
			}
		})
	}
}

func TestDecodeReadingReportsEveryMissingField(t *testing.T) {
	_, err := DecodeReading([]byte(`{"vehicleId":"v"}`), testNow, DefaultLimits())
	if err == nil || err.Class != Malformed {
		t.Fatalf("got %v", err)
	}
	var fields []string
	for _, v := range err.Violations {
		fields = append(fields, v.Field)
	}
	if got, want := strings.Join(fields, ","), "soc,kwhDeliveredDc,batteryTemp,timestamp"; got != want {
		t.Fatalf("fields %s, want %s", got, want)
	}
}

func TestDecodeReadingTruncatesUnknownFieldNames(t *testing.T) {
	_, err := DecodeReading([]byte(`{"`+strings.Repeat("é", 100)+`":1}`), testNow, DefaultLimits())
	if err == nil {
		t.Fatal("accepted")
	}
	if f := err.Violations[0].Field; len(f) > 70 || !strings.HasSuffix(f, "…") {
		t.Fatalf("field %q not truncated", f)
	}
}

func TestDecodeReadingWithoutLimitsChecksNoTime(t *testing.T) {
	in := `{"meterId":"m","kwhConsumedAc":1,"voltage":1,"timestamp":"1999-01-01T00:00:00Z"}`
	if _, err := DecodeReading([]byte(in), testNow, Limits{}); err != nil {
		t.Fatalf("refused: %v", err)
	}
}

func TestParseRFC3339MicrosAgreesWithTimeParse(t *testing.T) {
	for _, s := range []string{
		"2026-11-20T11:00:00Z",
		"2026-11-20T11:00:00.1Z",
		"2026-11-20T11:00:00.123456Z",
		"2026-11-20T11:00:00.1234567891234Z",
		"2024-02-29T23:59:59.999999999-23:59",
		"0000-01-01T00:00:00+00:00",
		"1969-12-31T23:59:59.9999995Z",
		"9999-12-31T23:59:59.999999Z",
	} {
		got, ok := parseRFC3339Micros([]byte(s))
		want, err := time.Parse(time.RFC3339, s)
		if !ok || err != nil {
			t.Fatalf("%s: ours ok=%v, time.Parse %v", s, ok, err)
		}
		if got != want.UnixMicro() {
			t.Fatalf("%s: %d, want %d", s, got, want.UnixMicro())
		}
	}
	for _, s := range []string{"2023-02-29T00:00:00Z", "2026-11-20T11:00:60Z", "2026-11-20T11:00:00.Z", "2026-11-20t11:00:00Z", "2026-11-20T11:00:00+24:00", "+026-11-20T11:00:00Z"} {
		if _, ok := parseRFC3339Micros([]byte(s)); ok {
			t.Fatalf("%s accepted", s)
		}
	}
}

func TestDecodeBatchDecodesItemsIndependently(t *testing.T) {
	bad := `{"vehicleId":"v","soc":101,"kwhDeliveredDc":1,"batteryTemp":20,"timestamp":"2026-11-20T11:00:00Z"}`
	for _, tt := range []struct {
		name string
		f    BatchFormat
		in   string
	}{
		{"a JSON array", BatchJSON, "[" + goodMeter + ",\n " + bad + ", [1, {\"a\": \"]\"}], " + goodVehicle + ", 42 ]"},
		{"NDJSON", BatchNDJSON, goodMeter + "\n" + bad + "\r\n\n   \n[1, {\"a\": \"]\"}]\n" + goodVehicle + "\n42"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			items, err := DecodeBatch([]byte(tt.in), tt.f, testNow, DefaultLimits(), 10)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if len(items) != 5 {
				t.Fatalf("%d items, want 5", len(items))
			}
			for i, it := range items {
				if it.Index != i {
					t.Fatalf("item %d has index %d", i, it.Index)
				}
			}
			if items[0].Err != nil || items[0].Reading.Kind() != KindMeter {
				t.Fatalf("item 0: %+v", items[0])
			}
			if items[1].Err == nil || items[1].Err.Class != Implausible {
				t.Fatalf("item 1: %+v", items[1])
			}
			if items[2].Err == nil || items[2].Err.Class != Malformed {
				t.Fatalf("item 2: %+v", items[2])
			}
			if items[3].Err != nil || items[3].Reading.Kind() != KindVehicle {
				t.Fatalf("item 3: %+v", items[3])
			}
			if items[4].Err == nil || items[4].Err.Class != Malformed {
				t.Fatalf("item 4: %+v", items[4])
			}
		})
	}
}

func TestDecodeBatchRefusesBrokenEnvelopes(t *testing.T) {
	for _, tt := range []struct {
		name  string
		f     BatchFormat
		in    string
		class Class
	}{
		{"an object instead of an array", BatchJSON, goodMeter, Malformed},
		{"an empty body", BatchJSON, "", Malformed},
		{"an unterminated array", BatchJSON, "[" + goodMeter, Malformed},
		{"an unterminated element", BatchJSON, `[{"meterId":"m"`, Malformed},
		{"mismatched brackets", BatchJSON, `[{"meterId":"m"]]`, Malformed},
		{"a missing comma", BatchJSON, "[" + goodMeter + goodMeter + "]", Malformed},
		{"a trailing comma", BatchJSON, "[" + goodMeter + ",]", Malformed},
		{"data after the array", BatchJSON, "[" + goodMeter + "] x", Malformed},
		{"too many array items", BatchJSON, "[" + strings.Repeat(goodMeter+",", 3) + goodMeter + "]", TooLarge},
		{"too many lines", BatchNDJSON, strings.Repeat(goodMeter+"\n", 4), TooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			items, err := DecodeBatch([]byte(tt.in), tt.f, testNow, DefaultLimits(), 3)
			if err == nil {
				t.Fatalf("accepted as %d items", len(items))
			}
			if err.Class != tt.class || len(err.Violations) == 0 {
				t.Fatalf("got %v (class %d), want class %d", err, err.Class, tt.class)
			}
		})
	}
}

func TestDecodeBatchAcceptsEmptyBatches(t *testing.T) {
	for _, tt := range []struct {
		f  BatchFormat
		in string
	}{{BatchJSON, " [ ] "}, {BatchNDJSON, ""}, {BatchNDJSON, "\n \n"}} {
		items, err := DecodeBatch([]byte(tt.in), tt.f, testNow, DefaultLimits(), 3)
		if err != nil || len(items) != 0 {
			t.Fatalf("%q: %d items, %v", tt.in, len(items), err)
		}
	}
}

// TestDecodeReadingMatchesEncodingJSON checks the hand-written decoder against encoding/json
// on the values it accepts.
func TestDecodeReadingMatchesEncodingJSON(t *testing.T) {
	var want struct {
		VehicleID      string  `json:"vehicleId"`
		Soc            float64 `json:"soc"`
		KwhDeliveredDc float64 `json:"kwhDeliveredDc"`
		BatteryTemp    float64 `json:"batteryTemp"`
	}
	in := `{"vehicleId":"E\u0056-7","soc":12.345678901234567,"kwhDeliveredDc":1.5e-3,"batteryTemp":-1.225E1,"timestamp":"2026-11-20T11:00:00Z"}`
	if err := json.Unmarshal([]byte(in), &want); err != nil {
		t.Fatal(err)
	}
	r, err := DecodeReading([]byte(in), testNow, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	v := r.Vehicle
	if v.GetVehicleId() != want.VehicleID || v.GetSoc() != want.Soc || v.GetMwhDeliveredDc() != MWhFromKWh(want.KwhDeliveredDc) || v.GetBatteryTemp() != want.BatteryTemp {
		t.Fatalf("got %+v, encoding/json %+v", v, want)
	}
	if math.Signbit(v.GetBatteryTemp()) != true {
		t.Fatal("sign lost")
	}
}

func BenchmarkDecodeReading(b *testing.B) {
	for _, bb := range []struct{ name, in string }{{"meter", goodMeter}, {"vehicle", goodVehicle}} {
		data := []byte(bb.in)
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := DecodeReading(data, testNow, DefaultLimits()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeBatch(b *testing.B) {
	var sb strings.Builder
	sb.WriteByte('[')
	for i := range 1000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		if i%2 == 0 {
			sb.WriteString(goodMeter)
		} else {
			sb.WriteString(goodVehicle)
		}
	}
	sb.WriteByte(']')
	data := []byte(sb.String())
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		items, err := DecodeBatch(data, BatchJSON, testNow, DefaultLimits(), DefaultMaxBatchReadings)
		if err != nil || len(items) != 1000 {
			b.Fatal(err, len(items))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/reading")
}

func TestCheckBatchRefusesTimestampsOutsideTheYears1970To9999(t *testing.T) {
	ok := time.Date(2026, 11, 20, 11, 0, 0, 0, time.UTC).UnixMicro()
	for _, c := range []struct {
		name   string
		micros int64
		valid  bool
	}{
		{"a time of the fleet", ok, true},
		{"the first instant of 1970", 0, true},
		{"the last microsecond of 9999", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro() - 1, true},
		{"before 1970", -1, false},
		{"the year 10000", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro(), false},
		{"the smallest int64", math.MinInt64, false},
		{"the largest int64", math.MaxInt64, false},
	} {
		b := &telemetrypb.ReadingBatch{
			Meters:   []*telemetrypb.MeterReading{{MeterId: "m1", KwhConsumedAc: 1, Voltage: 230, TimestampMicros: ok}},
			Vehicles: []*telemetrypb.VehicleReading{{VehicleId: "v1", Soc: 50, KwhDeliveredDc: 1, BatteryTemp: 20, TimestampMicros: c.micros}},
		}
		err := CheckBatch(b)
		if c.valid != (err == nil) {
			t.Errorf("%s: CheckBatch = %v", c.name, err)
		}
		if err != nil && !strings.Contains(err.Error(), "timestamp") {
			t.Errorf("%s: %v does not name the timestamp", c.name, err)
		}
	}
}
