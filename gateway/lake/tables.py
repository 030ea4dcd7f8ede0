"""The lake's tables: each column once, with its DuckDB type, its Glue (Hive) type and the SQL
that makes it from a JSON-lines record — so compaction, the daily job and the DDL cannot drift.

Layout under the lake's root (Hive partitions, what Glue's partition projection reads)::

    stream=parsed/dt=YYYY-MM-DD/parsed.parquet
    stream=raw/dt=YYYY-MM-DD/raw.parquet
    stream=notifications/dt=YYYY-MM-DD/notifications.parquet
    daily/dt=YYYY-MM-DD/daily.parquet

A parsed record's day is its device time (``ts``; ``received_at`` when the reading has none), so
late records belong to the day they describe and re-running that day merges them. Raw records
have no device time: their day is ``received_at``'s. Notifications go by ``ts`` too.
"""

from __future__ import annotations

from dataclasses import dataclass

# The record schemas each table is made from (parser.records, parser.notification).
SCHEMA_VERSIONS = {
    "parsed": "ev.parsed/1",
    "raw": "ev.raw/1",
    "notifications": "ev.notification/1",
}
STREAMS = tuple(SCHEMA_VERSIONS)
DAILY = "daily"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    duckdb: str
    glue: str
    sql: str  # over the JSON-lines columns of ``Table.json_columns``


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    json_columns: dict[str, str]  # what read_json reads: record field -> DuckDB type
    day_sql: str  # the record's day (a DATE expression over the JSON columns)
    sort: tuple[str, ...]  # within a file: by device, then time (read columns: sorted as read)
    derived: str = ""  # ", expr AS _name" computed once per record for several columns

    @property
    def prefix(self) -> str:
        return f"stream={self.name}"


def _plain(name: str, duckdb: str, glue: str) -> Column:
    return Column(name, duckdb, glue, name)


# The metrics the codecs decode (codecs/*.toml, parser/*.py), each a typed column; any other
# metric goes into ``metrics_other`` as JSON text. A known metric of another JSON type is NULL in
# its column (json_transform is not strict): a codec that changes a metric's type needs a new
# schema version anyway (parser/records.py).
NUMBER_METRICS = (
    "speed_kmh",
    "soc_pct",
    "soh_pct",
    "pack_voltage_v",
    "pack_current_a",
    "cell_voltage_min_v",
    "cell_voltage_max_v",
    "cell_temp_min_c",
    "cell_temp_max_c",
    "motor_rpm",
    "motor_temp_c",
    "odometer_km",
    "rssi_dbm",
    "gsm_signal",
    "external_voltage_v",
    "battery_voltage_v",
    "battery_level_pct",
    "voltage_level",
    "memory_used_pct",
    "uptime_s",
)
FLAG_METRICS = (
    "ignition",
    "charging",
    "regen",
    "fast_charge",
    "gps_valid",
    "movement",
    "gps_tracking",
    "power_cut",
    "main_power",
    "emergency",
)
LIST_METRICS = ("cell_voltages_v",)
KNOWN_METRICS = (*NUMBER_METRICS, *FLAG_METRICS, *LIST_METRICS)

_METRIC_TYPES = {
    **dict.fromkeys(NUMBER_METRICS, ("DOUBLE", "double")),
    **dict.fromkeys(FLAG_METRICS, ("BOOLEAN", "boolean")),
    **dict.fromkeys(LIST_METRICS, ("DOUBLE[]", "array<double>")),
}
_METRICS_STRUCT = "{" + ",".join(f'"{m}":"{t[0]}"' for m, t in _METRIC_TYPES.items()) + "}"
_KNOWN_LIST = ", ".join(f"'{m}'" for m in KNOWN_METRICS)
_KNOWN_PRESENT = " + ".join(f"(_metrics.{m} IS NOT NULL)::INTEGER" for m in KNOWN_METRICS)
_ALARM = "STRUCT(code VARCHAR, severity VARCHAR, subsystem VARCHAR, value DOUBLE)"
_ALARM_GLUE = "array<struct<code:string,severity:string,subsystem:string,value:double>>"
_POSITION = (
    "STRUCT(lat DOUBLE, lon DOUBLE, alt_m DOUBLE, speed_kmh DOUBLE, heading_deg DOUBLE, "
    "satellites INTEGER, valid BOOLEAN)"
)


def _text_map(field: str) -> str:
    """A JSON object as MAP(VARCHAR, VARCHAR): a string as itself, a number or boolean as its
    text, an array or object as its JSON, null as NULL (one step: through MAP(VARCHAR, JSON) and
    a cast cost twice as much). NULL when the field is no object (see ``_JSON_TEXT``)."""
    return f"""try(json_transform({field}, '"MAP(VARCHAR, VARCHAR)"'))"""


# The record's object fields are read as their JSON text (VARCHAR), not as DuckDB's JSON type:
# the reader re-serialises a JSON-typed value, which made reading the parsed stream a third
# slower, while the text is parsed once more by the json_ functions anyway. A field that is a
# JSON string in a malformed record reads as its bare text, which may not parse: the functions
# over these fields are wrapped in try(), so such a record is kept with the field empty (as a
# JSON-typed read kept it) instead of failing the whole day.
_JSON_TEXT = "VARCHAR"


