"""The chaos run (issue 16): a seeded schedule of faults against the real gateway and a simulated
fleet, then a checker that trusts nothing inside the system.

Run: ``make chaos`` (the short schedule, about 3 minutes) or ``make chaos LONG=1`` (30 minutes);
``.venv/bin/python bench/chaos.py --short|--long [--seed N] [--out report.json]``. Needs root (it
mounts a tmpfs for the journal), node (kinesalite), mosquitto and fiu-utils; moto for SNS.

Pieces (bench/chaos_system.py): ``gateway run`` under ``fiu-run -x`` with TCP listeners for
teltonika, gt06, evb1 and ais140 and an MQTT listener, its data directory on a tmpfs; Kinesis =
kinesalite behind the tests' fault proxy; notifications to a local webhook receiver and to SNS on
moto; the bridge from mosquitto broker A into the pipeline and to broker B. Fleets (``gateway
simulate``) at a fixed modest rate, not a fraction of a measured peak (two shared cores): TCP
devices on every codec, EVB1 units on the MQTT listener and on broker A, with device faults
injected, each logging every ACK it receives; numbered messages published on A for B
(bench/chaos_clients.py). Faults: bench/chaos_faults.py. Checks and table: bench/chaos_check.py.

Exit status 0 when nothing ACKed was lost, every fault recovered (the gateway's ACK rate over 2 s
back to 90 % of before it), the gateway's RSS stayed under 1 GiB and its open fds under 1,024 +
the idle connections + 2 per device + 100, and it exited only when the schedule stopped it; 1
otherwise; 2 when the run could not start. ``--break ack-before-fsync|cursor-before-confirm``
runs a deliberately broken gateway (bench/chaos_break/sitecustomize.py) that must fail it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from chaos_check import check, check_notifications, table  # noqa: E402
from chaos_faults import KINDS, STOPS_ACKS, Hostiles  # noqa: E402
from chaos_observed import (  # noqa: E402
    BridgeB,
    FaultRun,
    Observations,
    acked_frames,
    load_stores,
    webhook_notes,
)
from chaos_system import Load, System  # noqa: E402

BREAKS = ("ack-before-fsync", "cursor-before-confirm")
SAMPLE_S = 1.0
# (fault, start s, duration s): the short schedule, each start moved by the seed within +-2 s.
# The SIGKILL falls inside the Kinesis outage (a restart while Kinesis is unreachable; a shipper
# that saved its cursor before Kinesis confirmed loses records only then). Faults that stop ACKs
# never overlap each other, so that each one's recovery is its own.
SHORT = [
    ("kinesis-outage", 15, 25),
    ("webhook-500", 18, 20),
    ("gateway-sigkill", 28, 2),
    ("kinesis-throttle", 45, 15),
    ("disk-full", 64, 8),
    ("kinesis-5xx", 66, 10),
    ("kinesis-latency", 70, 15),
    ("hostile-storm", 72, 15),
    ("idle-connections", 75, 35),
    ("kinesalite-hung", 90, 8),
    ("write-eio", 92, 6),
    ("gateway-sigterm", 108, 2),
    ("broker-a-restart", 112, 4),
    ("broker-b-restart", 118, 5),
    ("write-enospc", 124, 6),
]
SHORT_END_S = 160.0
SHORT_LOAD = Load(
    tcp_devices=100,
    mqtt_devices=20,
    bridge_devices=20,
    rate_hz=1.0,
    faults_per_min=0.2,
    idle_connections=1000,
)
# The long run: each fault once per round, at a seeded start and duration within these bounds.
LONG_DURATIONS = {
    "kinesis-outage": (60, 300),
    "kinesis-throttle": (30, 120),
    "kinesis-5xx": (20, 90),
    "kinesis-latency": (30, 120),
    "kinesalite-hung": (10, 60),
    "disk-full": (10, 60),
    "write-eio": (5, 30),
    "write-enospc": (5, 30),
    "gateway-sigkill": (1, 10),
    "gateway-sigterm": (1, 10),
    "broker-a-restart": (2, 20),
    "broker-b-restart": (2, 20),
    "webhook-500": (30, 180),
    "hostile-storm": (30, 120),
    "idle-connections": (60, 240),
}
LONG_WARMUP_S, LONG_END_S, LONG_ROUNDS = 30.0, 1800.0, 5
LONG_LOAD = Load(
    tcp_devices=100,
    mqtt_devices=20,
    bridge_devices=20,
    rate_hz=1.0,
    faults_per_min=0.1,
    idle_connections=3000,
)
QUIET_AFTER_STOP_S = 30.0  # between two faults that stop ACKs: room to recover and measure
SHIPPED_WITHIN_S = 240.0
NOTIFIED_WITHIN_S = 90.0


def short_schedule(rng: random.Random) -> list[FaultRun]:
    return [
        FaultRun(name, round(max(1.0, start + rng.uniform(-2, 2)), 1), duration)
        for name, start, duration in SHORT
    ]


def long_schedule(rng: random.Random) -> list[FaultRun]:
    """Each fault once per round, overlapping freely, except that faults stopping ACKs keep
    QUIET_AFTER_STOP_S apart (one that finds no room in its round is left out); the last two
    minutes are left for the last faults to recover."""
    runs: list[FaultRun] = []
    round_s = (LONG_END_S - LONG_WARMUP_S - 120.0) / LONG_ROUNDS
    for n in range(LONG_ROUNDS):
        begin = LONG_WARMUP_S + n * round_s
        for name, (low, high) in LONG_DURATIONS.items():
            for _ in range(100):
                duration = round(rng.uniform(low, high), 1)
                start = round(rng.uniform(begin, begin + round_s - duration), 1)
                fault = FaultRun(name, start, duration)
                if name not in STOPS_ACKS or not any(
                    o.name in STOPS_ACKS
                    and start < o.start + o.duration + QUIET_AFTER_STOP_S
                    and o.start < start + duration + QUIET_AFTER_STOP_S
                    for o in runs
                ):
                    runs.append(fault)
                    break
    return sorted(runs, key=lambda f: f.start)


class AckLog:
    """Lines in one fleet's ACK log so far, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self._offset = 0

    def read(self) -> int:
        try:
            with self.path.open("rb") as file:
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return 0
        self._offset += len(data)
        self.lines += data.count(b"\n")
        return self.lines


