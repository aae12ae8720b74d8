-- Every reading updates its hour's rollup row in place, without changing an indexed column:
-- free space on each page lets those updates stay heap-only (HOT), which roughly halves the
-- pages an ingest batch touches in the rollup upsert.
ALTER TABLE meter_hourly SET (fillfactor = 70);
ALTER TABLE vehicle_hourly SET (fillfactor = 70);
