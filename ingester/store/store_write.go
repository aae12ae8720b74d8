package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fleetingest/fleetingest/api/telemetry"
	"github.com/fleetingest/fleetingest/api/telemetry/telemetrypb"
)

// KindResult counts what a batch did to one kind's history.
type KindResult struct {
	// Inserted readings were new.
	Inserted int
	// Duplicates were already stored, or repeated inside the batch, and were skipped.
	Duplicates int
}

// Result is what WriteBatch did.
type Result struct {
	Meters   KindResult
	Vehicles KindResult
	// PartitionsCreated names the partitions created on demand for this batch.
	PartitionsCreated []string
	// Changed are the hours whose data the batch changed, with their new versions, in hour
	// order.
	Changed []telemetry.HourVersion
}

// Readings is the number of readings the batch carried.
func (r Result) Readings() int {
	return r.Meters.Inserted + r.Meters.Duplicates + r.Vehicles.Inserted + r.Vehicles.Duplicates
}

// WriteBatch stores a batch of readings in one transaction: for each kind, one statement
// inserts the history rows (skipping readings already stored), adds exactly the inserted
// rows to the hourly rollups, and moves each device's current status forward to its newest
// inserted reading (never backwards). Partitions the readings need are created first.
// Either the whole batch commits or nothing does.
func (s *Store) WriteBatch(ctx context.Context, meters []*telemetrypb.MeterReading, vehicles []*telemetrypb.VehicleReading) (Result, error) {
	var res Result
	if len(meters) == 0 && len(vehicles) == 0 {
		return res, nil
	}
	m := meterColumnsOf(meters)
	v := vehicleColumnsOf(vehicles)
	days := map[string]time.Time{}
	for _, ts := range m.ts {
		days[dayKey(ts)] = dayStart(ts)
	}
	for _, ts := range v.ts {
		days[dayKey(ts)] = dayStart(ts)
	}
	for attempt := 0; ; attempt++ {
		if missing := s.missingDays(days); len(missing) > 0 {
			created, err := s.EnsurePartitions(ctx, missing...)
			if err != nil {
				return res, err
			}
			res.PartitionsCreated = append(res.PartitionsCreated, created...)
		}
		var err error
		res.Meters, res.Vehicles, res.Changed, err = writeInTx(ctx, s.pool, m, v)
		if err == nil {
			return res, nil
		}
		// A partition this store believed in was dropped by someone else: reload and retry once.
		var pgErr *pgconn.PgError
		if attempt == 0 && errors.As(err, &pgErr) && pgErr.Code == "23514" {
			if rerr := s.RefreshPartitions(ctx); rerr != nil {
				return res, errors.Join(err, rerr)
			}
			continue
		}
		return res, err
	}
}

// writeInTx runs both kinds' statements in one transaction on db, pipelined.
func writeInTx(ctx context.Context, db interface {
	Begin(context.Context) (pgx.Tx, error)
}, m meterColumns, v vehicleColumns) (KindResult, KindResult, []telemetry.HourVersion, error) {
	var mr, vr KindResult
	var changed []telemetry.HourVersion
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var err error
		mr, vr, changed, err = writeReadings(ctx, tx, m, v)
		return err
	})
	if err != nil {
		return KindResult{}, KindResult{}, nil, fmt.Errorf("writing batch of %d meter and %d vehicle readings: %w", len(m.id), len(v.id), err)
	}
	return mr, vr, changed, nil
}

// writeReadings sends both kinds' statements to db in one pipelined round trip. It runs in a
// transaction so history, rollups and status commit together; the partitions the readings
// need must exist.
func writeReadings(ctx context.Context, db DBTX, m meterColumns, v vehicleColumns) (KindResult, KindResult, []telemetry.HourVersion, error) {
	var mr, vr KindResult
	changed := map[time.Time]int64{}
	scan := func(kind string, n int, r *KindResult) func(pgx.Row) error {
		return func(row pgx.Row) error {
			var hours []time.Time
			var versions []int64
			if err := row.Scan(&r.Inserted, &hours, &versions); err != nil {
				return fmt.Errorf("writing %s readings: %w", kind, err)
			}
			r.Duplicates = n - r.Inserted
			for i, h := range hours {
				changed[h.UTC()] = max(changed[h.UTC()], versions[i])
			}
			return nil
		}
	}
	b := &pgx.Batch{}
	if n := len(m.id); n > 0 {
		b.Queue(writeMetersSQL, m.id, m.ts, m.mwh, m.voltage).QueryRow(scan("meter", n, &mr))
	}
	if n := len(v.id); n > 0 {
		b.Queue(writeVehiclesSQL, v.id, v.ts, v.soc, v.mwh, v.temp, v.meter).QueryRow(scan("vehicle", n, &vr))
	}
	if b.Len() == 0 {
		return mr, vr, nil, nil
	}
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		return KindResult{}, KindResult{}, nil, err
	}
	out := make([]telemetry.HourVersion, 0, len(changed))
	for h, ver := range changed {
		out = append(out, telemetry.HourVersion{Hour: h, Version: ver})
	}
	slices.SortFunc(out, func(a, b telemetry.HourVersion) int { return a.Hour.Compare(b.Hour) })
	return mr, vr, out, nil
}

