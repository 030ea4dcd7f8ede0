"""KPL aggregation on one core: ``parser.kpl.AggregateBuilder`` against ``aws-kinesis-agg``.

Run: ``.venv/bin/python bench/kinesis_agg.py [--seconds S] [--runs N]``.
Pins itself to one CPU, times with ``process_time`` (so co-tenants' slices are excluded) and
prints the median of several runs. Load: 700-byte JSON-like records keyed by 15-digit device
ids, ~1,000 devices in random order, packed into 51,200-byte aggregates (the KPL default).
Baseline, measured in the same run: the library's ``RecordAggregator(max_size=51200)`` over the
same records. Both rows include serializing every aggregate (protobuf and MD5). A second table
counts PUT payload units per 1,000 user records for several aggregate bounds.

Importable: ``bench/kinesis.py`` reuses :func:`user_records`, :func:`aggregate` and the rows.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from decode import measure

from parser.kpl import (
    KPL_DEFAULT_AGGREGATE_BYTES,
    MAX_RECORD_BYTES,
    AggregateBuilder,
    deaggregate,
    hash_key,
    put_payload_units,
)

UserRecords = list[tuple[str, bytes]]
# One PutRecords entry: partition key, explicit hash key, data.
Entry = tuple[str, str | None, bytes]


def user_records(
    n: int = 20_000, devices: int = 1_000, record_bytes: int = 700, seed: int = 1
) -> UserRecords:
    """``n`` JSON-like records of exactly ``record_bytes``, keyed by 15-digit device ids."""
    rng = random.Random(seed)
    ids = [str(356307040000000 + rng.randrange(10_000_000)) for _ in range(devices)]
    out = []
    for i in range(n):
        device = rng.choice(ids)
        doc = {
            "schema": "ev.parsed/1",
            "id": f"{i:012x}0000000100{i % 4096:04x}",
            "device_id": device,
            "codec": "evb1",
            "kind": "telemetry",
            "ts": "2026-01-01T00:00:00.000Z",
            "position": {"lat": 52.52 + rng.random(), "lon": 13.40 + rng.random()},
            "metrics": {"soc_pct": rng.randrange(101), "pack_v": 380.0 + rng.random() * 40},
            "attrs": {"pad": ""},
        }
        data = json.dumps(doc, separators=(",", ":")).encode()
        doc["attrs"] = {"pad": "x" * (record_bytes - len(data))}
        data = json.dumps(doc, separators=(",", ":")).encode()
        assert len(data) == record_bytes, "record_bytes too small for the JSON skeleton"
        out.append((device, data))
    return out


def aggregate(
    records: UserRecords,
    max_bytes: int = KPL_DEFAULT_AGGREGATE_BYTES,
    *,
    explicit_hash_key: bool = False,
) -> list[Entry]:
    """PutRecords entries packing ``records`` in order into aggregates of ``max_bytes`` of data.

    With ``explicit_hash_key``, each aggregate is routed by its first record's hash key, which
    every user record in it carries (see :class:`parser.kpl.AggregateBuilder`).
    """
    out: list[Entry] = []
    builder: AggregateBuilder | None = None
    for key, data in records:
        if builder is not None and builder.size_with(key, data) > max_bytes:
            out.append((builder.first_partition_key, builder.explicit_hash_key, builder.build()))
            builder = None
        if builder is None:
            builder = AggregateBuilder(str(hash_key(key)) if explicit_hash_key else None)
        builder.add(key, data)
    if builder is not None:
        out.append((builder.first_partition_key, builder.explicit_hash_key, builder.build()))
    return out


def aggregate_with_library(
    records: UserRecords, max_bytes: int = KPL_DEFAULT_AGGREGATE_BYTES
) -> list[Entry]:
    """The same with ``aws_kinesis_agg.aggregator.RecordAggregator``, used as its README shows."""
    library: Any = importlib.import_module("aws_kinesis_agg.aggregator")
    aggregator = library.RecordAggregator(max_size=max_bytes)
    out: list[Entry] = []
    for key, data in records:
        full = aggregator.add_user_record(key, data)
        if full is not None:
            out.append(full.get_contents())
    last = aggregator.clear_and_get()
    if last is not None:
        out.append(last.get_contents())
    return out


def throughput_rows(records: UserRecords, seconds: float, runs: int) -> list[tuple[str, float]]:
    """(label, user records per CPU-second); the library's row first, as the baseline."""
    n = len(records)

    def library() -> int:
        aggregate_with_library(records)
        return n

    def ours() -> int:
        aggregate(records)
        return n

    def ours_ehk() -> int:
        aggregate(records, explicit_hash_key=True)
        return n

    return [
        ("aws-kinesis-agg RecordAggregator", measure(library, seconds, runs)),
        ("AggregateBuilder", measure(ours, seconds, runs)),
        ("AggregateBuilder + explicit hash key", measure(ours_ehk, seconds, runs)),
    ]


