package query

import (
	"encoding/binary"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/fleetingest/fleetingest/analytics/window"
)

// rollupStream is changedHoursSQL's binary COPY output for hours whole hours of a shard with
// devices vehicles and as many meters (vehicle i charging from meter i), every hour changed.
func rollupStream(from time.Time, hours, devices int) []byte {
	be := binary.BigEndian
	i32 := func(v int32) []byte { return be.AppendUint32(nil, uint32(v)) }
	i64 := func(v int64) []byte { return be.AppendUint64(nil, uint64(v)) }
	f64 := func(v float64) []byte { return be.AppendUint64(nil, math.Float64bits(v)) }
	us := func(t time.Time) []byte { return i64(t.Sub(postgresEpoch).Microseconds()) }
	var rows [][][]byte
	for h := range hours {
		at := from.Add(time.Duration(h) * time.Hour)
		rows = append(rows, [][]byte{i32(0), us(at), i64(int64(1000 + h)), nil, nil, nil, nil, nil})
	}
	for d := range devices {
		meter := []byte(fmt.Sprintf("meter-%05d", d))
		vehicle := []byte(fmt.Sprintf("EV-%05d", d))
		for h := range hours {
			at := us(from.Add(time.Duration(h) * time.Hour))
			rows = append(rows,
				[][]byte{i32(1), at, nil, meter, nil, f64(1.5 + float64(d%7)), f64(13800), i32(60)},
				[][]byte{i32(2), at, nil, meter, vehicle, f64(1.25 + float64(d%5)), f64(1800), i32(60)})
		}
	}
	return copyStream(nil, rows)
}

// BenchmarkDecodeRollups measures decoding a cold hour load of one shard at the size of the
// analytics benchmark (5,000 vehicles and 5,000 meters a shard, 24 hours: 240,000 rows), fed
// in the 8 kB pieces Postgres sends.
func BenchmarkDecodeRollups(b *testing.B) {
	from := time.Date(2026, 11, 19, 12, 0, 0, 0, time.UTC)
	const hours, devices = 24, 5000
	stream := rollupStream(from, hours, devices)
	hr := window.Range{From: from, To: from.Add(hours * time.Hour)}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		r := newRollupReader(hr)
		d := &copyDecoder{row: r.row}
		for off := 0; off < len(stream); off += 8192 {
			if _, err := d.Write(stream[off:min(off+8192, len(stream))]); err != nil {
				b.Fatal(err)
			}
		}
		rs, err := r.result(nil)
		if err != nil || len(rs.Changed) != hours || rs.Changed[0].Vehicles.Len() != devices {
			b.Fatalf("%d hours read, %v", len(rs.Changed), err)
		}
	}
	b.ReportMetric(float64(b.N)*2*hours*devices/b.Elapsed().Seconds(), "rows/s")
}
