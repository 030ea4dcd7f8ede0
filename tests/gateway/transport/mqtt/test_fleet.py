"""``gateway simulate --transport mqtt`` against the real gateway: every PUBACKed frame is in the
sink, also across a kill -9 of the gateway (the units resend with DUP after reconnecting)."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import time
from pathlib import Path

from tests.gateway.gatewayproc import GATEWAY, GatewayProcess, read_records, stored_payloads
from tests.local_server import free_port


def simulate(port: int, tmp: Path, devices: int, duration: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [GATEWAY, "simulate", "--transport", "mqtt", "--target", f"127.0.0.1:{port}",
         "--devices", str(devices), "--rate", "2", "--duration", str(duration), "--seed", "5",
         "--faults", "2", "--ack-timeout", "5", "--acked-log", str(tmp / "acked.jsonl")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def summary_of(sim: subprocess.Popen[bytes]) -> dict[str, int]:
    out, _ = sim.communicate(timeout=90)
    assert sim.returncode == 0
    result: dict[str, int] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def acked_payloads(tmp: Path) -> list[bytes]:
    lines = (tmp / "acked.jsonl").read_text().splitlines()
    return [bytes.fromhex(json.loads(line)["payload"]) for line in lines]


def test_fleet_over_mqtt_every_acked_frame_is_raw_and_parsed(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path / "data", codecs=("mqtt",))
    try:
        summary = summary_of(simulate(gw.ports["mqtt"], tmp_path, 120, 5.0))
        assert gw.metric("gateway_rejects_total") == 0
    finally:
        assert gw.stop() == 0
    assert summary["unacked"] == 0 and summary["connect_errors"] == 0
    acked = acked_payloads(tmp_path)
    assert len(acked) == summary["acked"] > 500
    raw = {base64.b64decode(r["payload"]): r for r in read_records(gw.data_dir, "raw")}
    parsed_raw_ids = {p["raw_id"] for p in read_records(gw.data_dir, "parsed")}
    for payload in acked:
        assert raw[payload]["transport"] == "mqtt"
        assert raw[payload]["id"] in parsed_raw_ids  # every simulated frame decodes
    assert read_records(gw.data_dir, "errors") == []


def test_fleet_over_mqtt_survives_a_gateway_kill(tmp_path: Path) -> None:
    # The restarted gateway must come back on the same port: the units reconnect to it.
    port = free_port()
    config = tmp_path / "fixed.toml"
    config.write_text(f"listeners = []\n[[mqtt_listeners]]\nhost = '127.0.0.1'\nport = {port}\n")
    gw = GatewayProcess(tmp_path / "data", codecs=(), config=config)
    sim = None
    try:
        sim = simulate(port, tmp_path, 80, 12.0)
        deadline = time.monotonic() + 30
        while gw.metric("gateway_acks_total") < 160 and time.monotonic() < deadline:
            time.sleep(0.1)
        # ACKs leave within a fsync, so a kill at a random instant may find nothing in flight:
        # stopped for a second, every unit (2 messages/s) has a PUBLISH waiting for its PUBACK.
        gw.proc.send_signal(signal.SIGSTOP)
        time.sleep(1.0)
        gw.proc.kill()  # kill -9 with PUBLISHes in flight
        gw.proc.wait(10)
        gw = GatewayProcess(tmp_path / "data", codecs=(), config=config)
        summary = summary_of(sim)
    finally:
        if sim is not None and sim.poll() is None:
            sim.kill()
        gw.stop()
    assert summary["unacked"] == 0
    assert summary["resent"] > 0 and summary["disconnects"] >= 80
    assert set(acked_payloads(tmp_path)) <= stored_payloads(tmp_path / "data")
