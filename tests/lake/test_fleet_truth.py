"""The simulator's ground truth (``gateway.fleet.truth``) and its fast history writer."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from gateway.fleet.history import TRUTH_FILE, FleetHistory, HistoryConfig
from gateway.fleet.model import Vehicle
from gateway.fleet.truth import TruthMeter
from gateway.pipeline.registry import CodecRegistry, default_layout_dirs

MIDNIGHT = 1_780_012_800  # 2026-05-29T00:00:00Z


def test_the_meter_splits_a_run_across_midnight_by_day() -> None:
    vehicle = Vehicle(random.Random("truth"), MIDNIGHT - 600.0)
    start_km = vehicle.odometer_km
    meter = TruthMeter(vehicle)
    for t in range(MIDNIGHT - 590, MIDNIGHT + 1200, 10):
        vehicle.step(float(t))
    days = meter.days
    assert sorted(days) == ["2026-05-28", "2026-05-29"]
    travelled = sum(day.distance_km for day in days.values())
    assert abs(travelled - (vehicle.odometer_km - start_km)) < 1e-9
    # 600 s before midnight and 1190 s after it, second by second.
    assert sum(d.driving_s + d.charging_s for d in days.values()) <= 1790
    assert all(day.energy_used_kwh >= 0 and day.energy_charged_kwh >= 0 for day in days.values())


def test_history_writes_each_stream_per_day_and_the_truth(tmp_path: Path) -> None:
    registry = CodecRegistry.load(default_layout_dirs())
    config = HistoryConfig(devices=2, start=MIDNIGHT, days=1, codecs=("evb1", "teltonika"))
    history = FleetHistory(config, registry.create, None)
    truth = history.run(tmp_path)
    assert sorted(p.name for p in (tmp_path / "parsed").iterdir()) == [
        "parsed-20260529T000000Z-1-0001.jsonl"
    ]
    lines = (tmp_path / "parsed" / "parsed-20260529T000000Z-1-0001.jsonl").read_bytes()
    records = [json.loads(line) for line in lines.splitlines()]
    assert {r["codec"] for r in records} == {"evb1", "teltonika"}
    assert {r["kind"] for r in records} >= {"login", "telemetry", "heartbeat"}
    # A frame every 10 s all day long, per device.
    for device in truth:
        telemetry = [r for r in records if r["device_id"] == device and r["kind"] == "telemetry"]
        assert len({r["ts"] for r in telemetry}) >= 8640 - 1
    written = [json.loads(line) for line in (tmp_path / TRUTH_FILE).read_text().splitlines()]
    assert {(t["device_id"], t["date"]) for t in written} == {(d, "2026-05-29") for d in truth}


def test_gateway_simulate_history_writes_days_and_truth_at_once(tmp_path: Path) -> None:
    gateway = str(Path(sys.executable).with_name("gateway"))
    common = ["simulate", "--history", "1", "--devices", "1", "--rate", "0.05", "--seed", "3"]
    result = subprocess.run(
        [gateway, *common, "--data-dir", str(tmp_path), "--start", "2026-05-29"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["start"] == "2026-05-29" and summary["records"]["parsed"] > 86_400 // 20
    (truth,) = [json.loads(line) for line in (tmp_path / TRUTH_FILE).read_text().splitlines()]
    assert truth["date"] == "2026-05-29" and truth["distance_km"] > 0
    bad = subprocess.run(
        [gateway, *common, "--data-dir", str(tmp_path), "--start", "29/05/2026"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--start" in bad.stderr
