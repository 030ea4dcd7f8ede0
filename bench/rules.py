"""Cost of notification rules per reading: 5 rules over EVB1-like telemetry readings.

Run: ``.venv/bin/python bench/rules.py [--readings N] [--runs R]``. Times with
``process_time`` and prints the median of several runs, in µs per reading, for: an empty loop
over the same readings (the floor), readings no rule watches, watched readings with nothing
firing, watched readings where two rules open or clear on every reading (a worst case), and
alarm readings. A second floor calls a no-op ``evaluate`` with the same arguments, so the net
column is what the engine itself adds.

A second table is what ``Pipeline.accept`` pays per one-reading frame: ``parsed_records`` alone
(the baseline, no notifications configured) against ``evaluate_frame`` with the engine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from parser.records import RAW_SCHEMA, Alarm, MetricValue, RawRecord, Reading, parsed_records
from parser.rules import NotificationEngine, evaluate_frame, parse_rules

RULES = parse_rules(
    [
        {"code": "battery_overtemp", "metric": "cell_temp_max_c", "op": ">=", "threshold": 60,
         "hold_s": 10, "severity": "critical", "clear_threshold": 55},
        {"code": "low_soc", "metric": "soc_pct", "op": "<", "threshold": 10, "severity": "warning",
         "clear_threshold": 15},
        {"code": "cell_undervoltage", "metric": "cell_voltage_min_v", "op": "<", "threshold": 2.8,
         "severity": "critical"},
        {"code": "motor_overtemp", "metric": "motor_temp_c", "op": ">", "threshold": 120,
         "severity": "warning"},
        {"code": "pack_overcurrent", "metric": "pack_current_a", "op": "<", "threshold": -400,
         "severity": "warning"},
    ]
)  # fmt: skip
DEVICES = 1000
T0_MS = 1_560_161_086_000


def evb1_metrics(i: int, firing: bool) -> dict[str, MetricValue]:
    """The 18 metrics of an EVB1 telemetry reading; ``firing`` toggles SoC and motor rules."""
    low = firing and i % 2 == 0
    return {
        "speed_kmh": 52.3,
        "soc_pct": 8.0 if low else 64.5,
        "soh_pct": 97,
        "pack_voltage_v": 398.2,
        "pack_current_a": -42.1,
        "cell_voltage_min_v": 3.71,
        "cell_voltage_max_v": 3.74,
        "cell_temp_min_c": 24,
        "cell_temp_max_c": 31,
        "motor_rpm": 4200,
        "motor_temp_c": 130 if low else 71,
        "odometer_km": 12345.6,
        "ignition": True,
        "charging": False,
        "regen": False,
        "gps_valid": True,
        "fast_charge": False,
        "hv_interlock": True,
    }


def make(n: int, kind: str) -> list[tuple[str, Reading]]:
    out = []
    for i in range(n):
        device = f"dev{i % DEVICES}"
        # Each device alternates firing/not on successive readings, so opens and clears follow.
        cycle = i // DEVICES
        if kind == "unwatched":
            metrics: dict[str, MetricValue] = {"rssi_dbm": -71, "uptime_s": 3600 + i}
            r = Reading("heartbeat", T0_MS + i, metrics=metrics)
        elif kind == "alarm":
            alarm = Alarm("EVB1-0x0102", "critical", "bms", 7)
            r = Reading("alarm", T0_MS + i, alarms=(alarm,))
        else:
            r = Reading("telemetry", T0_MS + i, metrics=evb1_metrics(cycle, kind == "firing"))
        out.append((device, r))
    return out


def timed(body: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.process_time()
        body()
        samples.append(time.process_time() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    n: int = args.readings

    def empty_loop(pairs: list[tuple[str, Reading]]) -> Callable[[], object]:
        def body() -> object:
            last = None
            for device, r in pairs:
                last = (device, r)
            return last

        return body

    def call_loop(pairs: list[tuple[str, Reading]]) -> Callable[[], object]:
        # The bench loop's own work (step arithmetic, a tuple, a call, len) with no engine.
        def evaluate(
            device: str, raw: str, rs: tuple[Reading, ...], now: float, ms: int
        ) -> list[int]:
            return []

        def body() -> object:
            emitted = 0
            for step, (device, r) in enumerate(pairs):
                emitted += len(evaluate(device, "raw", (r,), step * 0.01, T0_MS + step))
            return emitted

        return body

    def engine_loop(pairs: list[tuple[str, Reading]]) -> Callable[[], int]:
        def body() -> int:
            eng = NotificationEngine(RULES, reminder_s=300.0, rate_per_s=1e9, burst=10**9)
            emitted = 0
            for step, (device, r) in enumerate(pairs):
                emitted += len(eng.evaluate(device, "raw", (r,), step * 0.01, T0_MS + step))
            return emitted

        return body

    print(f"{n} readings, {DEVICES} devices, {len(RULES)} rules; median of {args.runs} runs")
    for kind in ("unwatched", "quiet", "firing", "alarm"):
        pairs = make(n, kind)
        emitted = engine_loop(pairs)()
        floor = timed(empty_loop(pairs), args.runs) / n * 1e6
        call = timed(call_loop(pairs), args.runs) / n * 1e6
        cost = timed(engine_loop(pairs), args.runs) / n * 1e6
        print(
            f"{kind:>9}: {cost:6.3f} µs/reading  (empty loop {floor:5.3f}, no-op call {call:5.3f}, "
            f"net of call {cost - call:6.3f})  {emitted / n:4.2f} notifications/reading"
        )

    def frames(pairs: list[tuple[str, Reading]]) -> list[tuple[RawRecord, tuple[Reading, ...]]]:
        return [
            (RawRecord(RAW_SCHEMA, f"raw{i}", device, "evb1", "tcp", None, "", b""), (r,))
            for i, (device, r) in enumerate(pairs)
        ]

    def baseline_loop(items: list[tuple[RawRecord, tuple[Reading, ...]]]) -> Callable[[], object]:
        def body() -> object:
            for raw, rs in items:
                parsed_records(raw, rs)
            return None

        return body

    def frame_loop(items: list[tuple[RawRecord, tuple[Reading, ...]]]) -> Callable[[], object]:
        def body() -> object:
            eng = NotificationEngine(RULES, reminder_s=300.0, rate_per_s=1e9, burst=10**9)
            for step, (raw, rs) in enumerate(items):
                evaluate_frame(eng, raw, rs, step * 0.01, T0_MS + step)
            return None

        return body

    print("\nper one-reading frame, as Pipeline.accept calls it")
    for kind in ("unwatched", "quiet", "firing"):
        items = frames(make(n, kind))
        base = timed(baseline_loop(items), args.runs) / n * 1e6
        cost = timed(frame_loop(items), args.runs) / n * 1e6
        print(
            f"{kind:>9}: evaluate_frame {cost:6.3f} µs/frame  (parsed_records alone {base:5.3f}, "
            f"rules add {cost - base:6.3f})"
        )


if __name__ == "__main__":
    main()
