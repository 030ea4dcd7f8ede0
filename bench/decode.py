"""Decode throughput per codec on one core: decode alone, framing + decode, and into JSON.

Run: ``make bench`` (or ``.venv/bin/python bench/decode.py [--seconds S] [--runs N]``).
Pins itself to one CPU, times with ``process_time`` (so co-tenants' slices are excluded) and
prints the median of several runs. Baseline measured in the same run: a bare
``struct.unpack_from`` of the EVB1 telemetry body into a tuple, the floor of any decoder.
"""

from __future__ import annotations

import argparse
import binascii
import json
import os
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.pipeline.registry import CodecRegistry
from parser.codec import Codec
from parser.events import Frame
from parser.records import (
    PARSED_SCHEMA,
    RAW_SCHEMA,
    RawRecord,
    iso_ms,
    parsed_records,
    raw_record_id,
    to_json,
)

VECTORS = Path(__file__).resolve().parents[1] / "tests" / "data" / "vectors"
TELEMETRY = struct.Struct(">IiiHHHBHhHHbbhbIH")


def evb1_frames(n: int) -> list[bytes]:
    frames = []
    for i in range(n):
        body = TELEMETRY.pack(
            1767225600 + i,
            129715987 + i * 37,
            775945627 - i * 11,
            400 + i % 300,
            i % 360,
            800 - i % 500,
            97,
            3521,
            -123 + i % 50,
            3301,
            3350,
            25,
            31,
            2500,
            45,
            123456 + i,
            0b01011,
        )
        header = bytes([1, 2]) + struct.pack(">HH", i & 0xFFFF, len(body)) + body
        frames.append(b"EV" + header + struct.pack(">H", binascii.crc_hqx(header, 0xFFFF)))
    return frames


def vector_frames(name: str, wanted: Callable[[dict[str, object]], bool]) -> list[bytes]:
    cases = json.loads((VECTORS / f"{name}.json").read_text())
    return [bytes.fromhex(c["hex"]) for c in cases if wanted(c["expect"])]


def measure(fn: Callable[[], int], seconds: float, runs: int) -> float:
    """Median items per CPU-second of ``fn`` (which returns how many items it processed)."""
    rates = []
    for _ in range(runs):
        items = 0
        start = time.process_time()
        while (elapsed := time.process_time() - start) < seconds:
            items += fn()
        rates.append(items / elapsed)
    return statistics.median(rates)