def proc_sample(pid: int) -> tuple[float, int] | None:
    """(RSS MB, open fds) of ``pid`` from /proc; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return rss_kb / 1024, fds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    if args.long:
        schedule, end_s, load, warmup = long_schedule(rng), LONG_END_S, LONG_LOAD, LONG_WARMUP_S
    else:
        schedule, end_s, load = short_schedule(rng), SHORT_END_S, SHORT_LOAD
        warmup = min(f.start for f in schedule)
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - KINDS.keys()
        if unknown:
            print(
                f"chaos: --only: unknown faults {sorted(unknown)}; known: {sorted(KINDS)}",
                file=sys.stderr,
            )
            return 2
        schedule = [f for f in schedule if f.name in wanted]
    for fault in schedule:
        fault.stops_acks = fault.name in STOPS_ACKS
    if args.schedule_only:
        print_schedule(args, schedule, end_s, load, Path("-"))
        return 0
    work = Path(args.work or tempfile.mkdtemp(prefix="chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out or work / "chaos-report.json")
    print_schedule(args, schedule, end_s, load, work)
    system = System(
        work,
        load,
        args.seed,
        tmpfs_bytes=(2 << 30) if args.long else (512 << 20),
        broken=args.broken,
        log=lambda m: say(system, m),
    )
    # SIGTERM/SIGINT end the run through the finally below: nothing is left running.
    signal.signal(signal.SIGTERM, interrupted)
    hostiles: Hostiles | None = None
    try:
        try:
            system.start()
        except (RuntimeError, OSError, TimeoutError) as exc:
            print(f"chaos: cannot start: {exc}", file=sys.stderr)
            return 2
        system.start_fleets()
        hostiles = Hostiles(system, args.seed)
        system.started, system.wall_started = time.monotonic(), time.time()
        obs = run(system, hostiles, schedule, end_s, warmup, load)
        report = finish(system, obs)
    finally:
        if hostiles is not None:
            hostiles.close()
        system.close()
    report.update(
        seed=args.seed,
        schedule="long" if args.long else "short",
        broken=args.broken,
        load=asdict(load),
        fleets={f.source: f.summary for f in system.fleets},
    )
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(
        json.dumps(
            {k: report[k] for k in ("acked", "lost", "duplicates", "notifications", "max_fds")}
        )
    )
    for problem in report["problems"]:
        print(f"chaos: FAIL: {problem}")
    print(f"chaos: report in {out}; logs in {work}")
    return 1 if report["problems"] else 0


def interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    length = p.add_mutually_exclusive_group()
    length.add_argument("--short", action="store_true", help="the ~3 minute schedule (default)")
    length.add_argument("--long", action="store_true", help="the 30 minute schedule")
    p.add_argument("--seed", type=int, default=16, help="schedule and fleet seed (default 16)")
    p.add_argument("--out", help="the JSON report (default: <work>/chaos-report.json)")
    p.add_argument("--work", help="directory for logs and the tmpfs (default: a new one in /tmp)")
    p.add_argument("--schedule-only", action="store_true", help="print the schedule, run nothing")
    p.add_argument("--only", help="a comma list of faults: the schedule's entries of those alone")
    p.add_argument(
        "--break",
        dest="broken",
        choices=BREAKS,
        help="run a deliberately broken gateway, which the checker must catch",
    )
    return p.parse_args(argv)


def say(system: System, message: str) -> None:
    print(f"[{system.clock():7.1f}s] {message}", flush=True)


def print_schedule(
    args: argparse.Namespace, schedule: list[FaultRun], end_s: float, load: Load, work: Path
) -> None:
    print(
        f"chaos: seed {args.seed}, {'long' if args.long else 'short'} schedule of {end_s:.0f} s,"
        f" work dir {work}" + (f", BROKEN BUILD: {args.broken}" if args.broken else "")
    )
    print(f"chaos: load {asdict(load)}")
    for f in schedule:
        print(f"  {f.start:7.1f}s  +{f.duration:6.1f}s  {f.name:<18} {KINDS[f.name].about}")
    sys.stdout.flush()


def run(
    system: System,
    hostiles: Hostiles,
    schedule: list[FaultRun],
    end_s: float,
    warmup: float,
    load: Load,
) -> Observations:
    """The schedule on the clock, sampling ACKs and the gateway's /proc once a second."""
    events = sorted(
        [(f.start, 1, "start", f) for f in schedule]
        + [(f.start + f.duration, 0, "end", f) for f in schedule],
        key=lambda e: (e[0], e[1]),
    )
    logs = {fleet.source: AckLog(fleet.acked_log) for fleet in system.fleets}
    acks: dict[str, list[tuple[float, int]]] = {source: [] for source in logs}
    proc: list[tuple[float, float, int]] = []
    next_sample = 0.0
    while True:
        now = system.clock()
        while events and events[0][0] <= now:
            _, _, action, fault = events.pop(0)
            kind = KINDS[fault.name]
            say(system, f"{action} {fault.name}")
            if action == "start":
                fault.began = system.clock()
                kind.start(system, hostiles)
            else:
                kind.end(system, hostiles)
                fault.ended = system.clock()
        if now >= next_sample:
            for source, log in logs.items():
                acks[source].append((now, log.read()))
            pid = system.gateway_pid()
            sample = proc_sample(pid) if pid is not None else None
            if sample is not None:
                proc.append((now, *sample))
            system.check_gateway(now)
            system.flush_gateway_log()
            next_sample = now + SAMPLE_S
        if now >= end_s and not events:
            break
        time.sleep(0.1)
    run_end = system.clock()
    say(system, "stopping the fleets")
    system.stop_fleets()
    after = system.clock()
    for source, log in logs.items():
        acks[source].append((after, log.read()))
    devices = load.tcp_devices + load.mqtt_devices
    return Observations(
        faults=schedule,
        acks=acks,
        acked_logs={source: log.path for source, log in logs.items()},
        proc=proc,
        exits=[(e.t, e.status, e.expected) for e in system.exits],
        warmup_end=warmup,
        run_end=run_end,
        wall_start=system.wall_started,
        b_acked_log=system.work / "a-acked.jsonl",
        b_received_log=system.work / "b-received.jsonl",
        rss_limit_mb=1024.0,
        fd_limit=1024 + load.idle_connections + 2 * devices + 100,
    )


