"""Daily per-vehicle aggregates over one day of the compacted parsed and notification tables.

One SQL query (DuckDB here; the same window functions exist in Athena/Trino). A vehicle's
*samples* are its telemetry readings with a device time and a position, speed or SoC (an EVB1
CELLS frame is telemetry with none of them), one per device time. Between two consecutive
samples lies a *step*; a step counts only when it is at most ``GAP_S`` long (a longer one is a
gap: nothing is known about it) and carries the later sample's state (what the unit measured
over the step that ended there), which is how ``gateway.fleet.truth`` integrates the physics:

- distance: the odometer's rise over the day where the device reports one, else the summed
  great-circle steps between valid fixes;
- driving time: steps with the ignition on; charging time: steps charging;
- energy: pack voltage times current (+ = into the pack) times the step: out of the pack is
  used, into it while charging is charged, into it otherwise is regenerated. Readings at an
  instant every 10 s sample a braking that lasts about as long: held this way the error is
  unbiased and per vehicle-day about 0.4 % rms for used and 2 % for regenerated (trapezoids
  read 5 % and 30 % low, splitting each braking with its neighbours' draw), as
  ``tests/lake/test_week.py`` measures against the simulator's truth;
- charge sessions: runs of charging samples (fast when any sample of the run says so); a run
  across midnight counts on both days, as each day sees its part;
- completeness: frames received (any kind), samples against the day at the device's usual
  interval (the median step), and the gaps over ``GAP_S`` including those before the first and
  after the last sample.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from gateway.lake.compact import run, sql_text

GAP_S = 300
DAY_S = 86_400
EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)
# Sums are of integers (milliseconds, millijoules, millimetres): a sum of doubles depends on the
# order the engine's threads add them in, and the same day must give the same bytes every time.
MJ_PER_KWH = 3_600_000_000.0
MM_PER_KM = 1_000_000.0

# Glue type of each output column, in order (the DDL reads it; the query below makes them).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("device_id", "string"),
    ("codec", "string"),
    ("frames", "bigint"),
    ("samples", "bigint"),
    ("interval_s", "double"),
    ("expected_samples", "bigint"),
    ("completeness", "double"),
    ("gaps_over_5min", "bigint"),
    ("first_ts", "timestamp"),
    ("last_ts", "timestamp"),
    ("distance_km", "double"),
    ("distance_source", "string"),
    ("driving_s", "double"),
    ("energy_used_kwh", "double"),
    ("energy_regen_kwh", "double"),
    ("energy_charged_kwh", "double"),
    ("soc_start_pct", "double"),
    ("soc_end_pct", "double"),
    ("soc_min_pct", "double"),
    ("soc_max_pct", "double"),
    ("charge_sessions", "bigint"),
    ("fast_charge_sessions", "bigint"),
    ("charging_s", "double"),
    ("cell_temp_max_c", "double"),
    ("alarms", "array<struct<code:string,severity:string,count:bigint>>"),
    ("notifications", "array<struct<code:string,severity:string,count:bigint>>"),
)


def daily_query(parsed: Path, notifications: Path | None, day: str) -> str:
    """The aggregates of ``day`` from the day's parsed and notifications Parquet files (no
    notifications file: none were compacted)."""
    start = f"TIMESTAMP {sql_text(day + ' 00:00:00')}"
    notes = (
        f"read_parquet({sql_text(str(notifications))}, hive_partitioning = false)"
        if notifications is not None
        else "(SELECT '' AS device_id, '' AS code, '' AS severity, '' AS state WHERE false)"
    )
    return f"""
