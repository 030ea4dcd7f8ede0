"""Acceptance: a simulated week of a fleet compacts and aggregates to within 1 % of the truth
the simulator integrated second by second (``gateway.fleet.truth``).

Distance, driving and charging time, charged energy and charge sessions hold to 1 % each day.
The energy a car uses and regenerates moves with every acceleration and braking (a few seconds
each): a frame every 10 s samples it, and sampling the simulator's own physics that way (no
gateway involved) is 2-4 % off on a day, either way, and within 0.5 % over the week: energy
used is held to 5 % a day and 1 % over the week. Regeneration comes in the shortest bursts (a
braking to a stop lasts about 6 s) and is held to 5 % over the week (2 % off here).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
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
        assert close(row["energy_used_kwh"], real["energy_used_kwh"], 0.05), where
        assert close(row["energy_charged_kwh"], real["energy_charged_kwh"]), where
        assert close(row["charging_s"], real["charging_s"]), where
        assert row["charge_sessions"] == real["charge_sessions"], where
        assert row["fast_charge_sessions"] == real["fast_charge_sessions"], where


def test_the_week_totals_are_within_one_percent_regeneration_within_five(
    week: tuple[Path, dict[str, Any]],
) -> None:
    lake_dir, truth = week
    daily = daily_rows(lake_dir)
    evb1 = next(d for (d, _), row in daily.items() if row["codec"] == "evb1")
    for key in ("distance_km", "energy_used_kwh", "energy_charged_kwh", "energy_regen_kwh"):
        measured = sum(row[key] for (d, _), row in daily.items() if d == evb1)
        real = sum(day[key] for day in truth[evb1].values())
        tolerance = 0.05 if key == "energy_regen_kwh" else 0.01
        assert close(measured, real, tolerance), (key, measured, real)


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
