"""The data lake's jobs: compact a day, aggregate it per vehicle, query a local lake.

Each job takes its options as a frozen object (``gateway.cli.lake`` builds them from the command
line) and returns a summary; input or output that cannot be read or written raises
:class:`~gateway.lake.store.LakeError`, the engine's own failures ``duckdb.Error``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from gateway.lake.compact import StreamInput, compact_stream, connect
from gateway.lake.daily import write_daily
from gateway.lake.ddl import local_views
from gateway.lake.store import LakeError, Location, S3Options, relevant
from gateway.lake.tables import DAILY, NOTIFICATIONS, PARSED, STREAMS, TABLES, file_name, partition


@dataclass(frozen=True, slots=True)
class CompactJob:
    input: str  # a data directory or s3://bucket/prefix laid out the same
    output: str  # the lake: a directory or s3://bucket/prefix
    day: date
    streams: tuple[str, ...] = STREAMS
    late_days: int | None = None  # read files dated at most this long after the day
    threads: int | None = None  # engine threads (None: one per core)
    s3: S3Options = field(default_factory=S3Options)
    memory_limit_mb: int | None = None  # None: a quarter of the machine's memory


@dataclass(frozen=True, slots=True)
class DailyJob:
    lake: str
    day: date
    threads: int | None = None
    s3: S3Options = field(default_factory=S3Options)
    memory_limit_mb: int | None = None


def compact(job: CompactJob, progress: Callable[[str], None]) -> dict[str, Any]:
    """Compact ``job.day``; the summary. ``progress`` gets a line per step."""
    day = job.day.isoformat()
    source, lake = Location(job.input, job.s3), Location(job.output, job.s3)
    began = time.monotonic()
    streams: dict[str, Any] = {}
    listed = {stream: source.list_files(stream) for stream in job.streams}
    if not any(listed.values()):
        # A mistyped location must not replace a day's files with empty ones.
        raise LakeError(f"{source}: no files under {', '.join(s + '/' for s in job.streams)}")
    with tempfile.TemporaryDirectory(prefix="gateway-lake-") as tmp:
        work = Path(tmp)
        con = connect(job.threads, work, job.memory_limit_mb)
        for stream in job.streams:
            table = TABLES[stream]
            names = [
                n
                for n in listed[stream]
                if relevant(n.removeprefix(stream + "/"), job.day, job.late_days)
            ]
            progress(f"{stream}: reading {len(names)} files from {source}")
            root = source.fetch(names, work / "in")
            inputs = StreamInput(root / stream, tuple(root / n for n in names))
            target = work / file_name(stream)
            result = compact_stream(con, table, inputs, day, target)
            lake.publish(target, f"{partition(table.prefix, day)}/{file_name(stream)}")
            if source.is_s3:  # the next stream's objects need the disk more than these
                shutil.rmtree(work / "in", ignore_errors=True)
            streams[stream] = {
                "files": result.files,
                "records": result.records,
                "duplicates": result.duplicates,
            }
            progress(
                f"{stream}: {result.records:,} records of {day} ({result.duplicates:,} "
                "duplicates dropped)"
            )
        con.close()
    seconds = time.monotonic() - began
    records = sum(s["records"] for s in streams.values())
    return {
        "job": "compact",
        "date": day,
        "output": str(lake),
        "streams": streams,
        "seconds": round(seconds, 3),
        "records_per_s": round(records / max(seconds, 1e-9)),
    }


def daily(job: DailyJob) -> dict[str, Any]:
    """Aggregate ``job.day`` of the lake per vehicle; the summary."""
    day = job.day.isoformat()
    lake = Location(job.lake, job.s3)
    began = time.monotonic()
    parsed_path = f"{partition(PARSED.prefix, day)}/{file_name(PARSED.name)}"
    notes_path = f"{partition(NOTIFICATIONS.prefix, day)}/{file_name(NOTIFICATIONS.name)}"
    if not lake.exists(parsed_path):
        raise LakeError(f"{lake}: no {parsed_path}: run `gateway lake compact` for {day} first")
    with tempfile.TemporaryDirectory(prefix="gateway-lake-") as tmp:
        work = Path(tmp)
        paths = [parsed_path] + ([notes_path] if lake.exists(notes_path) else [])
        root = lake.fetch(paths, work / "in")
        con = connect(job.threads, work, job.memory_limit_mb)
        notes = root / notes_path if len(paths) == 2 else None
        target = work / file_name(DAILY)
        vehicles = write_daily(con, root / parsed_path, notes, day, target)
        con.close()
        lake.publish(target, f"{partition(DAILY, day)}/{file_name(DAILY)}")
    return {
        "job": "daily",
        "date": day,
        "lake": str(lake),
        "vehicles": vehicles,
        "seconds": round(time.monotonic() - began, 3),
    }


def query(lake: Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and rows of ``sql`` over the tables of the local lake at ``lake``."""
    con = connect()
    if not local_views(con, lake):
        raise LakeError(f"{lake}: no Parquet tables here (run `gateway lake compact`)")
    result = con.execute(sql)
    columns = [d[0] for d in result.description or []]
    return columns, result.fetchall()
