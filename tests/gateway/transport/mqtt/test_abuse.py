"""Bad clients cost only their own connection, with the reason code the protocol has, while a
good client keeps publishing and being acknowledged throughout."""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from parser.mqtt.encode import encode_publish
from parser.mqtt.packets import (
    MQTT_5,
    MQTT_311,
    ConnAck,
    Disconnect,
    PingResp,
    PubAck,
    PubRec,
    ReasonCode,
)
from tests.gateway.devices import DeviceSocket
from tests.gateway.gatewayproc import GatewayProcess, read_records
from tests.gateway.transport.mqtt.client import DEVICE, TOPIC, MqttTestClient, start_gateway
from tests.parser.streams import evb1_heartbeat

OTHER = "356307042441099"


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GatewayProcess]:
    proc = start_gateway(
        tmp_path, "max_packet_bytes = 1024\nconnect_timeout_s = 1.0\nack_policy = 'accepted'\n"
    )
    yield proc
    proc.kill()


class GoodDevice:
    """Publishes numbered heartbeats between the abuses; each must be PUBACKed."""

    def __init__(self, port: int) -> None:
        self.client = MqttTestClient(port, MQTT_5)
        assert self.client.connect("good").reason_code == ReasonCode.SUCCESS
        self.seq = 0
        self.frames: list[bytes] = []

    def check(self) -> None:
        self.seq += 1
        frame = evb1_heartbeat(self.seq)
        self.client.publish(frame, 1, self.seq, topic=f"ev/{OTHER}/telemetry")
        ack = self.client.expect(PubAck)
        assert (ack.packet_id, ack.reason_code) == (self.seq, ReasonCode.SUCCESS)
        self.frames.append(frame)


def refused(gw: GatewayProcess, reason: str) -> float:
    return gw.metric("gateway_rejects_total", reason=reason)


def test_protocol_abuse(gw: GatewayProcess) -> None:
    port = gw.ports["mqtt"]
    good = GoodDevice(port)
    good.check()

    # Not MQTT at all: closed without a word.
    junk = DeviceSocket(port)
    junk.send(b"GET / HTTP/1.1\r\n\r\n")
    assert junk.closed_by_peer()
    good.check()

    # A 5-byte remaining length (the spec allows 4): malformed, closed.
    bad_length = MqttTestClient(port)
    bad_length.connect()
    bad_length.send(b"\x30\xff\xff\xff\xff\x7f")
    assert bad_length.closed_by_peer()
    good.check()

    # Reserved flags of SUBSCRIBE must be 0010; 5.0 is told why (0x81 malformed).
    flags = MqttTestClient(port, MQTT_5)
    flags.connect()
    flags.send(b"\x80\x08\x00\x01\x00\x00\x03a/b\x00")
    assert flags.expect(Disconnect).reason_code == ReasonCode.MALFORMED_PACKET
    assert flags.closed_by_peer()
    good.check()

    # MQTT 3.1 (level 3) and an unknown level 6: CONNACK "unacceptable protocol version".
    for level in (3, 6):
        old = MqttTestClient(port, MQTT_311 if level == 3 else MQTT_5)
        name = b"MQIsdp" if level == 3 else b"MQTT"
        body = len(name).to_bytes(2, "big") + name + bytes([level, 2]) + b"\x00\x3c\x00\x01x"
        if level == 6:
            body = body[:-3] + b"\x00" + body[-3:]  # 5.0-style empty properties
        old.send(bytes([0x10, len(body)]) + body)
        # (3.1.1's return code 1 reads as its 5.0 counterpart.)
        assert old.expect(ConnAck).reason_code == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION
        assert old.closed_by_peer()
    good.check()

    # PUBLISH before CONNECT.
    early = MqttTestClient(port)
    early.send(encode_publish(TOPIC, evb1_heartbeat(1), 1, 1))
    assert early.closed_by_peer()
    good.check()

    # Oversize: over max_packet_bytes (1024). 5.0 gets DISCONNECT 0x95, 3.1.1 is just closed.
    for level in (MQTT_5, MQTT_311):
        big = MqttTestClient(port, level)
        connack = big.connect()
        if level == MQTT_5:
            assert connack.properties.maximum_packet_size == 1024
        big.publish(b"\x00" * 2000, 1, 1)
        if level == MQTT_5:
            assert big.expect(Disconnect).reason_code == ReasonCode.PACKET_TOO_LARGE
        assert big.closed_by_peer()
        good.check()

    assert refused(gw, "mqtt_packet_too_large") == 2
    assert refused(gw, "mqtt_malformed_packet") >= 2
    assert refused(gw, "mqtt_unsupported_protocol_version") == 2
    good.client.close()


