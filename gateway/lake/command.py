"""The data lake's jobs: compact, daily aggregates, Glue/Athena DDL, and SQL on a local lake.

``compact`` turns a day of records into Parquet, ``daily`` aggregates it per vehicle, ``ddl``
prints the Glue/Athena tables and ``query`` runs the same SQL on a local lake.

Progress goes to stderr on a terminal. The result is one JSON line on stdout when piped (a
timer's journal, a script) and a few readable lines on a terminal. Errors are one line on stderr:
exit 2 for a bad command line, 74 for input or output that cannot be read or written.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from gateway.lake.compact import StreamInput, compact_stream, connect
from gateway.lake.daily import write_daily
from gateway.lake.ddl import create_tables, local_views
from gateway.lake.store import S3_SCHEME, LakeError, Location, S3Options, relevant
from gateway.lake.tables import DAILY, NOTIFICATIONS, PARSED, STREAMS, TABLES, file_name, partition

EXIT_USAGE = 2
EXIT_IO = 74  # sysexits' EX_IOERR


def _day(text: str) -> date:
    if text == "yesterday":
        return datetime.now(UTC).date() - timedelta(days=1)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected YYYY-MM-DD or yesterday") from None


def _streams(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in names if s not in STREAMS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: a comma list of {', '.join(STREAMS)}")
    return names


def _s3_url(text: str) -> str:
    if not text.startswith(S3_SCHEME) or not text.removeprefix(S3_SCHEME).split("/")[0]:
        raise argparse.ArgumentTypeError(f"{text!r}: expected s3://BUCKET/PREFIX")
    return text


def _s3_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--s3-endpoint-url",
        metavar="URL",
        help="S3 endpoint for s3:// locations (default: AWS_ENDPOINT_URL_S3, else AWS's)",
    )
    p.add_argument("--s3-region", metavar="REGION", help="region (default: AWS_DEFAULT_REGION)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``lake`` subcommands (the command itself is registered by ``gateway.cli``)."""
    p.description = __doc__.splitlines()[0] if __doc__ else None
    sub = p.add_subparsers(dest="lake_command", required=True, metavar="JOB")
    date_help = "the UTC day, YYYY-MM-DD or yesterday (default: yesterday)"

    c = sub.add_parser("compact", help="one Parquet file per stream for a day, duplicates dropped")
    c.add_argument(
        "--input",
        required=True,
        metavar="DIR|s3://BUCKET/PREFIX",
        help="a data directory, or delivery objects laid out the same: raw/, parsed/, "
        "notifications/ (JSON lines, gzip or plain)",
    )
    c.add_argument("--output", required=True, metavar="DIR|s3://BUCKET/PREFIX", help="the lake")
    c.add_argument("--date", type=_day, default="yesterday", help=date_help)
    c.add_argument(
        "--streams",
        type=_streams,
        default=STREAMS,
        help=f"which streams (default: {','.join(STREAMS)})",
    )
    c.add_argument(
        "--late-days",
        type=int,
        metavar="N",
        help="read only files dated up to N days after the day (default: every later file: "
        "late backlogs and replays of old raw records are written in files named when written)",
    )
    c.add_argument("--threads", type=int, metavar="N", help="engine threads (default: cores)")
    _s3_flags(c)

    d = sub.add_parser("daily", help="per-vehicle aggregates of a compacted day")
    d.add_argument("--lake", required=True, metavar="DIR|s3://BUCKET/PREFIX")
    d.add_argument("--date", type=_day, default="yesterday", help=date_help)
    d.add_argument("--threads", type=int, metavar="N", help="engine threads (default: cores)")
    _s3_flags(d)

    t = sub.add_parser("ddl", help="print the Glue/Athena CREATE EXTERNAL TABLE statements")
    t.add_argument("--location", required=True, type=_s3_url, metavar="s3://BUCKET/PREFIX")
    t.add_argument("--database", default="ev_telemetry", help="Glue database (ev_telemetry)")

    q = sub.add_parser("query", help="run SQL on a local lake (tables named as in Athena)")
    q.add_argument("--lake", required=True, type=Path, metavar="DIR")
    q.add_argument("sql", help="one query, e.g. the README's")


class Progress:
    """Lines on stderr while a job runs, on a terminal only."""

    def __init__(self) -> None:
        self.on = sys.stderr.isatty()

    def say(self, text: str) -> None:
        if self.on:
            print(text, file=sys.stderr, flush=True)


def compact(args: argparse.Namespace) -> dict[str, Any]:
    day = args.date.isoformat()
    s3 = S3Options(args.s3_endpoint_url, args.s3_region)
    source, lake = Location(args.input, s3), Location(args.output, s3)
    progress = Progress()
    began = time.monotonic()
    streams: dict[str, Any] = {}
    listed = {stream: source.list_files(stream) for stream in args.streams}
    if not any(listed.values()):
        # A mistyped location must not replace a day's files with empty ones.
        raise LakeError(f"{source}: no files under {', '.join(s + '/' for s in args.streams)}")
    with tempfile.TemporaryDirectory(prefix="gateway-lake-") as tmp:
        work = Path(tmp)
        con = connect(args.threads, work)
        for stream in args.streams:
            table = TABLES[stream]
            names = [
                n
                for n in listed[stream]
                if relevant(n.removeprefix(stream + "/"), args.date, args.late_days)
            ]
            progress.say(f"{stream}: reading {len(names)} files from {source}")
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
            progress.say(
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


def daily(args: argparse.Namespace) -> dict[str, Any]:
    day = args.date.isoformat()
    lake = Location(args.lake, S3Options(args.s3_endpoint_url, args.s3_region))
    began = time.monotonic()
    parsed_path = f"{partition(PARSED.prefix, day)}/{file_name(PARSED.name)}"
    notes_path = f"{partition(NOTIFICATIONS.prefix, day)}/{file_name(NOTIFICATIONS.name)}"
    if not lake.exists(parsed_path):
        raise LakeError(f"{lake}: no {parsed_path}: run `gateway lake compact` for {day} first")
    with tempfile.TemporaryDirectory(prefix="gateway-lake-") as tmp:
        work = Path(tmp)
        paths = [parsed_path] + ([notes_path] if lake.exists(notes_path) else [])
        root = lake.fetch(paths, work / "in")
        con = connect(args.threads, work)
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


def query(args: argparse.Namespace) -> int:
    con = connect()
    if not local_views(con, args.lake):
        raise LakeError(f"{args.lake}: no Parquet tables here (run `gateway lake compact`)")
    result = con.execute(args.sql)
    columns = [d[0] for d in result.description or []]
    for row in result.fetchall():
        print(json.dumps(dict(zip(columns, row, strict=True)), default=str))
    return 0


def _report(summary: dict[str, Any]) -> None:
    if sys.stdout.isatty():
        for key, value in summary.items():
            print(f"{key}: {json.dumps(value) if isinstance(value, dict) else value}")
    else:
        print(json.dumps(summary))


def run_command(args: argparse.Namespace) -> int:
    if args.lake_command == "ddl":
        print(create_tables(args.location, args.database), end="")
        return 0
    if args.lake_command == "query":
        return query(args)
    _report(compact(args) if args.lake_command == "compact" else daily(args))
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return run_command(args)
    except LakeError as exc:
        print(f"gateway lake {args.lake_command}: {exc}", file=sys.stderr)
        return EXIT_IO
    except duckdb.Error as exc:
        # The engine's own message names the file and what is wrong with it; its first line.
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"gateway lake {args.lake_command}: {message}", file=sys.stderr)
        return EXIT_IO