// meterColumns are a batch's meter readings as column arrays, sorted by (meter, ts) so rows
// are locked in one order by every writer.
type meterColumns struct {
	id      []string
	ts      []time.Time
	mwh     []int64
	voltage []float64
}

func meterColumnsOf(rs []*telemetrypb.MeterReading) meterColumns {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b *telemetrypb.MeterReading) int {
		return cmp.Or(cmp.Compare(a.GetMeterId(), b.GetMeterId()), cmp.Compare(a.GetTimestampMicros(), b.GetTimestampMicros()))
	})
	c := meterColumns{
		id:      make([]string, len(rs)),
		ts:      make([]time.Time, len(rs)),
		mwh:     make([]int64, len(rs)),
		voltage: make([]float64, len(rs)),
	}
	for i, r := range rs {
		c.id[i] = r.GetMeterId()
		c.ts[i] = time.UnixMicro(r.GetTimestampMicros()).UTC()
		c.mwh[i] = r.GetMwhConsumedAc()
		c.voltage[i] = r.GetVoltage()
	}
	return c
}

// vehicleColumns are a batch's vehicle readings as column arrays, sorted by (vehicle, ts).
type vehicleColumns struct {
	id        []string
	ts        []time.Time
	soc, temp []float64
	mwh       []int64
	meter     []string
}

func vehicleColumnsOf(rs []*telemetrypb.VehicleReading) vehicleColumns {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b *telemetrypb.VehicleReading) int {
		return cmp.Or(cmp.Compare(a.GetVehicleId(), b.GetVehicleId()), cmp.Compare(a.GetTimestampMicros(), b.GetTimestampMicros()))
	})
	c := vehicleColumns{
		id:    make([]string, len(rs)),
		ts:    make([]time.Time, len(rs)),
		soc:   make([]float64, len(rs)),
		mwh:   make([]int64, len(rs)),
		temp:  make([]float64, len(rs)),
		meter: make([]string, len(rs)),
	}
	for i, r := range rs {
		c.id[i] = r.GetVehicleId()
		c.ts[i] = time.UnixMicro(r.GetTimestampMicros()).UTC()
		c.soc[i] = r.GetSoc()
		c.mwh[i] = r.GetMwhDeliveredDc()
		c.temp[i] = r.GetBatteryTemp()
		c.meter[i] = r.GetMeterId()
	}
	return c
}

// changedSQL gives every hour of an inserted reading a new version (rollup_hours). A new
// hour's version comes from the sequence when its row is inserted; an existing hour's, under
// its row lock (the DO UPDATE runs once the lock is held), so the writers of one hour get
// increasing versions in the order they commit, and the hourly rows this statement writes
// carry their hour's version.
const changedSQL = `, changed AS (
	INSERT INTO rollup_hours AS r (hour, version)
	SELECT hour, nextval('rollup_version')
	FROM (SELECT DISTINCT date_bin('1 hour', ts, '1970-01-01 00:00:00+00') AS hour FROM inserted) h
	ORDER BY hour
	ON CONFLICT (hour) DO UPDATE SET version = nextval('rollup_version')
	RETURNING hour, version
)`

// resultSQL ends both kinds' statements: how many readings were inserted, and the hours they
// changed with their new versions.
const resultSQL = `
SELECT (SELECT count(*)::int FROM inserted), c.hours, c.versions
FROM (SELECT coalesce(array_agg(hour ORDER BY hour), '{}') AS hours,
             coalesce(array_agg(version ORDER BY hour), '{}') AS versions FROM changed) c`

// lastTS moves a rollup row's latest reading forward; a row whose latest reading is unknown
// (NULL: written before the column existed) stays unknown, as greatest() alone would not keep it.
const lastTS = `CASE WHEN h.last_ts IS NULL THEN NULL ELSE greatest(h.last_ts, excluded.last_ts) END`