def finish(system: System, obs: Observations) -> dict[str, Any]:
    """Wait for the shippers, the notifications and broker B to catch up (each within its
    bound: what is still missing then is reported), stop the gateway, check."""
    gw = system.gateway
    assert gw is not None and system.kinesalite is not None and system.webhook is not None
    webhook_log = system.webhook.log.path

    def shipped() -> bool:
        try:
            return gw.metric("gateway_shipper_lag_records") == 0
        except OSError:  # URLError included: the gateway is down (a restart failed)
            return False

    def targets() -> dict[str, list[dict[str, Any]]]:
        notes = {"webhook": webhook_notes(webhook_log)}
        if system.sns is not None:
            notes["sns"] = system.sns.drain()
        return notes

    def notified() -> bool:
        return not any(check_notifications(frames, n)["missing_open"] for n in targets().values())

    frames = acked_frames(obs)
    waits = [
        ("the Kinesis shippers", SHIPPED_WITHIN_S, shipped),
        ("the notification targets", NOTIFIED_WITHIN_S, notified),
        ("broker B", SHIPPED_WITHIN_S, lambda: not BridgeB.read(obs).lost()),
    ]
    for name, within_s, done in waits:
        say(system, f"waiting for {name}")
        deadline = time.monotonic() + within_s
        while not done() and time.monotonic() < deadline:
            time.sleep(1.0)
    status = system.kill_gateway(system.clock(), signal.SIGTERM)
    obs.exits = [(e.t, e.status, e.expected) for e in system.exits]
    say(system, f"gateway stopped (status {status}); checking")
    stores = load_stores(
        system.data_dir, system.kinesalite, system.raw_stream, system.parsed_stream
    )
    return check(obs, stores, targets())


if __name__ == "__main__":
    sys.exit(main())