def test_topic_abuse(gw: GatewayProcess) -> None:
    port = gw.ports["mqtt"]
    good = GoodDevice(port)
    good.check()

    # 5.0 QoS 1/2: refused with a reason code, the connection stays and keeps working.
    v5 = MqttTestClient(port, MQTT_5)
    v5.connect()
    v5.publish(evb1_heartbeat(1), 1, 1)  # binds this connection to DEVICE
    assert v5.expect(PubAck).reason_code == ReasonCode.SUCCESS
    v5.publish(evb1_heartbeat(1002), 1, 2, topic=f"ev/{OTHER}/telemetry")  # another's id
    assert v5.expect(PubAck).reason_code == ReasonCode.NOT_AUTHORIZED
    v5.publish(evb1_heartbeat(1003), 2, 3, topic="ev/unrouted")
    assert v5.expect(PubRec).reason_code == ReasonCode.TOPIC_NAME_INVALID
    v5.publish(b"not an evb1 frame", 1, 4)
    assert v5.expect(PubAck).reason_code == ReasonCode.PAYLOAD_FORMAT_INVALID
    v5.publish(evb1_heartbeat(5), 1, 5)
    assert v5.expect(PubAck).reason_code == ReasonCode.SUCCESS
    good.check()
    # QoS 0 has no acknowledgement to refuse with: DISCONNECT 0x90 and closed.
    v5.publish(evb1_heartbeat(1006), 0, topic="ev/unrouted")
    assert v5.expect(Disconnect).reason_code == ReasonCode.TOPIC_NAME_INVALID
    assert v5.closed_by_peer()
    good.check()

    # 3.1.1 has no negative acknowledgement: each abuse closes the connection.
    for topic, payload in (
        (f"ev/{OTHER}/telemetry", evb1_heartbeat(1007)),
        ("ev/unrouted", evb1_heartbeat(1008)),
    ):
        v3 = MqttTestClient(port)
        v3.connect()
        v3.publish(evb1_heartbeat(9), 1, 1)
        assert v3.expect(PubAck).packet_id == 1
        v3.publish(payload, 1, 2, topic=topic)
        assert v3.closed_by_peer()
        good.check()

    # A wildcard in a PUBLISH topic is a protocol error ([MQTT-3.3.2-2]).
    wild = MqttTestClient(port, MQTT_5)
    wild.connect()
    wild.publish(evb1_heartbeat(1010), 1, 1, topic="ev/+/telemetry")
    assert wild.expect(Disconnect).reason_code >= 0x80
    assert wild.closed_by_peer()
    good.check()

    # A payload that is not one frame is kept and acknowledged, never refused: a device that
    # resends it on every reconnect would loop forever (3.1.1 has only the close to say no).
    v3 = MqttTestClient(port)
    v3.connect()
    v3.publish(b"garbage", 1, 1)
    assert v3.expect(PubAck).packet_id == 1
    v3.publish(evb1_heartbeat(11), 1, 2)
    assert v3.expect(PubAck).packet_id == 2  # and the connection goes on
    v3.close()

    assert refused(gw, "identity_mismatch") == 2
    assert refused(gw, "unrouted_topic") == 3
    assert refused(gw, "not_one_frame") == 0
    assert gw.metric("gateway_decode_errors_total", reason="not_one_frame") == 2
    assert gw.metric("gateway_mqtt_reason_codes_total", packet="PUBACK") == 2
    good.client.close()
    assert gw.stop() == 0
    raw = read_records(gw.data_dir, "raw")
    payloads = {base64.b64decode(r["payload"]) for r in raw}
    assert set(good.frames) <= payloads
    # Everything acknowledged was stored, nothing refused was.
    assert {r["device_id"] for r in raw} == {DEVICE, OTHER}
    assert not {evb1_heartbeat(seq) for seq in (1002, 1003, 1006, 1007, 1008, 1010)} & payloads
    # The payloads that were not one frame, with why, beside their raw records.
    errors = read_records(gw.data_dir, "errors")
    assert sorted(base64.b64decode(e["payload"]) for e in errors) == [
        b"garbage",
        b"not an evb1 frame",
    ]
    assert {e["reason"] for e in errors} == {"not_one_frame"}
    assert {e["raw_id"] for e in errors} <= {r["id"] for r in raw}


def test_silent_slow_and_half_open_clients_are_closed(gw: GatewayProcess) -> None:
    port = gw.ports["mqtt"]
    good = GoodDevice(port)
    silent = DeviceSocket(port)  # TCP only, never a CONNECT (or a half-open socket)
    v5 = MqttTestClient(port, MQTT_5)
    v5.connect("quiet5", keep_alive_s=1)
    v3 = MqttTestClient(port)
    v3.connect("quiet3", keep_alive_s=1)
    pinger = MqttTestClient(port)
    pinger.connect("pinger", keep_alive_s=1)
    trickle = MqttTestClient(port)
    trickle.connect("trickle", keep_alive_s=1)
    packet = encode_publish(TOPIC, evb1_heartbeat(1), 1, 1)
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < 3.0:
        if sent < len(packet):  # a byte at a time never completes a packet: no activity
            with contextlib.suppress(OSError):
                trickle.send(packet[sent : sent + 1])
            sent += 1
        pinger.send(b"\xc0\x00")  # PINGREQ keeps its connection alive
        assert pinger.expect(PingResp)
        good.check()
        time.sleep(0.25)
    assert silent.closed_by_peer(timeout=2)
    assert v5.expect(Disconnect).reason_code == ReasonCode.KEEP_ALIVE_TIMEOUT
    assert v5.closed_by_peer(timeout=2)
    assert v3.closed_by_peer(timeout=2)
    assert trickle.closed_by_peer(timeout=2)
    pinger.send(b"\xc0\x00")
    assert pinger.expect(PingResp)
    closed = "gateway_connections_closed_by_gateway_total"
    assert gw.metric(closed, reason="connect_timeout") == 1
    assert gw.metric(closed, reason="keep_alive_timeout") == 3
    good.client.close()
