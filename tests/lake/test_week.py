"""Acceptance: a simulated week of a fleet compacts and aggregates to within 1 % of the truth
the simulator integrated second by second (``gateway.fleet.truth``).

Distance, driving and charging time, energy used and charged and charge sessions hold to 1 %
each vehicle-day. Regenerated energy cannot, from these frames: EVB1 reports the pack's voltage
and current at one instant every 10 s and no energy counter (codecs/evb1.md), and a car
regenerates for 5-15 s at a time (``gateway.fleet.model``: a jerk-limited driver; a stop from
50 km/h regenerates mostly in its first 10 s), so one frame or two fall on each braking and
which part of it they sample is chance. Measured on the simulator alone (112 vehicle-days, no
gateway), the job's step rule (each sample's power over the step that ends at it) is unbiased
and per vehicle-day off by 0.4 % rms for energy used (worst 1.1 %), 0.1 % for charged (worst
0.7 %) and 2.1 % rms for regenerated (worst 5.6 %); a frame every 5 s would give 0.75 % rms
regenerated, every 2 s 0.06 %. Trapezoids are worse (4-5 % low for used, 29-33 % for
regenerated: a braking pulse of about one step is split with its neighbours' draw).

So the test holds two things apart: the job's own arithmetic is exact (its energies equal the
integral of the reported samples computed here, independently, from the JSON lines), and the
sampling error against the truth stays within bounds set from those measurements: 1 % a day for
used and charged (2 of the 112 days measured went past it for used, to 1.1 %), 8 % a day for
regenerated (about 3.5 standard deviations of a day); over the week, the issue's 1 % for every
quantity (this week's fleet: +0.3 % regenerated; 14 of 16 single cars measured within 1 %). A
device reporting an energy counter would be read like the odometer and held to 1 % a day; none
of the codecs has one yet.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tests.lake.lakes import FIRST_DAY, history, lake, partition_file, rows

DAYS = 7


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    base = tmp_path_factory.mktemp("week")
    # EVB1 reports pack voltage and current (energy); Teltonika an odometer and ignition only.
    truth = history(
        base / "data", devices=2, days=DAYS, codecs=("evb1", "teltonika"), faults_per_min=0.005
    )
    for offset in range(DAYS):
        day = (date.fromisoformat(FIRST_DAY) + timedelta(days=offset)).isoformat()
        assert (
            lake(
                "compact",
                "--input",
                str(base / "data"),
                "--output",
                str(base / "lake"),
                "--date",
                day,
                # Each day's records are in that day's files (no backlog, no replay here).
                "--late-days",
                "0",
            )
            == 0
        )
        assert lake("daily", "--lake", str(base / "lake"), "--date", day) == 0
    yield base / "lake", truth


def daily_rows(lake_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for offset in range(DAYS):
        day = (date.fromisoformat(FIRST_DAY) + timedelta(days=offset)).isoformat()
        for row in rows(partition_file(lake_dir, "daily", day)):
            out[row["device_id"], day] = row
    return out


def close(measured: float, truth: float, tolerance: float = 0.01) -> bool:
    return abs(measured - truth) <= tolerance * abs(truth)


def sampled_energy_kwh(data_dir: Path) -> dict[tuple[str, str], dict[str, float]]:
    """Energy used, regenerated and charged per vehicle-day, integrated from the parsed JSON
    lines as ``gateway.lake.daily`` documents it: samples are telemetry with a time and a
    position, speed or SoC, one per time; each step of at most 5 minutes within the day carries
    the later sample's power (+ = into the pack)."""
    samples: dict[tuple[str, str], dict[datetime, dict[str, Any]]] = defaultdict(dict)
    for path in sorted((data_dir / "parsed").iterdir()):
        for line in path.read_text().splitlines():
            if '"codec":"evb1"' not in line or '"kind":"telemetry"' not in line:
                continue  # (only EVB1 reports pack current; skipping the rest is faster)
            record = json.loads(line)
            metrics = record["metrics"]
            if record["ts"] is None:
                continue
            if (record["position"] or {}).get("lat") is None and not (
                {"speed_kmh", "soc_pct"} & metrics.keys()
            ):
                continue
            ts = datetime.fromisoformat(record["ts"])
            key = (record["device_id"], ts.date().isoformat())
            samples[key].setdefault(ts, metrics)
    out = {}
    for key, by_ts in samples.items():
        totals = {"energy_used_kwh": 0.0, "energy_regen_kwh": 0.0, "energy_charged_kwh": 0.0}
        times = sorted(by_ts)
        for before, at in pairwise(times):
            step_s = (at - before).total_seconds()
            metrics = by_ts[at]
            if step_s > 300 or "pack_current_a" not in metrics:
                continue
            energy = metrics["pack_voltage_v"] * metrics["pack_current_a"] * step_s / 3.6e6
            if energy < 0:
                totals["energy_used_kwh"] -= energy
            elif metrics.get("charging"):
                totals["energy_charged_kwh"] += energy
            else:
                totals["energy_regen_kwh"] += energy
        out[key] = totals
    return out


