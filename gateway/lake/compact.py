"""Compaction: a day of one stream's JSON lines into one sorted, deduplicated Parquet file. Pure
of I/O beyond the local files it is given (``inputs`` stages S3 objects, ``store`` publishes).

DuckDB reads the lines with the stream's explicit schema (``tables``) into a temporary table
(parsed once: the counts and the file come from it), keeps the records of the day, keeps one
record per id, and writes them sorted by device and time, zstd, with the record schema version
in the file's key-value metadata. The output depends only on the input records: which copy of a
duplicate id survives is fixed (latest received, then the file whose path relative to the
stream's folder sorts last: a replay written after live ingest wins, then the later line of a
file), and the total sort order fixes the rows' order, so the same records give the same bytes
from any place and on any rerun.

Where the time goes (bench/lake.py, parsed records, one thread): parsing the JSON lines is about
a third, the Parquet writer with zstd another third, the typed columns (metrics parsed once
more from their text) and the sort the rest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import duckdb

from gateway.lake.tables import SCHEMA_VERSIONS, Table

# Rows per Parquet row group: DuckDB's default (122,880) cuts a day of a big fleet into
# hundreds of groups; a million keeps a device's rows together for Athena's min/max pruning.
ROW_GROUP_ROWS = 1_000_000
# zstd level 1 rather than DuckDB's 3: a fifth less writer time; on the sorted parsed columns
# the file is even smaller (4.51 against 4.65 MB for a day of 6 cars), the raw stream's binary
# payloads 6 % bigger (3.50 against 3.32 MB).
ZSTD_LEVEL = 1
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class StreamInput:
    """One stream's input files (local paths) and the folder their relative names start at."""

    root: Path
    files: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class StreamResult:
    stream: str
    files: int
    records_of_day: int  # records of the day in the input, duplicates included
    records: int  # written: one per id

    @property
    def duplicates(self) -> int:
        return self.records_of_day - self.records


def sql_text(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def default_memory_limit_mb() -> int:
    """A quarter of the machine's memory: the lake job runs on the gateway's host, and DuckDB
    would otherwise take 80 % of it; past the limit it spills to its temporary directory."""
    return max(256, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4 // 2**20)


def connect(
    threads: int | None = None, temp_dir: Path | None = None, memory_limit_mb: int | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that never downloads anything, computes in UTC and stays within
    ``memory_limit_mb`` (default: :func:`default_memory_limit_mb`)."""
    limit_mb = default_memory_limit_mb() if memory_limit_mb is None else memory_limit_mb
    config: dict[str, str | bool | int | float | list[str]] = {
        # Nothing is fetched at run time: the json and parquet extensions are built in.
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "memory_limit": f"{limit_mb}MiB",
    }
    if threads is not None:
        config["threads"] = threads
    con = duckdb.connect(config=config)
    run(con, "SET TimeZone = 'UTC'")
    if temp_dir is not None:
        run(con, f"SET temp_directory = {sql_text(str(temp_dir))}")
    return con


def json_reader(table: Table, files: list[Path], compression: str) -> str:
    """The SELECT that reads ``files`` (JSON lines) with ``table``'s record schema."""
    columns = (
        "{"
        + ", ".join(f"{sql_text(k)}: {sql_text(v)}" for k, v in table.json_columns.items())
        + "}"
    )
    paths = "[" + ", ".join(sql_text(str(f)) for f in files) + "]"
    # ignore_errors: a torn last line (a crash mid-write) must not hold a whole day back.
    return (
        f"SELECT * FROM read_json({paths}, format = 'newline_delimited', columns = {columns}, "
        f"compression = '{compression}', filename = true, ignore_errors = true)"
    )


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == GZIP_MAGIC


def compact_stream(
    con: duckdb.DuckDBPyConnection, table: Table, source: StreamInput, day: str, target: Path
) -> StreamResult:
    """Write ``table``'s records of ``day`` (YYYY-MM-DD) from ``source`` to ``target``."""
    files = sorted(source.files)
    gzipped = {f for f in files if _is_gzip(f)}
    plain = [f for f in files if f not in gzipped]
    readers = [
        json_reader(table, group, kind)
        for group, kind in ((plain, "none"), (sorted(gzipped), "gzip"))
        if group
    ]
    root = str(source.root).rstrip("/") + "/"
    if readers:
        union = " UNION ALL ".join(f"({r})" for r in readers)
        day_rows = (
            f"SELECT * EXCLUDE (filename), substr(filename, {len(root) + 1}) AS _file "
            f"FROM ({union}) WHERE {table.day_sql} = DATE {sql_text(day)}"
        )
    else:  # no input: an empty file of the right columns, so the day reads as empty
        nulls = ", ".join(
            f"CAST(NULL AS {t}) AS {sql_text(c)}" for c, t in table.json_columns.items()
        )
        day_rows = f"SELECT {nulls}, '' AS _file WHERE false"
    run(con, f"CREATE OR REPLACE TEMP TABLE day_rows AS {day_rows}")
    of_day, ids = run(con, "SELECT count(*), count(DISTINCT id) FROM day_rows")[0]
    assert isinstance(of_day, int)
    arrival = "received_at" if "received_at" in table.json_columns else "detected_at"
    # The copies that lose are found over the few columns that choose among them and left out by
    # row id: a window over whole records cost a sixth of a compaction, this next to nothing.
    losers = (
        f"SELECT rowid FROM day_rows QUALIFY row_number() OVER "
        f"(PARTITION BY id ORDER BY {arrival} DESC, _file DESC, rowid DESC) > 1"
    )
    unique = f"WHERE rowid NOT IN ({losers})" if ids != of_day else ""
    columns = ", ".join(f"{c.sql} AS {c.name}" for c in table.columns)
    # Sorted before the typed columns are made: the records as read are narrower than the
    # columns made from them, and the projection keeps the order (a table subquery of one
    # table: DuckDB's order preservation).
    query = (
        f"SELECT {columns} FROM (SELECT *{table.derived} FROM "
        f"(SELECT * FROM day_rows {unique} ORDER BY {', '.join(table.sort)}))"
    )
    metadata = f"{{schema_version: {sql_text(SCHEMA_VERSIONS[table.name])}, day: {sql_text(day)}}}"
    run(
        con,
        f"COPY ({query}) TO {sql_text(str(target))} (FORMAT parquet, COMPRESSION zstd, "
        f"COMPRESSION_LEVEL {ZSTD_LEVEL}, ROW_GROUP_SIZE {ROW_GROUP_ROWS}, "
        f"KV_METADATA {metadata})",
    )
    written = _count(con, f"SELECT count(*) FROM read_parquet({sql_text(str(target))})")
    run(con, "DROP TABLE day_rows")
    return StreamResult(table.name, len(files), of_day, written)


def run(con: duckdb.DuckDBPyConnection, statement: str) -> list[tuple[object, ...]]:
    """Execute and fetch to the end (DuckDB 2 refuses the next statement before that)."""
    return con.execute(statement).fetchall()


def _count(con: duckdb.DuckDBPyConnection, query: str) -> int:
    value = run(con, query)[0][0]
    assert isinstance(value, int)
    return value
