"""The real simulator's injected faults against the real gateway with the default rules: every
fault gives exactly one ``open`` notification, reminders and clears only follow an open, and
healthy devices get none. (Low SoC is a real condition, not a fault: the simulated cars that
start near empty at a charger trip the low_soc rule, healthy or not.)"""

from __future__ import annotations

import collections
import json
import struct
import subprocess
from pathlib import Path
from typing import Any

from tests.gateway.gatewayproc import GATEWAY, GatewayProcess, read_records

CODECS = ("teltonika", "gt06", "evb1")
FAULTY_BASE, HEALTHY_BASE = 356307040000000, 356307049000000
EVB1_FAULT = 0x03
# The default alarm_codes (gateway/notify/settings.py): the EVB1 fault codes the simulator uses.
EVB1_CODES = {0x0101: "battery_overtemp", 0x0102: "isolation_fault"}


def simulate(gw: GatewayProcess, tmp: Path, name: str, *extra: str) -> subprocess.Popen[str]:
    targets = [a for c in CODECS for a in ("--target", f"{c}=127.0.0.1:{gw.ports[c]}")]
    return subprocess.Popen(
        [GATEWAY, "simulate", "--codec", ",".join(CODECS), *targets, "--devices", "60",
         "--rate", "2", "--duration", "15", "--ack-timeout", "5",
         "--acked-log", str(tmp / f"{name}.jsonl"), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip


def finish(sim: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = sim.communicate(timeout=120)
    assert sim.returncode == 0
    summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert summary["unacked"] == 0 and summary["connect_errors"] == 0
    return summary


def evb1_faults(acked_log: Path) -> collections.Counter[tuple[str, str]]:
    """(device, code) of every ACKed EVB1 FAULT frame, read with the spec's layout: magic,
    version, type, seq, length, then ts (u32) and code (u16)."""
    found: collections.Counter[tuple[str, str]] = collections.Counter()
    for line in acked_log.read_text().splitlines():
        entry = json.loads(line)
        frame = bytes.fromhex(entry["payload"])
        if entry["codec"] == "evb1" and frame[3] == EVB1_FAULT:
            (code,) = struct.unpack_from(">H", frame, 12)
            found[entry["device_id"], EVB1_CODES[code]] += 1
    return found


def test_every_injected_fault_opens_exactly_once_and_healthy_devices_stay_quiet(
    tmp_path: Path,
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("[notifications]\nreminder_s = 4\n")
    gw = GatewayProcess(tmp_path / "data", codecs=CODECS, config=config)
    try:
        faulty = simulate(gw, tmp_path, "faulty", "--faults", "6", "--seed", "11",
                          "--imei-base", str(FAULTY_BASE))  # fmt: skip
        healthy = simulate(gw, tmp_path, "healthy", "--faults", "0", "--seed", "12",
                           "--imei-base", str(HEALTHY_BASE))  # fmt: skip
        injected = finish(faulty)
        finish(healthy)
    finally:
        assert gw.stop() == 0
    notes = read_records(gw.data_dir, "notifications")
    assert notes, "no notifications at all"
    for note in notes:
        if int(note["device_id"]) >= HEALTHY_BASE:
            assert note["code"] == "low_soc", note
    low_soc = [n for n in notes if n["code"] == "low_soc"]
    assert all(n["values"]["soc_pct"] < 10 for n in low_soc if n["state"] == "open")
    assert not [n for n in notes if n["suppressed"]]  # well under the default rate limit

    codec_of = {r["id"]: r["codec"] for r in read_records(gw.data_dir, "raw")}
    opens = [n for n in notes if n["state"] == "open" and n["code"] != "low_soc"]
    by_codec = collections.Counter(codec_of[n["raw_id"]] for n in opens)
    for codec in CODECS:
        assert by_codec[codec] == injected["by_codec"][codec]["faults"] > 0, codec
    # EVB1 names its faults: per device and code, one open per FAULT frame the unit sent.
    evb1_opens = collections.Counter(
        (n["device_id"], n["code"]) for n in opens if codec_of[n["raw_id"]] == "evb1"
    )
    assert evb1_opens == evb1_faults(tmp_path / "faulty.jsonl")

    # Reminders and clears only ever follow an open of the same device and code.
    is_open: dict[tuple[str, str], bool] = {}
    # In journal order (one gateway, so the order they were raised), grouped by device: raw ids
    # are content digests, not time-ordered.
    for note in sorted(notes, key=lambda n: n["device_id"]):
        key = (note["device_id"], note["code"])
        if note["state"] == "open":
            is_open[key] = True
        else:
            assert is_open.get(key), note
            if note["state"] == "clear":
                is_open[key] = False
    assert any(n["state"] == "reminder" for n in notes)  # over-temperature outlasts 4 s
