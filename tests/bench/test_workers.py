"""bench/workers.py runs end to end with tiny settings: a table row per measure matching the JSON
line, the ratio row against the aim of issue 17 (``--workers 2`` at most 1.1 x one worker's CPU
per frame). The figures themselves are not checked (no timed assertions); ``make bench`` runs it
at full size."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEADER = "measure | value | baseline | ratio | aim | met?"
TINY = ["--runs", "1", "--seconds", "0.5", "--rate", "500", "--connections", "10"]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the bench needs 2 CPUs")
def test_tiny_run_prints_the_table_and_a_json_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "workers.py"), *TINY],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "load average" in lines[0]
    result = json.loads(lines[-1])
    assert result["bench"] == "workers"
    table = lines[lines.index(HEADER) + 1 :]
    rows = result["rows"]
    assert [r["measure"] for r in rows] == [line.split(" | ")[0] for line in table[: len(rows)]]
    for row, line in zip(rows, table, strict=False):
        cells = line.split(" | ")
        assert len(cells) == 6
        assert math.isfinite(row["value"]) and row["value"] > 0
        assert cells[5] == {None: "-", True: "yes", False: "NO"}[row["met"]]
    [judged] = [r for r in rows if r["met"] is not None]
    assert judged["aim"] == "ratio <= 1.1"
    assert judged["met"] == (judged["ratio"] <= 1.1)
    assert list(tmp_path.iterdir()) == []  # the gateways' data directories cleaned up
