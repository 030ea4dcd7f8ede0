"""``gateway lake``: the data lake's jobs (:mod:`gateway.lake.jobs`) on the command line.

``compact`` turns a day of records into Parquet, ``daily`` aggregates it per vehicle, ``ddl``
prints the Glue/Athena tables and ``query`` runs the same SQL on a local lake.

Progress goes to stderr on a terminal. The result is one JSON line on stdout when piped (a
timer's journal, a script) and a few readable lines on a terminal. Errors are one line on stderr:
exit 2 for a bad command line, 74 for input or output that cannot be read or written.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from gateway.lake import jobs
from gateway.lake.ddl import create_tables
from gateway.lake.store import S3_SCHEME, LakeError, S3Options
from gateway.lake.tables import STREAMS

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
    _memory_flag(c)
    _s3_flags(c)

    d = sub.add_parser("daily", help="per-vehicle aggregates of a compacted day")
    d.add_argument("--lake", required=True, metavar="DIR|s3://BUCKET/PREFIX")
    d.add_argument("--date", type=_day, default="yesterday", help=date_help)
    d.add_argument("--threads", type=int, metavar="N", help="engine threads (default: cores)")
    _memory_flag(d)
    _s3_flags(d)

    t = sub.add_parser("ddl", help="print the Glue/Athena CREATE EXTERNAL TABLE statements")
    t.add_argument("--location", required=True, type=_s3_url, metavar="s3://BUCKET/PREFIX")
    t.add_argument("--database", default="ev_telemetry", help="Glue database (ev_telemetry)")

    q = sub.add_parser("query", help="run SQL on a local lake (tables named as in Athena)")
    q.add_argument("--lake", required=True, type=Path, metavar="DIR")
    q.add_argument("sql", help="one query, e.g. the README's")


def _memory_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--memory-limit-mb",
        type=int,
        metavar="MB",
        help="engine memory before it spills to disk (default: a quarter of the machine's, "
        "as it shares the host with the gateway)",
    )


class Progress:
    """Lines on stderr while a job runs, on a terminal only."""

    def __init__(self) -> None:
        self.on = sys.stderr.isatty()

    def say(self, text: str) -> None:
        if self.on:
            print(text, file=sys.stderr, flush=True)


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
        columns, rows = jobs.query(args.lake, args.sql)
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True)), default=str))
        return 0
    s3 = S3Options(args.s3_endpoint_url, args.s3_region)
    if args.lake_command == "compact":
        job = jobs.CompactJob(
            args.input,
            args.output,
            args.date,
            args.streams,
            args.late_days,
            args.threads,
            s3,
            args.memory_limit_mb,
        )
        _report(jobs.compact(job, Progress().say))
    else:
        _report(
            jobs.daily(jobs.DailyJob(args.lake, args.date, args.threads, s3, args.memory_limit_mb))
        )
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
