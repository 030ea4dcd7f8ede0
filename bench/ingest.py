"""Ingest throughput of ``gateway run`` against the physical limit of a request/ACK protocol.

Run: ``.venv/bin/python bench/ingest.py [--runs 3] [--seconds 5]`` (``make bench-ingest``).

The server under test is pinned to CPU 0 and the load generator to CPU 1. Baseline, measured in
the same run: a minimal uvloop ``Protocol`` that cuts the same EVB1 frames by their length field
and writes a fixed 11-byte ACK per frame — no decode, no records, no sink. The gateway runs its
real pipeline: decode, raw and parsed records, local sink with fsync per batch, and ACK only
after delivery. Load: pre-encoded EVB1 telemetry from many connections, each keeping a window of
un-ACKed frames (as an EVB1 unit may), written one frame per ``write()`` (the device pattern: one
frame per TCP segment) or ``--batch`` frames per write. Rates are per core: frames ACKed per
second divided by the server's CPU seconds per second (as in shared/research/perf.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from decode import evb1_frames  # noqa: E402  (the same frames bench/decode.py measures)
from loadgen import ack_latencies, blast, idle_connections, login_frame  # noqa: E402

GATEWAY = str(Path(sys.executable).with_name("gateway"))
ACK_BYTES = 11


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its children (the workers of ``gateway run --workers N``)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return cpu_seconds(pid) + sum(cpu_seconds(int(child)) for child in children)


class Server:
    """A server process pinned to ``cpus`` (None: not pinned), listening on ``port``; the
    gateway's ``metrics`` URL (its first worker's with ``workers`` > 1; every worker's in
    ``worker_metrics``).

    ``config``: a settings file for the gateway whose ``listeners`` replace ``--listen`` (fixed
    ports with ``workers`` > 1: the gateway refuses port 0 then)."""

    def __init__(
        self,
        kind: str,
        data_dir: Path,
        env: dict[str, str] | None = None,
        config: Path | None = None,
        workers: int = 1,
        cpus: str | None = "0",
    ) -> None:
        self.kind = kind
        listen = ["--listen", "evb1=127.0.0.1:0"] if config is None else ["--config", str(config)]
        if kind == "baseline":
            args = [sys.executable, str(ROOT / "bench" / "sink_server.py")]
        else:
            args = [
                GATEWAY,
                "run",
                *listen,
                "--data-dir",
                str(data_dir),
                "--metrics",
                "127.0.0.1:0",
                "--health",
                "127.0.0.1:0",
                *(["--workers", str(workers)] if workers > 1 else []),
            ]
        environ = {**os.environ, "GATEWAY_LOG__FORMAT": "json", "GATEWAY_LOG__LEVEL": "warning"}
        if kind == "gateway":
            # The ready line is logged at info; keep it, silence connection lines instead.
            environ["GATEWAY_LOG__LEVEL"] = "info"
        self.proc = subprocess.Popen(
            args if cpus is None else ["taskset", "-c", cpus, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**environ, **(env or {})},
        )
        assert self.proc.stdout is not None
        self.port = 0
        self.worker_metrics: list[str] = []
        ready = 0  # every worker logs its own ready line once its ports are bound
        for raw in self.proc.stdout:
            line = json.loads(raw)
            if line.get("event") == "ready":
                self.port = line["listeners"][0]["port"]
                self.worker_metrics.append(line.get("metrics") or "")
                ready += 1
                if ready == workers:
                    break
        self.metrics = self.worker_metrics[0] if self.worker_metrics else ""
        if not self.port:
            raise RuntimeError(f"{kind} did not start")
        # Drain the rest of the log so the server never blocks on a full pipe.
        self._reader = threading.Thread(target=self.proc.stdout.read, daemon=True)
        self._reader.start()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._reader.join(5)


def measure(kind: str, args: argparse.Namespace, batch: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ingest-") as tmp:
        server = Server(kind, Path(tmp))
        try:
            return flood(server, args, batch)
        finally:
            server.stop()


def flood(server: Server, args: argparse.Namespace, batch: int) -> dict[str, float]:
    """ACK-clocked load on ``server`` from CPU 1: frames/s, server CPU share, frames per CPU-s."""
    frames = evb1_frames(4096)
    os.sched_setaffinity(0, {1})
    start_cpu = [0.0]

    def mark() -> None:
        start_cpu[0] = cpu_seconds(server.proc.pid)

    acked, wall = uvloop.run(
        blast(
            server.port,
            frames,
            args.connections,
            args.window,
            batch,
            args.warmup,
            args.seconds,
            mark,
        )
    )
    cpu = cpu_seconds(server.proc.pid) - start_cpu[0]
    return {"fps": acked / wall, "cpu": cpu / wall, "per_core": acked / cpu if cpu else 0.0}


def latency(kind: str, args: argparse.Namespace, rate: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="ingest-") as tmp:
        server = Server(kind, Path(tmp))
        try:
            return ack_percentiles(server, args, rate)
        finally:
            server.stop()


def ack_percentiles(server: Server, args: argparse.Namespace, rate: float) -> tuple[float, float]:
    """p50 and p99 ACK latency (ms) of ``server`` under ``rate`` frames/s, one per write."""
    frames = evb1_frames(4096)
    samples = uvloop.run(ack_latencies(server.port, frames, args.connections, rate, args.seconds))
    if not samples:
        raise RuntimeError(f"no ACK came back in the {args.seconds:g} s window at {rate:,.0f}/s")
    samples.sort()
    return samples[len(samples) // 2] * 1e3, samples[int(len(samples) * 0.99)] * 1e3


def idle_rss(kind: str, count: int) -> float:
    """Bytes of server RSS per idle connection (logged in for the gateway)."""
    with tempfile.TemporaryDirectory(prefix="ingest-") as tmp:
        server = Server(kind, Path(tmp))
        try:
            logins = [] if kind == "baseline" else [login_frame(i) for i in range(count)]
            return uvloop.run(
                idle_connections(server.port, count, logins, lambda: rss_kb(server.proc.pid) * 1024)
            )
        finally:
            server.stop()


def throughput_and_latency(args: argparse.Namespace) -> dict[str, object]:
    """Prints the throughput and latency rows; returns their medians (for ``--json``)."""
    print(f"{'mode':<24} {'server':<9} {'frames/s':>10} {'CPU':>6} {'per core':>10} {'ratio':>7}")
    peak_gateway = 0.0
    figures: dict[str, object] = {}
    for label, batch in (("1 frame per write", 1), (f"{args.batch} frames per write", args.batch)):
        rows: dict[str, list[dict[str, float]]] = {"baseline": [], "gateway": []}
        for _ in range(args.runs):  # interleaved, so drifting co-tenant load hits both alike
            for kind, results in rows.items():
                results.append(measure(kind, args, batch))
        med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in rows.items()}
        for kind in ("baseline", "gateway"):
            ratio = med[kind]["per_core"] / med["baseline"]["per_core"]
            print(
                f"{label:<24} {kind:<9} {med[kind]['fps']:>10,.0f} {med[kind]['cpu']:>6.0%} "
                f"{med[kind]['per_core']:>10,.0f} {ratio:>7.2f}"
            )
        figures["one_per_write" if batch == 1 else "batched"] = med
        if batch == 1:
            peak_gateway = med["gateway"]["fps"]

    rate = peak_gateway / 2
    print(f"\nACK latency at half of the gateway's peak ({rate:,.0f} frames/s, 1 frame per write)")
    latencies: dict[str, object] = {"rate": rate}
    for kind in ("baseline", "gateway"):
        p50, p99 = latency(kind, args, rate)
        latencies[kind] = {"p50_ms": p50, "p99_ms": p99}
        print(f"  {kind:<9} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
    figures["latency"] = latencies
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--window", type=int, default=8, help="un-ACKed frames per connection")
    ap.add_argument("--batch", type=int, default=8, help="frames per write in batched mode")
    ap.add_argument("--idle", type=int, default=10_000, help="idle connections for the RSS row")
    ap.add_argument("--only-idle", action="store_true", help="measure only the RSS row")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs 2 CPUs: the server on one, the load on the other")

    result: dict[str, object] = {"bench": "ingest", "args": vars(args)}
    if not args.only_idle:
        result.update(throughput_and_latency(args))
    print(f"\nRSS per idle connection ({args.idle:,} connections, EVB1 logged in for the gateway)")
    idle_bytes: dict[str, float] = {}
    for kind in ("baseline", "gateway"):
        idle_bytes[kind] = per_conn = idle_rss(kind, args.idle)
        print(f"  {kind:<9} {per_conn / 1024:6.2f} KB per connection")
    result["idle_bytes_per_connection"] = idle_bytes
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
