"""``gateway decode``: feed bytes to one fresh codec session and print its events as JSON lines.

With ``--lines`` every line of the input is one capture (hex), decoded by a session of its own,
so a corpus of captures decodes in one process; each printed event names its ``line``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from gateway.cli.codecs import load_registry
from gateway.common.hex_text import InputError, parse_hex
from parser.codec import Codec
from parser.events import Event, Frame, Login
from parser.records import RAW_SCHEMA, RawRecord, iso_ms, parsed_records, raw_record_id

_HEX_TEXT = re.compile(rb"^[0-9a-fA-F\s]+$")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--codec", required=True, help="codec name (see `gateway codecs`)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--hex", help="the bytes as hex (whitespace allowed)")
    src.add_argument("--file", help="a capture file (binary, or hex text)")
    src.add_argument("stdin", nargs="?", choices=["-"], help="read the bytes from stdin")
    p.add_argument(
        "--format",
        choices=["auto", "hex", "binary"],
        default="auto",
        help="how to read --file/stdin (auto: hex text if it is only hex digits)",
    )
    p.add_argument(
        "--lines",
        action="store_true",
        help="each line of --file/stdin is one hex capture with a session of its own (a corpus "
        "in one process); events carry their line number",
    )
    p.add_argument(
        "--layout-dir",
        action="append",
        type=Path,
        metavar="DIR",
        help="extra directory of codec layout files (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    codec = load_registry(args.layout_dir).create(args.codec)
    if args.lines:
        if args.hex is not None:
            raise InputError("--lines reads --file or stdin, not --hex")
        return run_lines(codec, *read_lines(args.file, sys.stdin.buffer))
    data = read_input(args.hex, args.file, sys.stdin.buffer, args.format)
    print_events(codec, data)
    return 0


def read_input(hex_text: str | None, path: str | None, stdin: BinaryIO, fmt: str) -> bytes:
    """The bytes to decode from ``--hex``, ``--file`` or ``-`` (stdin)."""
    if hex_text is not None:
        return parse_hex(hex_text)
    if path is None or path == "-":
        data = stdin.read()
    else:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None
    # A file of hex text (a capture pasted from a log) is the common case; real binary frames
    # always contain bytes outside [0-9a-fA-F whitespace], so "auto" cannot mistake one for it.
    if fmt == "hex" or (fmt == "auto" and _HEX_TEXT.match(data)):
        return parse_hex(data.decode("ascii", "replace"))
    return data


def event_lines(codec: Codec, data: bytes, transport: str = "tcp") -> Iterator[dict[str, Any]]:
    """The JSON objects ``gateway decode`` prints, one per event of one fresh session."""
    session = codec.session()
    events: list[Event] = [*session.feed(data), *session.eof()]
    for event in events:
        if isinstance(event, Login):
            yield {"event": "login", "device_id": event.device_id, "reply": event.reply.hex()}
        elif isinstance(event, Frame):
            now_ms = time.time_ns() // 1_000_000
            raw = RawRecord(
                RAW_SCHEMA,
                raw_record_id(event.device_id, codec.name, event.payload),
                event.device_id,
                codec.name,
                transport,
                None,
                iso_ms(now_ms),
                event.payload,
            )
            line: dict[str, Any] = {
                "event": "frame",
                "device_id": event.device_id,
                "reply": event.reply.hex(),
                "records": msgspec.to_builtins(parsed_records(raw, event.readings)),
            }
            if event.error_code is not None:
                line["error"] = f"{event.error_code}: {event.error_detail}"
            yield line
        else:
            yield {
                "event": "reject",
                "reason": event.reason,
                "detail": event.detail,
                "reply": event.reply.hex(),
            }


def print_events(codec: Codec, data: bytes) -> None:
    encoder = msgspec.json.Encoder()
    out = sys.stdout.buffer
    for line in event_lines(codec, data):
        out.write(encoder.encode(line) + b"\n")
    out.flush()


def read_lines(path: str | None, stdin: BinaryIO) -> tuple[str, bytes]:
    """The name to report lines under and the text of ``--file`` or stdin."""
    if path is None or path == "-":
        return "<stdin>", stdin.read()
    try:
        with open(path, "rb") as f:
            return path, f.read()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


def run_lines(codec: Codec, name: str, text: bytes) -> int:
    """Decode each capture line (blank lines and ``#`` comments skipped) with its own session.

    A line that is not hex is reported on stderr with its file and line number and the rest go
    on; the exit status is 1 if any line was skipped so, else 0.
    """
    encoder = msgspec.json.Encoder()
    out = sys.stdout.buffer
    status = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.decode("ascii", "replace").strip()
        if not line or line.startswith("#"):
            continue
        try:
            data = parse_hex(line)
        except InputError as exc:
            print(f"gateway decode: {name}:{number}: {exc}", file=sys.stderr)
            status = 1
            continue
        for event in event_lines(codec, data):
            event["line"] = number
            out.write(encoder.encode(event) + b"\n")
    out.flush()
    return status