def codec_rows(
    codec: Codec, frames: list[bytes], seconds: float, runs: int
) -> list[tuple[str, float, float]]:
    stream = b"".join(frames)
    per_pass = sum(len(codec.decode(f)) for f in frames)

    def decode_only() -> int:
        for f in frames:
            codec.decode(f)
        return len(frames)

    def decode_json() -> int:
        now = 1767225600000
        for f in frames:
            raw = RawRecord(
                RAW_SCHEMA,
                raw_record_id("356307042441013", codec.name, f),
                "356307042441013",
                codec.name,
                "tcp",
                None,
                iso_ms(now),
                f,
            )
            for p in parsed_records(raw, codec.decode(f)):
                to_json(p)
        return len(frames)

    def framed() -> int:
        return len(codec.session().feed(stream))

    def to_json_lines() -> int:
        now = 1767225600000
        out = []
        for event in codec.session().feed(stream):
            if isinstance(event, Frame):
                raw = RawRecord(
                    RAW_SCHEMA,
                    raw_record_id(event.device_id, codec.name, event.payload),
                    event.device_id,
                    codec.name,
                    "tcp",
                    "10.0.0.1:4000",
                    iso_ms(now),
                    event.payload,
                )
                out.append(to_json(raw))
                out.extend(to_json(p) for p in parsed_records(raw, event.readings))
        return len(frames)

    ratio = per_pass / len(frames)
    rows = []
    for label, fn in (
        ("decode only", decode_only),
        ("decode + parsed JSON", decode_json),
        ("session: frame+crc+decode", framed),
        ("session + raw&parsed JSON", to_json_lines),
    ):
        fps = measure(fn, seconds, runs)
        rows.append((label, fps, fps * ratio))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="per run")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    registry = CodecRegistry.load()
    evb1 = evb1_frames(1000)
    body_offset = 8

    def baseline() -> int:
        unpack = TELEMETRY.unpack_from
        for f in evb1:
            unpack(f, body_offset)
        return len(evb1)

    base = measure(baseline, args.seconds, args.runs)
    print(f"{'codec':<10} {'stage':<24} {'frames/s':>12} {'records/s':>12} {'vs baseline':>12}")
    print(f"{'baseline':<10} {'struct.unpack_from':<24} {base:>12,.0f} {base:>12,.0f} {1:>12.2f}")
    inputs = {
        "evb1": evb1,
        "teltonika": vector_frames(
            "teltonika", lambda e: e.get("kind") == "avl_data" and e.get("accept") is True
        )
        * 50,
        "gt06": vector_frames("gt06", lambda e: e.get("kind") == "location") * 100,
    }
    figures: dict[str, dict[str, dict[str, float]]] = {}
    for name, frames in inputs.items():
        for label, fps, rps in codec_rows(registry.create(name), frames, args.seconds, args.runs):
            print(f"{name:<10} {label:<24} {fps:>12,.0f} {rps:>12,.0f} {fps / base:>12.2f}")
            figures.setdefault(name, {})[label] = {"frames_per_s": fps, "records_per_s": rps}
    serialization_rows(registry.create("evb1"), evb1, args.seconds, args.runs)
    if args.json is not None:
        result = {"bench": "decode", "args": vars(args), "baseline_per_s": base, "codecs": figures}
        args.json.write_text(json.dumps(result, indent=1, default=str))


def serialization_rows(codec: Codec, frames: list[bytes], seconds: float, runs: int) -> None:
    """Why msgspec: building and encoding the same parsed records as Structs or as orjson dicts.

    Both paths start from the decoded readings, as the pipeline does, so each includes the cost
    of building its record (a Struct, or the nested dicts orjson needs).
    """
    raw = RawRecord(RAW_SCHEMA, "0" * 26, "356307042441013", "evb1", "tcp", None, iso_ms(0), b"")
    readings = [r for f in frames[:500] for r in codec.decode(f)]

    def with_msgspec() -> int:
        for r in readings:
            for p in parsed_records(raw, (r,)):
                to_json(p)
        return len(readings)

    def with_orjson() -> int:
        for i, r in enumerate(readings):
            pos = r.position
            orjson.dumps(
                {
                    "schema": PARSED_SCHEMA,
                    "id": f"{raw.id}-{i}",
                    "raw_id": raw.id,
                    "device_id": raw.device_id,
                    "codec": raw.codec,
                    "kind": r.kind,
                    "ts": None if r.ts_ms is None else iso_ms(r.ts_ms),
                    "received_at": raw.received_at,
                    "position": None
                    if pos is None
                    else {
                        "lat": pos.lat,
                        "lon": pos.lon,
                        "alt_m": pos.alt_m,
                        "speed_kmh": pos.speed_kmh,
                        "heading_deg": pos.heading_deg,
                        "satellites": pos.satellites,
                        "valid": pos.valid,
                    },
                    "metrics": r.metrics,
                    "io": r.io,
                    "alarms": [
                        {
                            "code": a.code,
                            "severity": a.severity,
                            "subsystem": a.subsystem,
                            "value": a.value,
                        }
                        for a in r.alarms
                    ],
                    "attrs": r.attrs,
                }
            )
        return len(readings)

    print()
    print(f"{'build + serialize a parsed record':<40} {'records/s':>12}")
    for label, fn in (
        ("msgspec Struct + Encoder.encode", with_msgspec),
        ("dict + orjson.dumps", with_orjson),
    ):
        print(f"{label:<40} {measure(fn, seconds, runs):>12,.0f}")


if __name__ == "__main__":
    main()