def deaggregate_rows(records: UserRecords, seconds: float, runs: int) -> list[tuple[str, float]]:
    """(label, user records per CPU-second) reading the aggregates back."""
    blobs = [entry[2] for entry in aggregate(records)]
    stock: Any = importlib.import_module("aws_kinesis_agg.deaggregator")
    boto3_shaped = [
        {"SequenceNumber": "1", "PartitionKey": "a", "ApproximateArrivalTimestamp": 0, "Data": b}
        for b in blobs
    ]

    def library() -> int:
        return sum(1 for _ in stock.iter_deaggregate_records(boto3_shaped, data_format="Boto3"))

    def ours() -> int:
        return sum(len(deaggregate(b) or ()) for b in blobs)

    return [
        ("aws-kinesis-agg iter_deaggregate_records", measure(library, seconds, runs)),
        ("parser.kpl.deaggregate", measure(ours, seconds, runs)),
    ]


def payload_unit_rows(records: UserRecords) -> list[tuple[str, float, float, float]]:
    """(bound, user records per PUT, bytes sent per user record, units per 1,000 user records).

    A PUT is billed on data + partition key here (the pricing page does not say; counting the
    key never under-counts), so each bound is on that sum: the builder gets it minus the key.
    """
    key_bytes = max(len(key.encode()) for key, _ in records)
    per_1000 = 1000 / len(records)
    plain = sum(put_payload_units(len(d) + len(k.encode())) for k, d in records)
    plain_bytes = sum(len(d) + len(k.encode()) for k, d in records)
    rows = [("none: one user record per PUT", 1.0, plain_bytes / len(records), plain * per_1000)]
    for label, bound in (
        ("25,000 B (one unit)", 25_000),
        ("50,000 B (two units)", 50_000),
        ("51,200 B data (KPL default)", KPL_DEFAULT_AGGREGATE_BYTES + key_bytes),
        ("1 MiB (service limit)", MAX_RECORD_BYTES),
    ):
        entries = aggregate(records, bound - key_bytes)
        sizes = [len(data) + len(key.encode()) for key, _, data in entries]
        units = sum(put_payload_units(s) for s in sizes)
        rows.append(
            (label, len(records) / len(entries), sum(sizes) / len(records), units * per_1000)
        )
    return rows


def print_rates(title: str, rows: list[tuple[str, float]]) -> None:
    """A rate table; the first row is the baseline the others are compared with."""
    base = rows[0][1]
    print(f"{title:<42} {'user rec/s':>12} {'µs/rec':>8} {'vs library':>11}")
    for label, rate in rows:
        print(f"{label:<42} {rate:>12,.0f} {1e6 / rate:>8.2f} {rate / base:>11.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="per run")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    records = user_records()
    print_rates(
        "aggregate 700 B records, 51,200 B", throughput_rows(records, args.seconds, args.runs)
    )
    print()
    print_rates("deaggregate those aggregates", deaggregate_rows(records, args.seconds, args.runs))
    print()
    print(f"{'aggregate bound (data + key)':<32} {'rec/PUT':>8} {'B/rec':>7} {'units/1k rec':>13}")
    for label, per_put, bytes_per_record, units in payload_unit_rows(records):
        print(f"{label:<32} {per_put:>8.1f} {bytes_per_record:>7.1f} {units:>13.1f}")


if __name__ == "__main__":
    main()