PARSED = Table(
    "parsed",
    (
        _plain("schema", "VARCHAR", "string"),
        _plain("id", "VARCHAR", "string"),
        _plain("raw_id", "VARCHAR", "string"),
        _plain("device_id", "VARCHAR", "string"),
        _plain("codec", "VARCHAR", "string"),
        _plain("kind", "VARCHAR", "string"),
        _plain("ts", "TIMESTAMP", "timestamp"),
        _plain("received_at", "TIMESTAMP", "timestamp"),
        Column("lat", "DOUBLE", "double", "position.lat"),
        Column("lon", "DOUBLE", "double", "position.lon"),
        Column("alt_m", "DOUBLE", "double", "position.alt_m"),
        Column("gps_speed_kmh", "DOUBLE", "double", "position.speed_kmh"),
        Column("heading_deg", "DOUBLE", "double", "position.heading_deg"),
        Column("satellites", "INTEGER", "int", "position.satellites"),
        Column("position_valid", "BOOLEAN", "boolean", "position.valid"),
        *(Column(m, duckdb, glue, f"_metrics.{m}") for m, (duckdb, glue) in _METRIC_TYPES.items()),
        Column(
            "metrics_other",
            "MAP(VARCHAR, VARCHAR)",
            "map<string,string>",
            # Most records hold known metrics only, each in its typed column: then the object
            # has as many keys as typed columns hold values, and there is nothing left for the
            # map. Any other case (an unknown key, a null or mistyped known one, a duplicate)
            # takes the filtering path, which gives the same map. Counting is a fifth of the
            # cost of checking every key against the known names (list_has_all).
            f"CASE WHEN coalesce(try(len(json_keys(metrics))), 0) = {_KNOWN_PRESENT} "
            "THEN MAP {}::MAP(VARCHAR, VARCHAR) "
            "ELSE map_from_entries([e FOR e IN map_entries(" + _text_map("metrics") + ") "
            f"IF e.key NOT IN ({_KNOWN_LIST})]) END",
        ),
        Column("io", "MAP(VARCHAR, VARCHAR)", "map<string,string>", _text_map("io")),
        Column("alarms", f"{_ALARM}[]", _ALARM_GLUE, "alarms"),
        Column("attrs", "MAP(VARCHAR, VARCHAR)", "map<string,string>", _text_map("attrs")),
    ),
    {
        "schema": "VARCHAR",
        "id": "VARCHAR",
        "raw_id": "VARCHAR",
        "device_id": "VARCHAR",
        "codec": "VARCHAR",
        "kind": "VARCHAR",
        "ts": "TIMESTAMP",
        "received_at": "TIMESTAMP",
        "position": _POSITION,
        "metrics": _JSON_TEXT,
        "io": _JSON_TEXT,
        "alarms": f"{_ALARM}[]",
        "attrs": _JSON_TEXT,
    },
    "CAST(coalesce(ts, received_at) AS DATE)",
    ("device_id", "ts", "id"),
    # One JSON pass for every typed metric.
    f", try(json_transform(metrics, '{_METRICS_STRUCT}')) AS _metrics",
)

RAW = Table(
    "raw",
    (
        _plain("schema", "VARCHAR", "string"),
        _plain("id", "VARCHAR", "string"),
        _plain("device_id", "VARCHAR", "string"),
        _plain("codec", "VARCHAR", "string"),
        _plain("transport", "VARCHAR", "string"),
        _plain("peer", "VARCHAR", "string"),
        _plain("received_at", "TIMESTAMP", "timestamp"),
        Column("payload", "BLOB", "binary", "from_base64(payload)"),
    ),
    {
        "schema": "VARCHAR",
        "id": "VARCHAR",
        "device_id": "VARCHAR",
        "codec": "VARCHAR",
        "transport": "VARCHAR",
        "peer": "VARCHAR",
        "received_at": "TIMESTAMP",
        "payload": "VARCHAR",
    },
    "CAST(received_at AS DATE)",
    ("device_id", "received_at", "id"),
)

NOTIFICATIONS = Table(
    "notifications",
    (
        _plain("schema", "VARCHAR", "string"),
        _plain("id", "VARCHAR", "string"),
        _plain("device_id", "VARCHAR", "string"),
        _plain("code", "VARCHAR", "string"),
        _plain("severity", "VARCHAR", "string"),
        _plain("state", "VARCHAR", "string"),
        Column("values", "MAP(VARCHAR, VARCHAR)", "map<string,string>", _text_map('"values"')),
        _plain("ts", "TIMESTAMP", "timestamp"),
        _plain("detected_at", "TIMESTAMP", "timestamp"),
        _plain("raw_id", "VARCHAR", "string"),
        _plain("suppressed", "BOOLEAN", "boolean"),
        _plain("replayed", "BOOLEAN", "boolean"),
    ),
    {
        "schema": "VARCHAR",
        "id": "VARCHAR",
        "device_id": "VARCHAR",
        "code": "VARCHAR",
        "severity": "VARCHAR",
        "state": "VARCHAR",
        "values": _JSON_TEXT,
        "ts": "TIMESTAMP",
        "detected_at": "TIMESTAMP",
        "raw_id": "VARCHAR",
        "suppressed": "BOOLEAN",
        "replayed": "BOOLEAN",
    },
    "CAST(coalesce(ts, detected_at) AS DATE)",
    ("device_id", "detected_at", "id"),
)

TABLES = {table.name: table for table in (PARSED, RAW, NOTIFICATIONS)}


def partition(prefix: str, day: str) -> str:
    """The folder of one day of a table: ``stream=parsed/dt=2026-05-29``."""
    return f"{prefix}/dt={day}"


def file_name(name: str) -> str:
    """The one file of a partition: re-running a day replaces it whole."""
    return f"{name}.parquet"
