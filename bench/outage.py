"""Kinesis unreachable for minutes while a fleet sends at a steady rate (issue 15's acceptance).

Run: ``.venv/bin/python bench/outage.py [--outage-s 600] [--devices 300]`` (about outage + 6 min).

The real pieces on loopback: kinesalite behind the test suite's fault proxy, ``gateway run`` with
its journal in a temporary directory, ``gateway simulate`` logging every ACK it receives. Phases:
Kinesis up (``--before-s``), connections refused for ``--outage-s`` with the gateway SIGKILLed
and restarted half way through (same data directory: shipping resumes from the cursors), Kinesis
up again (``--after-s``). Printed per phase: frames ACKed per second, the gateway's ACK latency
p99 (from its own histogram, so bucket bounds), whether devices were paused; then the drain time
of the backlog and the check that every frame the fleet saw ACKed is in the raw and parsed
streams (deaggregated), duplicates only as shared ids.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.gateway.gatewayproc import GatewayProcess, wait_for  # noqa: E402
from tests.gateway.sinks.kinesis.emulator import Kinesalite, unique_stream_name  # noqa: E402
from tests.gateway.sinks.kinesis.fault_proxy import FaultProxy  # noqa: E402
from tests.gateway.sinks.kinesis.harness import (  # noqa: E402
    AWS_ENV,
    CODECS,
    acked_count,
    assert_acked_frames_in_both_streams,
    assert_duplicates_share_ids,
    finish,
    simulate,
    start_gateway,
    write_config,
)

LATENCY = "gateway_ack_latency_seconds"


def buckets(gw: GatewayProcess) -> dict[float, float]:
    """The gateway's ACK latency histogram: upper bound -> cumulative count (every series)."""
    found: dict[float, float] = {}
    for key, value in gw.metrics().items():
        name, _, labels = key.partition("{")
        if name == f"{LATENCY}_bucket":
            le = labels.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            found[bound] = found.get(bound, 0.0) + value
    return found


def p99(start: dict[float, float], end: dict[float, float]) -> str:
    """The bucket bound under which 99 % of the ACKs between two scrapes fall."""
    counts = {b: end[b] - start.get(b, 0.0) for b in end}
    total = counts.get(float("inf"), 0.0)
    if total <= 0:
        return "-"
    for bound in sorted(counts):
        if counts[bound] >= 0.99 * total:
            return f"≤ {bound * 1000:g} ms"
    return "-"


def restart(gw: GatewayProcess, tmp: Path, endpoint: str, raw: str, parsed: str) -> GatewayProcess:
    """``gw`` again on its data directory and its device ports (the fleet reconnects there)."""
    config = write_config(tmp, endpoint, raw, parsed)
    text = config.read_text()
    for codec in CODECS:
        listener = f"codec = '{codec}'\nhost = '127.0.0.1'\nport = "
        text = text.replace(listener + "0", listener + str(gw.ports[codec]))
    config.write_text(text)
    return GatewayProcess(gw.data_dir, codecs=(), config=config, env=AWS_ENV)


class Phase:
    def __init__(self, name: str, tmp: Path, gw: GatewayProcess) -> None:
        self.name = name
        self._tmp = tmp
        self.acked = acked_count(tmp)
        self.at = time.monotonic()
        self.hist = buckets(gw)
        self.paused_s = gw.metric("gateway_paused_seconds_total")

    def end(self, gw: GatewayProcess) -> dict[str, object]:
        seconds = time.monotonic() - self.at
        return {
            "phase": self.name,
            "seconds": round(seconds),
            "acked_per_s": round((acked_count(self._tmp) - self.acked) / seconds, 1),
            "ack_p99": p99(self.hist, buckets(gw)),
            "paused_s": round(gw.metric("gateway_paused_seconds_total") - self.paused_s, 1),
            "unshipped_bytes": gw.metric("gateway_journal_unshipped_bytes"),
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outage-s", type=float, default=600.0)
    ap.add_argument("--before-s", type=float, default=60.0)
    ap.add_argument("--after-s", type=float, default=120.0)
    ap.add_argument("--devices", type=int, default=300)
    ap.add_argument("--rate", type=float, default=0.5, help="frames/s per device")
    args = ap.parse_args()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        kinesalite = Kinesalite()
        proxy = FaultProxy(kinesalite.endpoint)
        proxy.start()
        raw, parsed = unique_stream_name("raw"), unique_stream_name("parsed")
        kinesalite.create_stream(raw, 2)
        kinesalite.create_stream(parsed, 2)
        total = args.before_s + args.outage_s + args.after_s + 30
        gw = start_gateway(tmp, proxy.url, raw, parsed)
        sim = simulate(gw, tmp, args.devices, total, rate=args.rate)
        try:
            wait_for(lambda: acked_count(tmp) > 0, timeout=30)
            phase = Phase("kinesis up", tmp, gw)
            time.sleep(args.before_s)
            rows.append(phase.end(gw))
            proxy.update(refuse_connections=True)
            phase = Phase("outage", tmp, gw)
            time.sleep(args.outage_s / 2)
            rows.append(phase.end(gw))
            gw.proc.send_signal(signal.SIGKILL)
            gw.proc.wait(10)
            gw = restart(gw, tmp, proxy.url, raw, parsed)
            phase = Phase("outage, after SIGKILL + restart", tmp, gw)
            time.sleep(args.outage_s / 2)
            rows.append(phase.end(gw))
            proxy.update(refuse_connections=False)
            recovered = time.monotonic()
            phase = Phase("kinesis back", tmp, gw)
            wait_for(lambda: gw.metric("gateway_journal_unshipped_bytes") == 0, timeout=600)
            drained_s = time.monotonic() - recovered
            time.sleep(max(0.0, args.after_s - drained_s))
            rows.append(phase.end(gw))
            summary = finish(sim)
        finally:
            if sim.poll() is None:
                sim.kill()
            code = gw.stop()
        found = assert_acked_frames_in_both_streams(tmp, kinesalite, raw, parsed, timeout=120)
        copies = assert_duplicates_share_ids(found.raw)
        proxy.stop()
        kinesalite.stop()
    width = max(len(str(r["phase"])) for r in rows)
    print(f"{'phase':{width}}  seconds  acked/s  ack p99       paused s  unshipped bytes at end")
    for r in rows:
        print(
            f"{r['phase']!s:{width}}  {r['seconds']!s:>7}  {r['acked_per_s']!s:>7}  "
            f"{r['ack_p99']!s:12}  {r['paused_s']!s:>8}  {r['unshipped_bytes']:.0f}"
        )
    print(
        f"backlog drained in {drained_s:.0f} s; fleet: {summary['acked']} ACKed, "
        f"{summary['unacked']} unACKed; every ACKed frame in raw and parsed "
        f"({found.acked} checked); {copies} duplicate copies, each under its one id; "
        f"gateway exit {code}"
    )
    print(json.dumps({"phases": rows, "drained_s": drained_s, "duplicates": copies}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
