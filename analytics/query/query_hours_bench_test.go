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
// devices vehicles and as many meters (vehicle i charging from meter i), every hour changed:
// as rows, or packed (each hour's rows in two values, as the ingester packs settled hours).
func rollupStream(from time.Time, hours, devices int, packed bool) []byte {
	be := binary.BigEndian
	i32 := func(v int32) []byte { return be.AppendUint32(nil, uint32(v)) }
	i64 := func(v int64) []byte { return be.AppendUint64(nil, uint64(v)) }
	f64 := func(v float64) []byte { return be.AppendUint64(nil, math.Float64bits(v)) }
	us := func(t time.Time) []byte { return i64(t.Sub(postgresEpoch).Microseconds()) }
	text := func(b, s []byte) []byte { return append(be.AppendUint32(b, uint32(len(s))), s...) }
	var rows [][][]byte
	for h := range hours {
		at := from.Add(time.Duration(h) * time.Hour)
		rows = append(rows, [][]byte{i32(0), us(at), i64(int64(1000 + h)), nil, nil, nil, nil, nil, nil})
	}
	for h := range hours {
		at := us(from.Add(time.Duration(h) * time.Hour))
		var meters, vehicles []byte
		for d := range devices {
			meter := []byte(fmt.Sprintf("meter-%05d", d))
			vehicle := []byte(fmt.Sprintf("EV-%05d", d))
			ac, dc := f64(1.5+float64(d%7)), f64(1.25+float64(d%5))
			if packed {
				meters = append(append(append(text(meters, meter), ac...), f64(13800)...), i32(60)...)
				vehicles = append(append(append(text(text(vehicles, vehicle), meter), dc...), f64(1800)...), i32(60)...)
				continue
			}
			rows = append(rows,
				[][]byte{i32(1), at, nil, meter, nil, ac, f64(13800), i32(60), nil},
				[][]byte{i32(2), at, nil, meter, vehicle, dc, f64(1800), i32(60), nil})
		}
		if packed {
			rows = append(rows,
				[][]byte{i32(3), at, nil, nil, nil, nil, nil, nil, meters},
				[][]byte{i32(4), at, nil, nil, nil, nil, nil, nil, vehicles})
		}
	}
	return copyStream(nil, rows)
}

// BenchmarkDecodeRollups measures decoding a cold hour load of one shard at the size of the
// analytics benchmark (5,000 vehicles and 5,000 meters a shard, 24 hours: 240,000 rows), fed
// in the 8 kB pieces Postgres sends, as rows and as packed hours.
func BenchmarkDecodeRollups(b *testing.B) {
	from := time.Date(2026, 11, 19, 12, 0, 0, 0, time.UTC)
	const hours, devices = 24, 5000
	for _, packed := range []bool{false, true} {
		b.Run(map[bool]string{false: "rows", true: "packed"}[packed], func(b *testing.B) {
			stream := rollupStream(from, hours, devices, packed)
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
				if err != nil || len(rs.Changed) != hours || rs.Changed[0].Vehicles.Len() != devices || rs.Changed[0].Meters.Len() != devices {
					b.Fatalf("%d hours read, %v", len(rs.Changed), err)
				}
			}
			b.ReportMetric(float64(b.N)*2*hours*devices/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
