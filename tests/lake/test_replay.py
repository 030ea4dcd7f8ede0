"""Replayed history and live ingest give the same lake: ``gateway replay`` of the raw records
the live pipeline wrote (here: the simulator's history, built as the pipeline builds records)
compacts to the same parsed file and aggregates to the same daily rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.cli.main import main as gateway
from tests.lake.lakes import FIRST_DAY, lake, partition_file, rows


def test_replayed_history_gives_the_daily_rows_live_ingest_gives(
    fleet_days: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = fleet_days
    replayed = tmp_path / "replayed"
    shutil.copytree(live / "raw", replayed / "raw")
    assert (
        gateway(["replay", str(replayed / "raw"), "--data-dir", str(replayed), "--notifications"])
        == 0
    )
    for name, data in (("live", live), ("replayed", replayed)):
        out = str(tmp_path / f"{name}-lake")
        assert lake("compact", "--input", str(data), "--output", out, "--date", FIRST_DAY) == 0
        assert lake("daily", "--lake", out, "--date", FIRST_DAY) == 0
    capsys.readouterr()
    live_lake, replayed_lake = tmp_path / "live-lake", tmp_path / "replayed-lake"
    assert partition_file(replayed_lake, "parsed", FIRST_DAY).read_bytes() == (
        partition_file(live_lake, "parsed", FIRST_DAY).read_bytes()
    )
    daily = rows(partition_file(live_lake, "daily", FIRST_DAY))
    assert len(daily) == 2 and any(row["notifications"] for row in daily)
    assert rows(partition_file(replayed_lake, "daily", FIRST_DAY)) == daily
    # Replayed notifications say so; they count the same.
    notes = rows(partition_file(replayed_lake, "notifications", FIRST_DAY))
    assert notes and all(note["replayed"] for note in notes)
