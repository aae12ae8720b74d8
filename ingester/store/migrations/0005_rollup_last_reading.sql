-- The time of the latest reading in each rollup row. A window that ends after it (a dashboard's
-- window ending now, in the hour being written) gets the same sums from the row as from the
-- hour's raw readings before its end, so the hour being written is answered from one rollup row
-- per device instead of every raw reading of the hour. NULL is unknown (rows written before
-- this column): such a row is never used for a partial hour, and stays NULL when it grows.
ALTER TABLE meter_hourly ADD COLUMN last_ts timestamptz;
ALTER TABLE vehicle_hourly ADD COLUMN last_ts timestamptz;
