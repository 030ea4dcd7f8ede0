"""bench/journal.py runs end to end with tiny settings: every measure gets a table row and the
JSON line carries the same rows. The figures themselves are not checked (no timed assertions);
``make bench`` runs it at full size."""

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
TINY = [
    *("--runs", "1", "--seconds", "0.3", "--warmup", "0.2"),
    *("--connections", "10", "--window", "2"),
]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the bench needs 2 CPUs")
def test_tiny_run_prints_the_table_and_a_json_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "journal.py"), *TINY, "--tmp", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    result = json.loads(lines[-1])
    assert result["bench"] == "journal"
    table = lines[lines.index(HEADER) + 1 :]
    rows = result["rows"]
    assert [r["measure"] for r in rows] == [line.split(" | ")[0] for line in table[: len(rows)]]
    for row, line in zip(rows, table, strict=False):
        cells = line.split(" | ")
        assert len(cells) == 6
        assert math.isfinite(row["value"]) and row["value"] >= 0
        assert cells[5] == {None: "-", True: "yes", False: "NO"}[row["met"]]
    aims = {r["aim"] for r in rows if r["met"] is not None}
    assert aims == {"ratio <= 3", ">= 300/s", "ratio >= 3"}
    assert list(tmp_path.iterdir()) == []  # data directories and the fsync probe cleaned up
