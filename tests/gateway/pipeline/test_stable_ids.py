"""The real ``gateway run`` process (local mode): a frame a device resends after a reconnect,
because it never read the ACK of the first copy, gets the same raw and parsed ids as that copy."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.devices import DeviceSocket
from tests.gateway.gatewayproc import GatewayProcess, read_records, wait_for
from tests.parser.streams import evb1_ack, evb1_heartbeat, evb1_login

IMEI = "356307042441013"
HEARTBEAT = 4  # EVB1 message type, echoed in the ACK


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    proc = GatewayProcess(tmp_path / "data", codecs=("evb1",))
    yield proc
    proc.kill()


def raw_of(data_dir: Path, frame: bytes) -> list[dict[str, object]]:
    return [r for r in read_records(data_dir, "raw") if base64.b64decode(r["payload"]) == frame]


def test_a_frame_resent_after_a_reconnect_keeps_its_raw_and_parsed_ids(
    gateway: GatewayProcess,
) -> None:
    frame, later = evb1_heartbeat(1), evb1_heartbeat(2)
    first = DeviceSocket(gateway.ports["evb1"])
    first.send(evb1_login(IMEI))
    assert first.recv_exact(11) == evb1_ack(0, 1)
    # The connection drops before the device reads the frame's ACK: it keeps the frame.
    first.send(frame)
    first.close()
    assert wait_for(lambda: len(raw_of(gateway.data_dir, frame)) == 1, timeout=10)
    again = DeviceSocket(gateway.ports["evb1"])
    again.send(evb1_login(IMEI))
    assert again.recv_exact(11) == evb1_ack(0, 1)
    again.send(frame + later)
    assert again.recv_exact(22) == evb1_ack(1, HEARTBEAT) + evb1_ack(2, HEARTBEAT)
    again.close()
    assert gateway.stop() == 0

    copies = raw_of(gateway.data_dir, frame)
    assert len(copies) == 2
    assert copies[0]["peer"] != copies[1]["peer"]  # two connections
    assert copies[0]["id"] == copies[1]["id"]
    [other] = raw_of(gateway.data_dir, later)
    assert other["id"] != copies[0]["id"]
    parsed = [r for r in read_records(gateway.data_dir, "parsed") if r["kind"] == "heartbeat"]
    ids = [r["id"] for r in parsed if r["raw_id"] == copies[0]["id"]]
    assert ids == [f"{copies[0]['id']}-0"] * 2
