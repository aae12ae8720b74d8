-- Each rollup row carries the version its hour got from the transaction that last changed the
-- row (rollup_hours.version), so a reader holding an hour at version v reads again only the rows
-- with a newer version. The hour's version is taken under the hour's row lock in rollup_hours,
-- so the writers of one hour get increasing versions in the order they commit. Rows written
-- before this migration have version 0 (older than any version a reader holds).
ALTER TABLE meter_hourly ADD COLUMN version bigint NOT NULL DEFAULT 0;
ALTER TABLE vehicle_hourly ADD COLUMN version bigint NOT NULL DEFAULT 0;
