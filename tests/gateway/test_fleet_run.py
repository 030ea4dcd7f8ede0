"""The real simulator against the real gateway: what a device saw ACKed is on disk."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

from tests.gateway.gatewayproc import GATEWAY, GatewayProcess, read_records, unstored, wait_for

CODECS = ("teltonika", "gt06", "evb1")


def simulate(gw: GatewayProcess, tmp: Path, devices: int, duration: float,
             *extra: str) -> subprocess.Popen[bytes]:  # fmt: skip
    targets = [a for c in CODECS for a in ("--target", f"{c}=127.0.0.1:{gw.ports[c]}")]
    return subprocess.Popen(
        [GATEWAY, "simulate", "--codec", ",".join(CODECS), *targets, "--devices", str(devices),
         "--rate", "2", "--duration", str(duration), "--seed", "7", "--ack-timeout", "5",
         "--acked-log", str(tmp / "acked.jsonl"), "--sent-log", str(tmp / "sent.jsonl"), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_fleet_run_every_acked_frame_is_raw_and_parsed(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path / "data", codecs=CODECS)
    try:
        sim = simulate(gw, tmp_path, 150, 6.0, "--faults", "2")
        out, _ = sim.communicate(timeout=60)
        assert sim.returncode == 0
        summary = json.loads(out.decode().strip().splitlines()[-1])
        assert gw.metric("gateway_rejects_total") == 0
    finally:
        assert gw.stop() == 0
    assert summary["devices"] == 150 and summary["unacked"] == 0 and summary["connect_errors"] == 0
    acked = log_lines(tmp_path / "acked.jsonl")
    assert len(acked) == summary["acked"] > 500
    raw = read_records(gw.data_dir, "raw")
    raw_ids = {base64.b64decode(r["payload"]): r["id"] for r in raw}
    parsed_raw_ids = {p["raw_id"] for p in read_records(gw.data_dir, "parsed")}
    for line in acked:
        payload = bytes.fromhex(line["payload"])
        assert payload in raw_ids, line
        assert raw_ids[payload] in parsed_raw_ids, line  # every simulated frame decodes
    assert {r["codec"] for r in raw} == set(CODECS)
    assert read_records(gw.data_dir, "errors") == []


def test_fleet_sigterm_mid_load_loses_nothing_acked(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path / "data", codecs=CODECS)
    # Runs until stopped: the SIGTERM comes once 300 frames were ACKed, however slow the machine.
    # No drain: once the gateway is gone no ACK can come.
    sim = simulate(gw, tmp_path, 300, 0.0, "--drain", "0")
    acked_log = tmp_path / "acked.jsonl"
    try:
        # The simulator writes its log in 64 KiB blocks: lines appear a few hundred at a time.
        assert wait_for(lambda: _line_count(acked_log) > 300, timeout=60)
        assert gw.stop() == 0
    finally:
        sim.terminate()
        sim.communicate(timeout=60)
    acked = [bytes.fromhex(line["payload"]) for line in log_lines(acked_log)]
    assert len(acked) > 300
    assert unstored(gw.data_dir, acked) == {"raw": [], "parsed": []}


def _line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0