// writeMetersSQL inserts meter history and feeds exactly the inserted rows (RETURNING) to the
// hourly rollup, to the current status and to the versions of the hours whose rollups changed. A (meter, ts) repeated inside the batch conflicts
// with its own first copy and is skipped like any stored duplicate. The status takes each
// meter's newest inserted reading and only moves forward in time.
const writeMetersSQL = `
WITH inserted AS (
	INSERT INTO meter_telemetry_history (meter_id, ts, mwh_consumed_ac, voltage)
	SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::int8[], $4::float8[])
	ON CONFLICT (meter_id, ts) DO NOTHING
	RETURNING meter_id, ts, mwh_consumed_ac, voltage
)` + changedSQL + `, hourly AS (
	INSERT INTO meter_hourly AS h (meter_id, hour, mwh_consumed_ac, voltage_sum, readings, last_ts, version)
	SELECT i.meter_id, c.hour, sum(i.mwh_consumed_ac), sum(i.voltage), count(*), max(i.ts), max(c.version)
	FROM inserted i JOIN changed c ON c.hour = date_bin('1 hour', i.ts, '1970-01-01 00:00:00+00')
	GROUP BY 1, 2
	ORDER BY 1, 2
	ON CONFLICT (meter_id, hour) DO UPDATE SET
		mwh_consumed_ac = h.mwh_consumed_ac + excluded.mwh_consumed_ac,
		voltage_sum     = h.voltage_sum + excluded.voltage_sum,
		readings        = h.readings + excluded.readings,
		last_ts         = ` + lastTS + `,
		version         = excluded.version
), status AS (
	INSERT INTO current_meter_status AS c (meter_id, last_mwh_consumed_ac, voltage, last_updated_at)
	SELECT DISTINCT ON (meter_id) meter_id, mwh_consumed_ac, voltage, ts
	FROM inserted
	ORDER BY meter_id, ts DESC
	ON CONFLICT (meter_id) DO UPDATE SET
		last_mwh_consumed_ac = excluded.last_mwh_consumed_ac,
		voltage              = excluded.voltage,
		last_updated_at      = excluded.last_updated_at
	WHERE c.last_updated_at < excluded.last_updated_at
)` + resultSQL

// writeVehiclesSQL is writeMetersSQL for vehicles; the rollup is keyed by the meter each
// reading was attributed to.
const writeVehiclesSQL = `
WITH inserted AS (
	INSERT INTO vehicle_telemetry_history (vehicle_id, ts, soc, mwh_delivered_dc, battery_temp, meter_id)
	SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::int8[], $5::float8[], $6::text[])
	ON CONFLICT (vehicle_id, ts) DO NOTHING
	RETURNING vehicle_id, ts, soc, mwh_delivered_dc, battery_temp, meter_id
)` + changedSQL + `, hourly AS (
	INSERT INTO vehicle_hourly AS h (vehicle_id, hour, meter_id, mwh_delivered_dc, battery_temp_sum, soc_min, soc_max, readings, last_ts, version)
	SELECT i.vehicle_id, c.hour, i.meter_id,
		sum(i.mwh_delivered_dc), sum(i.battery_temp), min(i.soc), max(i.soc), count(*), max(i.ts), max(c.version)
	FROM inserted i JOIN changed c ON c.hour = date_bin('1 hour', i.ts, '1970-01-01 00:00:00+00')
	GROUP BY 1, 2, 3
	ORDER BY 1, 2, 3
	ON CONFLICT (vehicle_id, hour, meter_id) DO UPDATE SET
		mwh_delivered_dc = h.mwh_delivered_dc + excluded.mwh_delivered_dc,
		battery_temp_sum = h.battery_temp_sum + excluded.battery_temp_sum,
		soc_min          = least(h.soc_min, excluded.soc_min),
		soc_max          = greatest(h.soc_max, excluded.soc_max),
		readings         = h.readings + excluded.readings,
		last_ts          = ` + lastTS + `,
		version          = excluded.version
), status AS (
	INSERT INTO current_vehicle_status AS c (vehicle_id, soc, last_mwh_delivered_dc, battery_temp, meter_id, last_updated_at)
	SELECT DISTINCT ON (vehicle_id) vehicle_id, soc, mwh_delivered_dc, battery_temp, meter_id, ts
	FROM inserted
	ORDER BY vehicle_id, ts DESC
	ON CONFLICT (vehicle_id) DO UPDATE SET
		soc                   = excluded.soc,
		last_mwh_delivered_dc = excluded.last_mwh_delivered_dc,
		battery_temp          = excluded.battery_temp,
		meter_id              = excluded.meter_id,
		last_updated_at       = excluded.last_updated_at
	WHERE c.last_updated_at < excluded.last_updated_at
)` + resultSQL