WITH parsed AS (
    SELECT * FROM read_parquet({sql_text(str(parsed))}, hive_partitioning = false)
),
samples AS (
    SELECT device_id, ts, lat, lon, position_valid, odometer_km, soc_pct, pack_voltage_v,
           pack_current_a, ignition, charging, fast_charge, cell_temp_max_c
    FROM parsed
    WHERE kind = 'telemetry' AND ts IS NOT NULL
      AND (lat IS NOT NULL OR speed_kmh IS NOT NULL OR soc_pct IS NOT NULL)
    QUALIFY row_number() OVER (PARTITION BY device_id, ts ORDER BY id) = 1
),
steps AS (
    SELECT *,
        epoch_ms(ts) - epoch_ms(lag(ts) OVER w) AS step_ms,
        lag(lat) OVER w AS prev_lat,
        lag(lon) OVER w AS prev_lon,
        lag(position_valid) OVER w AS prev_valid,
        coalesce(charging, false)
            AND NOT coalesce(lag(charging) OVER w, false) AS session_starts
    FROM samples
    WINDOW w AS (PARTITION BY device_id ORDER BY ts)
),
held AS (
    SELECT *,
        step_ms IS NOT NULL AND step_ms <= {GAP_S * 1000} AS counts,
        CAST(round(pack_voltage_v * pack_current_a * step_ms) AS BIGINT) AS energy_mj,
        sum(session_starts::INTEGER) OVER (PARTITION BY device_id ORDER BY ts) AS session
    FROM steps
),
sessions AS (
    SELECT device_id, count(*) AS charge_sessions,
           count(*) FILTER (WHERE fast) AS fast_charge_sessions
    FROM (
        SELECT device_id, session, bool_or(coalesce(fast_charge, false)) AS fast
        FROM held WHERE charging GROUP BY device_id, session
    )
    GROUP BY device_id
),
vehicle AS (
    SELECT device_id,
        count(*) AS samples,
        median(step_ms) / 1000 AS interval_s,
        min(ts) AS first_ts,
        max(ts) AS last_ts,
        count(*) FILTER (WHERE step_ms > {GAP_S * 1000})
            + (epoch(min(ts) - {start}) > {GAP_S})::INTEGER
            + (epoch({start} + INTERVAL {DAY_S} SECOND - max(ts)) > {GAP_S})::INTEGER
            AS gaps_over_5min,
        max(odometer_km) - min(odometer_km) AS odometer_km,
        count(odometer_km) AS odometer_samples,
        sum(CAST(round({MM_PER_KM} * 2 * {EARTH_RADIUS_KM} * asin(sqrt(
            pow(sin(radians(lat - prev_lat) / 2), 2)
            + cos(radians(prev_lat)) * cos(radians(lat)) * pow(sin(radians(lon - prev_lon) / 2), 2)
        ))) AS BIGINT)) FILTER (WHERE counts AND position_valid AND prev_valid)
            / {MM_PER_KM} AS path_km,
        coalesce(sum(step_ms) FILTER (WHERE counts AND ignition), 0) / 1000 AS driving_s,
        coalesce(sum(step_ms) FILTER (WHERE counts AND charging), 0) / 1000 AS charging_s,
        sum(-energy_mj) FILTER (WHERE counts AND energy_mj < 0) / {MJ_PER_KWH}
            AS energy_used_kwh,
        sum(energy_mj) FILTER (WHERE counts AND energy_mj > 0 AND charging) / {MJ_PER_KWH}
            AS energy_charged_kwh,
        sum(energy_mj) FILTER (WHERE counts AND energy_mj > 0 AND NOT coalesce(charging, false))
            / {MJ_PER_KWH} AS energy_regen_kwh,
        count(energy_mj) AS energy_samples,
        arg_min(soc_pct, ts) FILTER (WHERE soc_pct IS NOT NULL) AS soc_start_pct,
        arg_max(soc_pct, ts) FILTER (WHERE soc_pct IS NOT NULL) AS soc_end_pct,
        min(soc_pct) AS soc_min_pct,
        max(soc_pct) AS soc_max_pct,
        max(cell_temp_max_c) AS cell_temp_max_c
    FROM held
    GROUP BY device_id
),
alarms AS (
    SELECT device_id, list({{'code': code, 'severity': severity, 'count': n}}
                           ORDER BY code, severity) AS alarms
    FROM (
        SELECT device_id, a.code AS code, a.severity AS severity, count(*) AS n
        FROM (SELECT device_id, unnest(alarms) AS a FROM parsed)
        GROUP BY ALL
    )
    GROUP BY device_id
),
notes AS (
    SELECT device_id, list({{'code': code, 'severity': severity, 'count': n}}
                           ORDER BY code, severity) AS notifications
    FROM (
        SELECT device_id, code, severity, count(*) AS n
        FROM {notes}
        WHERE state = 'open'
        GROUP BY ALL
    )
    GROUP BY device_id
),
devices AS (
    SELECT device_id, min(codec) AS codec, count(DISTINCT raw_id) AS frames
    FROM parsed WHERE device_id IS NOT NULL GROUP BY ALL
)
SELECT
    d.device_id,
    d.codec,
    d.frames,
    coalesce(v.samples, 0) AS samples,
    v.interval_s,
    CAST(round({DAY_S} / v.interval_s) AS BIGINT) AS expected_samples,
    v.samples / round({DAY_S} / v.interval_s) AS completeness,
    coalesce(v.gaps_over_5min, 0) AS gaps_over_5min,
    v.first_ts,
    v.last_ts,
    CASE WHEN v.odometer_samples >= 2 THEN v.odometer_km ELSE v.path_km END AS distance_km,
    CASE WHEN v.odometer_samples >= 2 THEN 'odometer'
         WHEN v.path_km IS NOT NULL THEN 'positions' END AS distance_source,
    coalesce(v.driving_s, 0) AS driving_s,
    CASE WHEN v.energy_samples > 0 THEN coalesce(v.energy_used_kwh, 0) END AS energy_used_kwh,
    CASE WHEN v.energy_samples > 0 THEN coalesce(v.energy_regen_kwh, 0) END AS energy_regen_kwh,
    CASE WHEN v.energy_samples > 0 THEN coalesce(v.energy_charged_kwh, 0) END
        AS energy_charged_kwh,
    v.soc_start_pct,
    v.soc_end_pct,
    v.soc_min_pct,
    v.soc_max_pct,
    coalesce(s.charge_sessions, 0) AS charge_sessions,
    coalesce(s.fast_charge_sessions, 0) AS fast_charge_sessions,
    coalesce(v.charging_s, 0) AS charging_s,
    v.cell_temp_max_c,
    coalesce(a.alarms, []) AS alarms,
    coalesce(n.notifications, []) AS notifications
FROM devices d
LEFT JOIN vehicle v USING (device_id)
LEFT JOIN sessions s USING (device_id)
LEFT JOIN alarms a USING (device_id)
LEFT JOIN notes n USING (device_id)
ORDER BY d.device_id
"""


def write_daily(
    con: duckdb.DuckDBPyConnection,
    parsed: Path,
    notifications: Path | None,
    day: str,
    target: Path,
) -> int:
    """Write the day's aggregates to ``target`` (zstd Parquet); the number of vehicles."""
    run(
        con,
        f"COPY ({daily_query(parsed, notifications, day)}) TO {sql_text(str(target))} "
        "(FORMAT parquet, COMPRESSION zstd)",
    )
    count = run(con, f"SELECT count(*) FROM read_parquet({sql_text(str(target))})")[0][0]
    assert isinstance(count, int)
    return count
