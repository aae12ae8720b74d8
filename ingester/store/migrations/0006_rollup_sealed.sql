-- Settled hours' rollups, packed: one row per hour holding all its meter_hourly rows in one
-- value and all its vehicle_hourly rows in another, at the hour's version (rollup_hours) when
-- they were packed. A reader that loads whole hours into memory reads an hour's packed row when
-- its version is the hour's current one (then the packed rows are exactly the hour's rows) and
-- the rows themselves otherwise: one value per hour instead of a tuple per device, read and
-- sent by Postgres at a fraction of the cost. The ingester packs hours once they settle and
-- again when a late reading changes them.
--
-- Format (integers and floats big-endian, as Postgres's int4send and float8send write them),
-- rows one after another in no particular order:
--   meters:   int4 length, meter_id (UTF-8), float8 kwh_consumed_ac, float8 voltage_sum,
--             int4 readings
--   vehicles: int4 length, vehicle_id, int4 length, meter_id, float8 kwh_delivered_dc,
--             float8 battery_temp_sum, int4 readings
CREATE TABLE rollup_sealed (
    hour     timestamptz PRIMARY KEY,
    version  bigint      NOT NULL,
    meters   bytea       NOT NULL,
    vehicles bytea       NOT NULL
);

-- lz4 where the server has it (decompressing it costs less than reading the bytes it saves).
DO $$
BEGIN
    ALTER TABLE rollup_sealed ALTER COLUMN meters SET COMPRESSION lz4,
                              ALTER COLUMN vehicles SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END $$;
