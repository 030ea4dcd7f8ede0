"""``gateway schema``: the published JSON Schemas of the raw, parsed, error and notification
records."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from gateway.cli.status import EXIT_IO
from parser.notification import Notification
from parser.records import ErrorRecord, ParsedRecord, RawRecord, json_schema

FILES: dict[str, type[msgspec.Struct]] = {
    "raw-record.schema.json": RawRecord,
    "parsed-record.schema.json": ParsedRecord,
    "error-record.schema.json": ErrorRecord,
    "notification.schema.json": Notification,
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--write", type=Path, metavar="DIR", help="write the schema files into DIR")
    p.add_argument("--check", type=Path, metavar="DIR", help="exit 1 if DIR's files are stale")


def run(args: argparse.Namespace) -> int:
    try:
        return command(args.write, args.check)
    except OSError as exc:  # `--write /proc/x`, an unreadable --check directory
        print(f"gateway schema: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_IO


def documents() -> dict[str, str]:
    return {
        name: json.dumps(_plain_descriptions(json_schema(kind)), indent=2, sort_keys=True) + "\n"
        for name, kind in FILES.items()
    }


def _plain_descriptions(node: Any) -> Any:
    """Descriptions (docstrings) with their whitespace collapsed to single spaces.

    msgspec strips docstring indentation differently from one release to the next (0.18 and
    0.23 disagree); the published schema should change only when a field or its wording does.
    """
    if isinstance(node, dict):
        return {
            key: " ".join(value.split())
            if key == "description" and isinstance(value, str)
            else _plain_descriptions(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_plain_descriptions(item) for item in node]
    return node


def command(write: Path | None, check: Path | None) -> int:
    docs = documents()
    if write is not None:
        write.mkdir(parents=True, exist_ok=True)
        for name, text in docs.items():
            (write / name).write_text(text)
    if check is not None:
        stale = [
            n for n, t in docs.items() if not (check / n).is_file() or (check / n).read_text() != t
        ]
        if stale:
            print(
                f"stale schema files in {check}: {', '.join(stale)}; run `make schema`",
                file=sys.stderr,
            )
            return 1
    if write is None and check is None:
        sys.stdout.write(json.dumps({n: json.loads(t) for n, t in docs.items()}, indent=2) + "\n")
    return 0
