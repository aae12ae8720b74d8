-- Every batch moves last_updated_at of most devices it holds. An index on that column makes
-- each such update a non-HOT update (a new index entry per reading, and bloat); without it,
-- and with free space on each page, the status upsert stays heap-only. The silent-device
-- query scans the status table instead: one row per device, a few milliseconds per shard.
DROP INDEX IF EXISTS current_meter_status_last_updated_at_idx;
DROP INDEX IF EXISTS current_vehicle_status_last_updated_at_idx;
ALTER TABLE current_meter_status SET (fillfactor = 70);
ALTER TABLE current_vehicle_status SET (fillfactor = 70);
