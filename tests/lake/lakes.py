"""Helpers of the lake tests: simulated histories and the ``gateway lake`` jobs in-process."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import duckdb

from gateway.cli import lake as command
from gateway.fleet.history import FleetHistory, HistoryConfig
from gateway.notify.settings import NotificationSettings
from gateway.pipeline.registry import CodecRegistry, default_layout_dirs

MIDNIGHT = 1_780_012_800  # 2026-05-29T00:00:00Z
FIRST_DAY = "2026-05-29"


def history(
    data_dir: Path, *, devices: int, days: int, codecs: tuple[str, ...] = ("evb1",), **kw: Any
) -> dict[str, dict[str, dict[str, float | int]]]:
    """Write a simulated history under ``data_dir`` (live rules on); the ground truth."""
    registry = CodecRegistry.load(default_layout_dirs())
    config = HistoryConfig(devices, MIDNIGHT, days, codecs, **kw)
    engine = NotificationSettings().engine()
    return FleetHistory(config, registry.create, engine).run(data_dir)


def lake(*argv: str) -> int:
    """``gateway lake ARGV`` in this process (its summary goes to stdout)."""
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args(list(argv)))


def rows(path: Path) -> list[dict[str, Any]]:
    """A Parquet file's rows as dicts, in file order."""
    with duckdb.connect() as con:
        result = con.execute(
            "SELECT * FROM read_parquet(?, hive_partitioning = false)", [str(path)]
        )
        columns = [d[0] for d in result.description or []]
        return [dict(zip(columns, row, strict=True)) for row in result.fetchall()]


def partition_file(lake_dir: Path, table: str, day: str) -> Path:
    folder = table if table == "daily" else f"stream={table}"
    return lake_dir / folder / f"dt={day}" / f"{table}.parquet"
