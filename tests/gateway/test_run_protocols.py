"""Issue 19's protocol coverage through the real ``gateway run`` process on loopback: the GT06
family's newer packets and their replies (the 0x8A time reply reads the gateway's clock), unknown
types counted by type, and AIS-140 with its emergency packet reaching the notifications."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from parser.crc import crc16_x25
from tests.gateway.devices import DeviceSocket
from tests.gateway.gatewayproc import GatewayProcess, read_records, wait_for
from tests.parser.ais140_packets import EMERGENCY, with_xor
from tests.parser.ais140_packets import IMEI as AIS140_IMEI
from tests.parser.ais140_packets import LOGIN as AIS140_LOGIN
from tests.parser.gt06_frames import GPS, LBS, LOGIN, LOGIN_IMEI, STATUS, build, short_reply

GT06_0X22 = bytes.fromhex(  # Traccar's Gt06ProtocolDecoderTest capture, MCC 404 (India)
    "787822221106160a1016c60278019407c7783800040001940504700046fc01030100065f570d0a"
)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    proc = GatewayProcess(tmp_path / "data", codecs=("gt06", "ais140"))
    yield proc
    proc.kill()


def test_gt06_newer_packets_replies_and_unknown_types(gateway: GatewayProcess) -> None:
    dev = DeviceSocket(gateway.ports["gt06"])
    dev.send(LOGIN)
    assert dev.recv_exact(10) == bytes.fromhex("787805010001d9dc0d0a")
    before = int(time.time())
    dev.send(GT06_0X22 + build(0x80, b"\x01\x02", serial=0x21) + build(0x8A, b"", serial=0x22))
    # 0x22 and the unknown 0x80 get no reply; 0x8A gets the gateway's UTC date-time.
    reply = dev.recv_exact(16)
    after = int(time.time())
    body = reply[2:-4]
    assert (reply[:4], reply[-2:], body[-2:]) == (b"\x78\x78\x0b\x8a", b"\r\n", b"\x00\x22")
    assert reply[-4:-2] == crc16_x25(body).to_bytes(2, "big")
    yy, mo, dd, hh, mi, ss = reply[4:10]
    sent = datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=UTC).timestamp()
    assert before <= sent <= after + 1
    alarm = build(0x26, GPS + b"\x09" + LBS + STATUS, serial=0x23)  # status alarm byte 1: SOS
    dev.send(alarm)
    assert dev.recv_exact(10) == short_reply(0x26, 0x23)
    assert wait_for(
        lambda: gateway.metric("gateway_decode_errors_total", reason="unknown_type_0x80") == 1
    )
    dev.close()
    assert gateway.stop() == 0
    raw = {base64.b64decode(r["payload"]) for r in read_records(gateway.data_dir, "raw")}
    assert GT06_0X22 in raw and alarm in raw
    parsed = read_records(gateway.data_dir, "parsed")
    location = next(r for r in parsed if r["attrs"].get("mcc") == 404)
    assert location["device_id"] == LOGIN_IMEI
    assert location["position"]["lat"] == pytest.approx(23.0106422, abs=1e-6)
    sos = next(r for r in parsed if r["kind"] == "alarm")
    assert sos["alarms"] == [
        {"code": "sos", "severity": "critical", "subsystem": "tcu", "value": 1}
    ]


def test_ais140_emergency_is_a_critical_alarm_and_a_notification(gateway: GatewayProcess) -> None:
    dev = DeviceSocket(gateway.ports["ais140"])
    health = with_xor(f"HP,ACME,1.0.0,{AIS140_IMEI},87,20,35,10,60,0101,00")
    dev.send(AIS140_LOGIN + b"\r\n" + EMERGENCY + b"\r\n" + health + b"\r\n")

    def notes() -> list[dict[str, object]]:
        return read_records(gateway.data_dir, "notifications")

    assert wait_for(lambda: any(n.get("code") == "emergency" for n in notes()), timeout=15)
    dev.close()
    assert gateway.stop() == 0
    parsed = read_records(gateway.data_dir, "parsed")
    assert [r["kind"] for r in parsed] == ["login", "alarm", "heartbeat"]
    assert {r["device_id"] for r in parsed} == {"861693034634154"}  # named by its login
    assert parsed[1]["alarms"] == [
        {"code": "emergency", "severity": "critical", "subsystem": "tcu", "value": 10}
    ]
    [note] = [n for n in notes() if n.get("code") == "emergency"]
    assert note["severity"] == "critical"
