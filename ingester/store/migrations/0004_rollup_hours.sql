-- Every hour that has rollup rows has a version here, replaced from a sequence by every
-- transaction that changes the hour's rollups (the ingest batches, late readings included, and
-- retention). A reader that keeps an hour's rollups in memory reads the version in the same
-- snapshot as the rows and knows, by comparing versions, whether its copy is still exact.
-- Hours with no rollup rows have no version.
CREATE SEQUENCE rollup_version;

CREATE TABLE rollup_hours (
    hour    timestamptz PRIMARY KEY,
    version bigint      NOT NULL
);
ALTER TABLE rollup_hours SET (fillfactor = 50);

INSERT INTO rollup_hours (hour, version)
SELECT hour, nextval('rollup_version')
  FROM (SELECT hour FROM meter_hourly UNION SELECT hour FROM vehicle_hourly) h
 ORDER BY hour;