def test_the_energies_are_exactly_the_integral_of_the_reported_samples(
    week: tuple[Path, dict[str, Any]],
) -> None:
    lake_dir, _ = week
    sampled = sampled_energy_kwh(lake_dir.parent / "data")
    checked = 0
    for (device, day), row in daily_rows(lake_dir).items():
        if row["codec"] != "evb1":
            continue
        for key, value in sampled[device, day].items():
            # The job sums whole millijoules per step: 8,640 roundings of at most 0.5 mJ.
            assert abs(row[key] - value) < 1e-5, (device, day, key, row[key], value)
            checked += 1
    assert checked == 3 * DAYS


def test_each_vehicle_day_is_within_one_percent_of_the_truth(
    week: tuple[Path, dict[str, Any]],
) -> None:
    lake_dir, truth = week
    daily = daily_rows(lake_dir)
    assert set(daily) == {(d, day) for d, days in truth.items() for day in days}
    for (device, day), row in daily.items():
        real = truth[device][day]
        where = f"{device} {day}"
        assert row["samples"] == row["expected_samples"] == 8640, where
        # EVB1 also sends heartbeats and CELLS frames; a Teltonika packet holds one record here.
        assert row["frames"] >= row["samples"] + (row["codec"] == "evb1") * 8640 // 3, where
        assert row["completeness"] == 1.0 and row["gaps_over_5min"] == 0, where
        assert row["distance_source"] == "odometer", where
        assert close(row["distance_km"], real["distance_km"]), where
        assert close(row["driving_s"], real["driving_s"]), where
        if row["codec"] != "evb1":
            assert row["energy_used_kwh"] is None  # no pack current reported
            continue
        assert close(row["energy_used_kwh"], real["energy_used_kwh"]), where
        assert close(row["energy_regen_kwh"], real["energy_regen_kwh"], 0.08), where
        assert close(row["energy_charged_kwh"], real["energy_charged_kwh"]), where
        assert close(row["charging_s"], real["charging_s"]), where
        assert row["charge_sessions"] == real["charge_sessions"], where
        assert row["fast_charge_sessions"] == real["fast_charge_sessions"], where


def test_the_week_totals_are_within_one_percent(
    week: tuple[Path, dict[str, Any]],
) -> None:
    lake_dir, truth = week
    daily = daily_rows(lake_dir)
    evb1 = next(d for (d, _), row in daily.items() if row["codec"] == "evb1")
    for key in ("distance_km", "energy_used_kwh", "energy_charged_kwh", "energy_regen_kwh"):
        measured = sum(row[key] for (d, _), row in daily.items() if d == evb1)
        real = sum(day[key] for day in truth[evb1].values())
        assert close(measured, real), (key, measured, real)


def test_faults_show_as_alarms_and_notifications_per_code_and_severity(
    week: tuple[Path, dict[str, Any]],
) -> None:
    lake_dir, _ = week
    daily = daily_rows(lake_dir)
    alarms = {a["code"] for row in daily.values() for a in row["alarms"]}
    notes = {(n["code"], n["severity"]) for row in daily.values() for n in row["notifications"]}
    assert {"EVB1-0x0101", "teltonika_panic"} <= alarms
    assert ("battery_overtemp", "critical") in notes
    assert max(row["cell_temp_max_c"] or 0 for row in daily.values()) >= 60
