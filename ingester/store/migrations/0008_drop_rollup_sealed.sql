-- Readers no longer read packed hours: analytics keeps hours in memory, told of changes by the
-- ingesters' commit notices.
DROP TABLE rollup_sealed;
