"""Multi-core (issue 17): CPU seconds per frame of ``gateway run --workers 2`` against
``--workers 1`` under the same load; the aim is a ratio of at most 1.1.

Run: ``.venv/bin/python bench/workers.py [--runs 3] [--seconds 5] [--rate 10000]`` (part of
``make bench``).

Both runs are the real ``gateway run`` (one EVB1 listener on a fixed port, as ``--workers`` needs;
local journal; the default ``journaled`` ACK policy) under the same load from bench/loadgen.py:
``--connections`` EVB1 connections, logged in, sent ``--rate`` frames/s in all, one frame per
write, round-robin (its paced ACK-latency probe). The figure is CPU seconds of every gateway
process (utime + stime from /proc: the process itself, and with 2 workers the supervisor and its
children, the workers) per frame ACKed, over the same window.

Why a fixed offered rate, and nothing pinned: with 2 workers on this 2-core machine there is no
free core for the load generator, so an ACK-clocked flood (bench/ingest.py's peak) would measure
how the load and the workers share the cores, not what a frame costs. Paced below both
capacities (the ACKed rate is printed beside the offered one to show it), both runs do the same
work, and /proc's CPU time counts only the gateway's own cycles wherever it was scheduled. The
gateway and the load are left unpinned in both runs alike, so that the worker count is the only
difference. What remains in the ratio is what 2 workers truly cost more: each sees half the
frames, so its journal batch writes (a write and an fsync each), loop iterations and wake-ups are
amortised over half as many; records per batch write are printed for both. The ratio therefore
depends on the offered rate: a batch write's fixed cost weighs most at low rates, while near a
worker's capacity its batches fill up either way.
Every figure is the median of ``--runs`` runs, the two worker counts interleaved so that drifting
co-tenant load hits both alike; the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from decode import evb1_frames  # noqa: E402
from ingest import Server, tree_cpu_seconds  # noqa: E402
from journal import BATCHES, RECORDS, Row, print_table, scrape  # noqa: E402
from loadgen import ack_latencies  # noqa: E402

WORKER_COUNTS = (1, 2)
AIM = 1.1


def free_port() -> int:
    """A loopback port free now (``--workers`` needs the port fixed before the workers bind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_per_frame(args: argparse.Namespace, workers: int) -> dict[str, float]:
    """One run of ``gateway run --workers {workers}`` under the paced load: CPU seconds per
    frame ACKed, ACKed frames/s, the gateway's CPU seconds per second, and journal records per
    batch write (over the whole run, every worker's)."""
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        config = Path(tmp) / "gateway.toml"
        config.write_text(
            f"[[listeners]]\ncodec = 'evb1'\nhost = '127.0.0.1'\nport = {free_port()}\n"
        )
        server = Server("gateway", Path(tmp) / "data", config=config, workers=workers, cpus=None)
        marks: list[tuple[float, float]] = []  # (monotonic, gateway CPU seconds)
        try:
            samples = uvloop.run(
                ack_latencies(
                    server.port,
                    evb1_frames(4096),
                    args.connections,
                    args.rate,
                    args.seconds,
                    lambda: marks.append((time.monotonic(), tree_cpu_seconds(server.proc.pid))),
                )
            )
            sums = [scrape(url) for url in server.worker_metrics]
        finally:
            server.stop()
    (start, cpu0), (end, cpu1) = marks
    frames, cpu, wall = len(samples), cpu1 - cpu0, end - start
    if not frames:
        raise RuntimeError(f"--workers {workers}: no frame ACKed in the window")
    # The ACKs counted are those of the frames sent in the ``seconds`` the window is open.
    return {
        "cpu_per_frame": cpu / frames,
        "fps": frames / args.seconds,
        "cpu": cpu / wall,
        "batch_records": sum(m[RECORDS] for m in sums) / sum(m[BATCHES] for m in sums),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0, help="measured window of each run")
    ap.add_argument("--rate", type=float, default=10_000.0, help="offered frames/s, in all")
    ap.add_argument("--connections", type=int, default=2000, help="EVB1 connections")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON line there")
    args = ap.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs 2 CPUs: 2 workers")
    if args.runs < 1 or args.seconds <= 0 or args.rate <= 0 or args.connections < 1:
        sys.exit("--runs, --seconds, --rate and --connections must be positive")
    load_before = os.getloadavg()[0]

    runs: dict[str, list[float]] = {}
    for _ in range(args.runs):
        for workers in WORKER_COUNTS:
            for name, value in cpu_per_frame(args, workers).items():
                runs.setdefault(f"w{workers}_{name}", []).append(value)
    med = {name: statistics.median(values) for name, values in sorted(runs.items())}
    one, two = med["w1_cpu_per_frame"] * 1e6, med["w2_cpu_per_frame"] * 1e6
    table = [
        Row("CPU per frame, --workers 1 (µs)", one, None, "", None),
        Row(
            "CPU per frame, --workers 2 vs --workers 1 (µs, all gateway processes)",
            two,
            one,
            f"ratio <= {AIM:g}",
            two <= AIM * one,
        ),
        Row("ACKed frames/s, --workers 1 vs offered", med["w1_fps"], args.rate, "", None),
        Row("ACKed frames/s, --workers 2 vs offered", med["w2_fps"], args.rate, "", None),
    ]
    print(
        f"gateway and load unpinned on {len(os.sched_getaffinity(0))} CPUs; "
        f"{args.connections:,} EVB1 connections, {args.rate:,.0f} frames/s offered, one frame per "
        f"write; journaled, local journal; median of {args.runs} runs x {args.seconds:g} s; "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print_table(table)
    print(
        f"(gateway CPU seconds per second: {med['w1_cpu']:.2f} with 1 worker, "
        f"{med['w2_cpu']:.2f} with 2, supervisor included; journal records per batch write: "
        f"{med['w1_batch_records']:.1f} with 1 worker, {med['w2_batch_records']:.1f} with 2)"
    )
    line = json.dumps(
        {
            "bench": "workers",
            "runs": args.runs,
            "seconds": args.seconds,
            "rate": args.rate,
            "connections": args.connections,
            "rows": [{**row._asdict(), "ratio": row.ratio} for row in table],
            "medians": med,
        }
    )
    print(line)
    if args.json is not None:
        args.json.write_text(line)


if __name__ == "__main__":
    main()
