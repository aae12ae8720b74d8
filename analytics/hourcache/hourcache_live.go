package hourcache

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/fleetingest/fleetingest/analytics/query"
)

// Reloads of the hour being written (see Cache.reloadLive): at least liveReloadMin apart,
// and up to liveReloadMax while a reload answers fewer than liveReloadPays questions before
// the hour changes again. A reload reads every rollup row of the hour, hundreds of times the
// rows one question reads with the versions, so it pays only once it goes on to answer a few
// hundred questions.
const (
	liveReloadMin  = 100 * time.Millisecond
	liveReloadMax  = 5 * time.Second
	liveReloadPays = 500
)

// liveHour is the hour being written as last read whole: all its rollup rows at one version,
// with the time of each row's latest reading. A question about a window ending in it uses it
// when the hour's version is still that one, so it needs only the versions from Postgres.
type liveHour struct {
	at      time.Time
	version int64 // 0: the hour had no rollup rows
	rows    *query.LiveRollups
	// vehicles are the indexes in rows.Vehicles of each vehicle's rows; attributed those of
	// the rows attributed to each meter; meters the index in rows.Meters of each meter's row.
	vehicles, attributed map[string][]int32
	meters               map[string]int32
	// names holds each device id of the rows once.
	names map[string]string
	// served counts the questions answered from it.
	served atomic.Int64
}

func newLiveHour(at time.Time, version int64, rows *query.LiveRollups) *liveHour {
	l := &liveHour{
		at: at, version: version, rows: rows,
		vehicles:   make(map[string][]int32, len(rows.Vehicles)),
		attributed: make(map[string][]int32, len(rows.Meters)),
		meters:     make(map[string]int32, len(rows.Meters)),
		names:      make(map[string]string, len(rows.Vehicles)+len(rows.Meters)),
	}
	for i, r := range rows.Vehicles {
		l.names[r.VehicleID] = r.VehicleID
		l.names[r.MeterID] = r.MeterID
		l.vehicles[r.VehicleID] = append(l.vehicles[r.VehicleID], int32(i))
		if r.MeterID != "" {
			l.attributed[r.MeterID] = append(l.attributed[r.MeterID], int32(i))
		}
	}
	for i, r := range rows.Meters {
		l.names[r.MeterID] = r.MeterID
		l.meters[r.MeterID] = int32(i)
	}
	return l
}

// view is what query.LiveHour reads for a question about vehicle drawing from meters (ids
// without repeats): the vehicle's rows and those attributed to the meters, each once, and the
// meters' rows.
func (l *liveHour) view(vehicle string, meters []string) *query.LiveRollups {
	idx := slices.Clone(l.vehicles[vehicle])
	out := &query.LiveRollups{}
	for _, m := range meters {
		idx = append(idx, l.attributed[m]...)
		if i, ok := l.meters[m]; ok {
			out.Meters = append(out.Meters, l.rows.Meters[i])
		}
	}
	slices.Sort(idx)
	for _, i := range slices.Compact(idx) {
		out.Vehicles = append(out.Vehicles, l.rows.Vehicles[i])
	}
	return out
}
