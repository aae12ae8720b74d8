-- Energy as integer milliwatt-hours (1 kWh = 1,000,000 mWh), so that every sum is exact
-- whatever its order. A stored kWh value becomes the mWh the gateway now makes of a device's
-- decimal text: rounded half away from zero at the sixth decimal (through numeric, whose
-- round() breaks ties away from zero, and which takes a float8 at its 15 significant digits).
-- A rollup's float sum is converted the same way.
--
-- Each ALTER ... TYPE rewrites its table (and a partitioned table's every partition) under an
-- ACCESS EXCLUSIVE lock held to the end of this migration's transaction: ingest into the shard
-- and reads of it wait meanwhile, while readings accepted in the meantime wait in the shard's
-- stream. docs/architecture.md ("Energy") gives the time measured on a large shard. Statements
-- of the previous version name the old columns and fail (and are retried) once this committed:
-- no previous ingester writes kWh into an mWh column.
ALTER TABLE meter_telemetry_history
    ALTER COLUMN kwh_consumed_ac TYPE bigint USING round(kwh_consumed_ac::numeric * 1000000)::bigint;
ALTER TABLE meter_telemetry_history RENAME COLUMN kwh_consumed_ac TO mwh_consumed_ac;

ALTER TABLE vehicle_telemetry_history
    ALTER COLUMN kwh_delivered_dc TYPE bigint USING round(kwh_delivered_dc::numeric * 1000000)::bigint;
ALTER TABLE vehicle_telemetry_history RENAME COLUMN kwh_delivered_dc TO mwh_delivered_dc;

ALTER TABLE current_meter_status
    ALTER COLUMN last_kwh_consumed_ac TYPE bigint USING round(last_kwh_consumed_ac::numeric * 1000000)::bigint;
ALTER TABLE current_meter_status RENAME COLUMN last_kwh_consumed_ac TO last_mwh_consumed_ac;

ALTER TABLE current_vehicle_status
    ALTER COLUMN last_kwh_delivered_dc TYPE bigint USING round(last_kwh_delivered_dc::numeric * 1000000)::bigint;
ALTER TABLE current_vehicle_status RENAME COLUMN last_kwh_delivered_dc TO last_mwh_delivered_dc;

ALTER TABLE meter_hourly
    ALTER COLUMN kwh_consumed_ac TYPE bigint USING round(kwh_consumed_ac::numeric * 1000000)::bigint;
ALTER TABLE meter_hourly RENAME COLUMN kwh_consumed_ac TO mwh_consumed_ac;

ALTER TABLE vehicle_hourly
    ALTER COLUMN kwh_delivered_dc TYPE bigint USING round(kwh_delivered_dc::numeric * 1000000)::bigint;
ALTER TABLE vehicle_hourly RENAME COLUMN kwh_delivered_dc TO mwh_delivered_dc;

-- Packed hours held float kWh: they go (0008 drops the table).
DELETE FROM rollup_sealed;

-- Every hour's rollups changed: new versions, so that what readers hold in memory is read again.
UPDATE rollup_hours SET version = nextval('rollup_version');
