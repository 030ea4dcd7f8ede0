"""The chaos run's short schedule (``bench/chaos.py --short``, issue 16) inside the suite: the
real gateway, fleets, kinesalite behind the fault proxy, mosquitto and moto under every fault of
the schedule, alone and overlapping; the run's own checker must find nothing ACKed lost, every
fault recovered and every injected device fault notified (exit status 0).

About three minutes of wall time, mostly waiting on the schedule's clock. It needs root (a tmpfs
for the journal), node, mosquitto and fiu-utils, which ``make setup`` installs: without them the
run exits 2 and this test fails (CI must run it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHAOS = Path(__file__).resolve().parents[1] / "bench" / "chaos.py"
RUN_TIMEOUT_S = 360  # a 160 s schedule, start-up, the shippers catching up and the check


def test_short_chaos_schedule_loses_nothing_acked_and_recovers_from_every_fault(
    tmp_path: Path,
) -> None:
    report_path = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, str(CHAOS), "--short", "--work", str(tmp_path / "work"),
         "--out", str(report_path)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )  # fmt: skip
    output = result.stdout[-6000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    report = json.loads(report_path.read_text())
    assert report["problems"] == [], output
    assert report["acked"] > 5000 and report["lost"] == 0
    assert set(report["acked_by_source"]) == {"tcp", "mqtt", "bridge", "a-to-b"}
    # Every fault of the schedule ran (15 entries) and the fleet's ACK rate came back after it.
    assert len(report["faults"]) == 15
    assert all(row["recovery_s"] is not None for row in report["faults"])
    for target in ("webhook", "sns"):
        assert report["notifications"][target]["fault_frames_acked"] > 0
        assert report["notifications"][target]["missing_open"] == []
