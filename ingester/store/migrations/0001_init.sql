-- The schema of one Postgres shard. Every timestamp is the end of a reporting interval (UTC);
-- hourly buckets are date_bin('1 hour', ts, '1970-01-01'), independent of the session time zone.

-- Cold: every accepted reading, once. Partitioned by UTC day (partitions are created ahead and
-- on demand by the ingester; there is deliberately no default partition). The primary key
-- de-duplicates redeliveries and device retries.
CREATE TABLE meter_telemetry_history (
    meter_id        text             NOT NULL,
    ts              timestamptz      NOT NULL,
    kwh_consumed_ac double precision NOT NULL,
    voltage         double precision NOT NULL,
    PRIMARY KEY (meter_id, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE vehicle_telemetry_history (
    vehicle_id       text             NOT NULL,
    ts               timestamptz      NOT NULL,
    soc              double precision NOT NULL,
    kwh_delivered_dc double precision NOT NULL,
    battery_temp     double precision NOT NULL,
    -- The meter the vehicle was mapped to at ts ('' when none): where its DC is attributed.
    meter_id         text             NOT NULL DEFAULT '',
    PRIMARY KEY (vehicle_id, ts)
) PARTITION BY RANGE (ts);

-- Hot: the newest reading of every device (by reading time, never moved backwards).
CREATE TABLE current_meter_status (
    meter_id             text             PRIMARY KEY,
    last_kwh_consumed_ac double precision NOT NULL,
    voltage              double precision NOT NULL,
    last_updated_at      timestamptz      NOT NULL
);
CREATE INDEX current_meter_status_last_updated_at_idx ON current_meter_status (last_updated_at);

CREATE TABLE current_vehicle_status (
    vehicle_id            text             PRIMARY KEY,
    soc                   double precision NOT NULL,
    last_kwh_delivered_dc double precision NOT NULL,
    battery_temp          double precision NOT NULL,
    meter_id              text             NOT NULL DEFAULT '',
    last_updated_at       timestamptz      NOT NULL
);
CREATE INDEX current_vehicle_status_last_updated_at_idx ON current_vehicle_status (last_updated_at);

-- Rollups, kept exact in the ingest transaction from exactly the history rows inserted.
CREATE TABLE meter_hourly (
    meter_id        text             NOT NULL,
    hour            timestamptz      NOT NULL,
    kwh_consumed_ac double precision NOT NULL,
    voltage_sum     double precision NOT NULL,
    readings        integer          NOT NULL,
    PRIMARY KEY (meter_id, hour)
);
CREATE INDEX meter_hourly_hour_idx ON meter_hourly (hour);

CREATE TABLE vehicle_hourly (
    vehicle_id       text             NOT NULL,
    meter_id         text             NOT NULL,
    hour             timestamptz      NOT NULL,
    kwh_delivered_dc double precision NOT NULL,
    battery_temp_sum double precision NOT NULL,
    soc_min          double precision NOT NULL,
    soc_max          double precision NOT NULL,
    readings         integer          NOT NULL,
    PRIMARY KEY (vehicle_id, hour, meter_id)
);
CREATE INDEX vehicle_hourly_meter_hour_idx ON vehicle_hourly (meter_id, hour);
CREATE INDEX vehicle_hourly_hour_idx ON vehicle_hourly (hour);
