"""``gateway replay`` runs the live rules: the parsed records of a replay carry the same rule
alarms as live ones, and ``--notifications`` writes the same notifications, marked replayed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.gateway.gatewayproc import GATEWAY, read_records
from tests.gateway.notify.faults import (
    FAULT,
    RULES,
    TELEMETRY,
    Device,
    fault,
    start,
    telemetry,
)

SAME_IN_A_REPLAY = ("schema", "id", "device_id", "code", "severity", "state", "values", "ts")


def test_replay_gives_the_live_alarms_and_notifications_marked_replayed(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    gw = start(tmp_path, RULES.format(overtemp=60, low_soc=10))
    try:
        dev = Device(gw.ports["evb1"])
        dev.send(fault(1, code=0x0201), 1, FAULT)
        dev.send(telemetry(2, soc_pct=8.0), 2, TELEMETRY)  # low_soc opens
        dev.send(telemetry(3, soc_pct=9.0), 3, TELEMETRY)
        dev.send(telemetry(4, soc_pct=20.0), 4, TELEMETRY)  # and clears
        dev.sock.close()
    finally:
        assert gw.stop() == 0
    live_notes = read_records(gw.data_dir, "notifications")
    assert [(n["code"], n["state"]) for n in live_notes] == [
        ("EVB1-0x0201", "open"),
        ("low_soc", "open"),
        ("low_soc", "clear"),
    ]
    out = tmp_path / "replayed"
    done = subprocess.run(
        [GATEWAY, "replay", str(gw.data_dir / "raw"), "--config", str(config),
         "--data-dir", str(out), "--notifications"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(done.stdout.splitlines()[-1])["notifications"] == 3
    assert read_records(out, "parsed") == read_records(gw.data_dir, "parsed")
    replayed = read_records(out, "notifications")
    assert [{k: n[k] for k in SAME_IN_A_REPLAY} for n in replayed] == [
        {k: n[k] for k in SAME_IN_A_REPLAY} for n in live_notes
    ]
    assert all(n["replayed"] for n in replayed) and not any(n["replayed"] for n in live_notes)
