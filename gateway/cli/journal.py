"""``gateway journal status``: each journal series under the data directory and how far behind
each of its targets is (:mod:`gateway.ops.journal_status`), from the files alone.

A table on a terminal; JSON when piped or with ``--json``. A directory that is missing or holds
no journal is one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import structlog

from gateway.cli.status import EXIT_USAGE
from gateway.ops.journal_status import JournalStatus, StatusError, journal_status
from gateway.settings import load_settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__.splitlines()[0] if __doc__ else None
    sub = p.add_subparsers(dest="journal_command", required=True, metavar="COMMAND")
    s = sub.add_parser("status", help="segments per series and each target's lag")
    s.add_argument(
        "--config", type=Path, metavar="FILE", help="TOML settings file (its [sink.local] data_dir)"
    )
    s.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="the data directory (beats --config)"
    )
    s.add_argument("--json", action="store_true", help="JSON even on a terminal")


def run(args: argparse.Namespace) -> int:
    # A torn notification line is reported by the reader's log: keep stdout for the answer.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    data_dir = args.data_dir
    if data_dir is None:
        data_dir = load_settings(args.config).sink.local.data_dir
    try:
        status = journal_status(data_dir, time.time())
    except StatusError as exc:
        print(f"gateway journal status: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json or not sys.stdout.isatty():
        print(json.dumps(_as_json(status)))
    else:
        print(_table(status), end="")
    return 0


def _as_json(status: JournalStatus) -> dict[str, Any]:
    series = []
    for one in status.series:
        fields = dataclasses.asdict(one)
        fields["local_only"] = one.local_only
        series.append(fields)
    return {"data_dir": str(status.data_dir), "series": series}


def _table(status: JournalStatus) -> str:
    header = ("SERIES", "SEGMENTS", "BYTES", "TARGET", "LAG", "RECORDS", "OLDEST")
    rows: list[tuple[str, ...]] = []
    problems: list[str] = []
    for one in status.series:
        first = (one.label, str(one.segments), _bytes(one.bytes))
        if one.local_only:
            rows.append((*first, "(local only)", "", "", ""))
        for i, lag in enumerate(one.targets):
            rows.append(
                (
                    *(first if i == 0 else ("", "", "")),
                    lag.target,
                    _bytes(lag.lag_bytes),
                    f"{lag.lag_records:,}",
                    _duration(lag.oldest_unshipped_s),
                )
            )
            if lag.problem:
                problems.append(f"{one.label} -> {lag.target}: {lag.problem}")
    if not rows:
        return f"{status.data_dir}: no segments yet\n"
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    right = {1, 2, 4, 5, 6}  # numbers line up on the right
    lines = [
        "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in (header, *rows)
    ]
    return "\n".join([*lines, *problems]) + "\n"


def _bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole // 60 % 60:02d}m"
    return f"{whole // 86400}d{whole // 3600 % 24:02d}h"
