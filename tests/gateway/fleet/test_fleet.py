"""Whole fleets on loopback against small gateways that ACK, lose ACKs or drop connections."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from gateway.fleet.simulator import DEFAULT_IMEI_BASE, Fleet, FleetConfig, FrameLog
from gateway.fleet.stats import SUMMARY_KEYS
from gateway.fleet.unit import UnitSettings
from tests.gateway.fleet.servers import AckServer, Policy

pytestmark = pytest.mark.asyncio
CODECS = ("evb1", "teltonika", "gt06")


async def run_fleet(
    tmp_path: Path,
    servers: dict[str, AckServer],
    *,
    devices: int = 6,
    duration_s: float = 1.0,
    stop_after_s: float | None = None,
    **settings: Any,
) -> tuple[dict[str, Any], list[dict[str, str]], list[dict[str, str]]]:
    targets = {codec: await server.start() for codec, server in servers.items()}
    config = FleetConfig(
        codecs=tuple(servers),
        targets=targets,
        devices=devices,
        rate_hz=10.0,
        duration_s=duration_s,
        faults_per_min=3.0,
        seed=7,
        drain_s=3.0,
        connect_rate=devices / 0.2,
        unit=UnitSettings(**{"ack_timeout_s": 0.3, "heartbeat_s": 0.5, **settings}),
    )
    sent_log, acked_log = FrameLog(tmp_path / "sent.jsonl"), FrameLog(tmp_path / "acked.jsonl")
    fleet = Fleet(config, sent_log=sent_log, acked_log=acked_log)
    try:
        if stop_after_s is not None:
            asyncio.get_running_loop().call_later(stop_after_s, fleet.stop)
        summary = await fleet.run()
    finally:
        sent_log.close()
        acked_log.close()
        for server in servers.values():
            await server.close()
    for server in servers.values():
        assert server.rejects == [], "the gateway's codecs accept every frame the fleet sends"
    return summary, read_log(tmp_path / "sent.jsonl"), read_log(tmp_path / "acked.jsonl")


def read_log(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_logs(
    summary: dict[str, Any],
    servers: dict[str, AckServer],
    sent: list[dict[str, str]],
    acked: list[dict[str, str]],
) -> None:
    """The logs hold exactly the frames counted, and every ACKed one was ACKed by a server."""
    assert len(sent) == summary["sent"]
    assert len(acked) == summary["acked"]
    for line in acked:
        assert list(line) == ["codec", "device_id", "payload"]
        frame = (line["device_id"], bytes.fromhex(line["payload"]))
        assert frame in servers[line["codec"]].acked
    received = {(c, d, p) for c, s in servers.items() for d, p in s.received}
    for line in sent:
        is_location = line["codec"] == "gt06" and line["payload"][6:8] == "12"
        if not is_location:  # a GT06 location is never ACKed, so never resent after a drop
            assert (line["codec"], line["device_id"], bytes.fromhex(line["payload"])) in received


async def test_a_gateway_that_acks_everything(tmp_path: Path) -> None:
    servers = {codec: AckServer(codec) for codec in CODECS}
    summary, sent, acked = await run_fleet(tmp_path, servers)
    assert list(summary)[: len(SUMMARY_KEYS)] == list(SUMMARY_KEYS)
    assert summary["devices"] == 6 and summary["logins"] == 6
    assert summary["sent"] > 6 * 5
    assert summary["sent"] == summary["acked"] + summary["no_ack"]
    assert (summary["unacked"], summary["unsent"], summary["resent"]) == (0, 0, 0)
    assert summary["connect_errors"] == 0
    assert 0 < summary["ack_p50_ms"] <= summary["ack_p99_ms"] < 1000
    assert summary["interrupted"] is False
    assert set(summary["by_codec"]) == set(CODECS)
    assert summary["by_codec"]["gt06"]["no_ack"] > 0
    check_logs(summary, servers, sent, acked)
    # Devices are assigned round-robin and numbered from the IMEI base.
    owners = {(line["codec"], int(line["device_id"]) - DEFAULT_IMEI_BASE) for line in sent}
    assert owners == {(CODECS[i % 3], i) for i in range(6)}


async def test_lost_acks_are_resent_until_acked(tmp_path: Path) -> None:
    servers = {codec: AckServer(codec, Policy(drop_first_ack=True)) for codec in CODECS}
    summary, sent, acked = await run_fleet(tmp_path, servers, duration_s=1.2)
    assert summary["resent"] >= 6
    assert summary["unacked"] == 0
    assert summary["sent"] == summary["acked"] + summary["no_ack"]
    check_logs(summary, servers, sent, acked)
    for server in servers.values():
        payloads = [p for _, p in server.received]
        assert len(payloads) > len(set(payloads)), "the gateway saw the resent frames again"


async def test_dropped_connections_reconnect_and_resend(tmp_path: Path) -> None:
    policy = Policy(close_first_connection_after=3)
    servers = {codec: AckServer(codec, policy) for codec in CODECS}
    summary, sent, acked = await run_fleet(tmp_path, servers, duration_s=1.5, ack_timeout_s=5.0)
    assert summary["disconnects"] == 6
    assert summary["logins"] == 12
    assert summary["resent"] > 0, "the frame the gateway hung up on is resent on reconnect"
    assert summary["unacked"] == 0
    assert summary["connect_errors"] == 0
    check_logs(summary, servers, sent, acked)


async def test_an_unreachable_gateway_counts_connect_errors_and_keeps_the_data(
    tmp_path: Path,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = FleetConfig(
        codecs=("evb1",),
        targets={"evb1": ("127.0.0.1", port)},
        devices=3,
        rate_hz=10.0,
        duration_s=60.0,
        drain_s=30.0,
    )
    summary: dict[str, Any] = await Fleet(config).run()
    assert summary["connect_errors"] >= 3
    assert (summary["sent"], summary["acked"], summary["unacked"]) == (0, 0, 0)
    assert summary["unsent"] > 0  # recorded since each device powered on
    assert summary["ack_p50_ms"] is None
    # Every device failed and none ever connected: the run stops instead of waiting it out.
    assert summary["unreachable"] == ["evb1"]
    assert summary["run_s"] < 60.0 and summary["drain_s"] < 30.0


async def test_a_codec_that_connected_once_is_not_called_unreachable(tmp_path: Path) -> None:
    servers = {"evb1": AckServer("evb1", Policy(close_first_connection_after=3))}
    summary, sent, acked = await run_fleet(tmp_path, servers, duration_s=1.5, ack_timeout_s=5.0)
    assert summary["unreachable"] == []
    assert summary["interrupted"] is False and summary["unacked"] == 0
    check_logs(summary, servers, sent, acked)


async def test_stop_ends_a_run_early_and_still_sums_up(tmp_path: Path) -> None:
    servers = {"evb1": AckServer("evb1")}
    summary, sent, acked = await run_fleet(tmp_path, servers, duration_s=0, stop_after_s=0.5)
    assert summary["interrupted"] is True
    assert summary["run_s"] < 1.0
    assert summary["sent"] == summary["acked"] > 0
    check_logs(summary, servers, sent, acked)
