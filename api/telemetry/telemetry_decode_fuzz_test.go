package telemetry

import (
	"bytes"
	"encoding/json"
	"math"
	"math/big"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fleetingest/fleetingest/api/placement"
)

// FuzzDecodeReading checks the decoder's invariants on arbitrary input; the seed corpus is
// in testdata/fuzz/FuzzDecodeReading. Run with `go test -fuzz FuzzDecodeReading ./api/telemetry`.
func FuzzDecodeReading(f *testing.F) {
	f.Add([]byte(goodMeter))
	f.Add([]byte(goodVehicle))
	f.Fuzz(func(t *testing.T, data []byte) {
		now := testNow
		l := DefaultLimits()
		r, err := DecodeReading(data, now, l)
		if err != nil {
			checkError(t, err)
			if r.Meter != nil || r.Vehicle != nil {
				t.Fatal("a refused reading came with a value")
			}
		} else {
			checkAccepted(t, data, r, now, l)
		}

		// The batch decoder never panics, numbers its items in order and accepts only what
		// DecodeReading accepts.
		for _, format := range []BatchFormat{BatchJSON, BatchNDJSON} {
			items, berr := DecodeBatch(data, format, now, l, 50)
			if berr != nil {
				checkError(t, berr)
				continue
			}
			for i, it := range items {
				if it.Index != i {
					t.Fatalf("item %d has index %d", i, it.Index)
				}
				if it.Err != nil {
					checkError(t, it.Err)
					continue
				}
				if it.Reading.Meter == nil && it.Reading.Vehicle == nil {
					t.Fatalf("item %d accepted without a reading", i)
				}
			}
		}
	})
}

func checkError(t *testing.T, err *Error) {
	t.Helper()
	if err.Class != Malformed && err.Class != Implausible && err.Class != TooLarge {
		t.Fatalf("error of unknown class %d: %v", err.Class, err)
	}
	if len(err.Violations) == 0 {
		t.Fatal("error without violations")
	}
	for _, v := range err.Violations {
		if v.Description == "" || !utf8.ValidString(v.Field) || !utf8.ValidString(v.Description) {
			t.Fatalf("bad violation %+v", v)
		}
	}
}

func checkAccepted(t *testing.T, data []byte, r Reading, now time.Time, l Limits) {
	t.Helper()
	if (r.Meter == nil) == (r.Vehicle == nil) {
		t.Fatalf("accepted reading must hold exactly one kind: %+v", r)
	}
	if !json.Valid(data) {
		t.Fatalf("accepted invalid JSON %q", data)
	}
	if !placement.ValidDeviceID(r.DeviceID()) {
		t.Fatalf("accepted bad id %q", r.DeviceID())
	}
	ts := r.Time()
	if ts.Before(now.Add(-l.MaxLateness)) || ts.After(now.Add(l.MaxFutureSkew)) {
		t.Fatalf("accepted timestamp %s outside the limits", ts)
	}
	// What encoding/json makes of the same bytes agrees with the decoder: floats as floats,
	// energy as the exact decimal value in mWh, rounded half away from zero.
	var generic map[string]any
	if err := json.Unmarshal(data, &generic); err != nil {
		t.Fatalf("encoding/json refuses accepted input %q: %v", data, err)
	}
	var texts map[string]json.Number
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		t.Fatalf("encoding/json refuses accepted input %q: %v", data, err)
	}
	texts = map[string]json.Number{}
	for k, v := range raw {
		if n, ok := v.(json.Number); ok {
			texts[k] = n
		}
	}
	var want []float64
	var got []float64
	if m := r.Meter; m != nil {
		if err := ValidateMeter(m, now, l); err != nil {
			t.Fatalf("accepted meter reading does not re-validate: %v", err)
		}
		if len(generic) != 4 || generic[FieldMeterID] != m.GetMeterId() {
			t.Fatalf("encoding/json sees %v, decoder %+v", generic, m)
		}
		if e := exactMWh(t, texts[FieldKwhConsumedAc]); m.GetMwhConsumedAc() != e {
			t.Fatalf("energy %s: decoder %d mWh, exact %d", texts[FieldKwhConsumedAc], m.GetMwhConsumedAc(), e)
		}
		got = []float64{m.GetVoltage()}
		want = []float64{num(generic[FieldVoltage])}
	} else {
		v := r.Vehicle
		if err := ValidateVehicle(v, now, l); err != nil {
			t.Fatalf("accepted vehicle reading does not re-validate: %v", err)
		}
		if len(generic) != 5 || generic[FieldVehicleID] != v.GetVehicleId() || v.GetMeterId() != "" {
			t.Fatalf("encoding/json sees %v, decoder %+v", generic, v)
		}
		if e := exactMWh(t, texts[FieldKwhDeliveredDc]); v.GetMwhDeliveredDc() != e {
			t.Fatalf("energy %s: decoder %d mWh, exact %d", texts[FieldKwhDeliveredDc], v.GetMwhDeliveredDc(), e)
		}
		got = []float64{v.GetSoc(), v.GetBatteryTemp()}
		want = []float64{num(generic[FieldSoc]), num(generic[FieldBatteryTemp])}
	}
	for i := range got {
		if math.IsNaN(got[i]) || math.IsInf(got[i], 0) || got[i] != want[i] {
			t.Fatalf("value %d: decoder %v, encoding/json %v", i, got[i], want[i])
		}
	}
	s, _ := generic[FieldTimestamp].(string)
	parsed, err := time.Parse(time.RFC3339, s)
	if err != nil || parsed.UnixMicro() != r.TimestampMicros() {
		t.Fatalf("timestamp %q: decoder %d, time.Parse %v (%v)", s, r.TimestampMicros(), parsed.UnixMicro(), err)
	}
	// Whitespace around the object changes nothing.
	if r2, err := DecodeReading(append(append([]byte(" \n"), data...), '\t'), now, l); err != nil || r2.DeviceID() != r.DeviceID() {
		t.Fatalf("padding changed the outcome: %v", err)
	}
	if bytes.Count(data, []byte(`"`)) < 2 {
		t.Fatal("accepted input without strings")
	}
}

func num(v any) float64 {
	f, ok := v.(float64)
	if !ok {
		return math.NaN()
	}
	return f
}

// exactMWh is a kWh number's text in mWh, computed in exact rationals and rounded half away
// from zero.
func exactMWh(t *testing.T, text json.Number) int64 {
	t.Helper()
	r, ok := new(big.Rat).SetString(string(text))
	if !ok {
		t.Fatalf("big.Rat cannot read %q", text)
	}
	r.Mul(r, big.NewRat(MWhPerKWh, 1))
	neg := r.Sign() < 0
	r.Abs(r)
	// floor(r + 1/2)
	r.Add(r, big.NewRat(1, 2))
	q := new(big.Int).Quo(r.Num(), r.Denom())
	if neg {
		q.Neg(q)
	}
	return q.Int64()
}
