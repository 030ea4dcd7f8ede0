"""The spec's MUSTs about CONNECT: each refusal with its reason code and its reply bytes (a
CONNACK where the spec owes or allows one, else nothing)."""

from __future__ import annotations

import pytest

from parser.mqtt import (
    MQTT_5,
    MQTT_311,
    Connect,
    MalformedPacket,
    Properties,
    ProtocolViolation,
    ReasonCode,
    Will,
    encode,
)
from parser.mqtt.properties import WILL
from tests.parser.mqtt import wire
from tests.parser.mqtt.streams import (
    after_connect,
    assert_refused,
    connect_bytes,
    server_error,
    server_packets,
)

RC = ReasonCode
V311 = connect_bytes(MQTT_311)
V5 = connect_bytes(MQTT_5)


def test_first_packet_must_be_connect() -> None:  # [MQTT-3.1.0-1]
    error = server_error(wire.publish("a"))
    assert (error.reason_code, error.reply) == (RC.PROTOCOL_ERROR, b"")
    assert server_error(b"\xc0\x00").reply == b""


def test_second_connect_is_a_protocol_error() -> None:  # [MQTT-3.1.0-2]
    assert_refused(V311, RC.PROTOCOL_ERROR, V5)


@pytest.mark.parametrize(
    ("data", "reply"),
    [
        # MQTT 3.1 ("MQIsdp", level 3) and unknown 3.x levels get 3.1.1 CONNACK rc 1.
        (wire.connect(3, payload=b"\x00\x01c", name=b"MQIsdp"), wire.connack_v311(1)),
        (wire.connect(3), wire.connack_v311(1)),
        (wire.connect(2), wire.connack_v311(1)),
        # A later version gets the 5.0 answer, 0x84.
        (wire.connect(6), wire.connack_v5(0x84)),
        # Not MQTT at all: nothing said.
        (wire.connect(4, name=b"HTTP"), b""),
        (wire.connect(4, name=b"MQIsdp"), wire.connack_v311(1)),
    ],
)
def test_unsupported_protocol_level(data: bytes, reply: bytes) -> None:  # [MQTT-3.1.2-2]
    error = server_error(data)
    assert isinstance(error, ProtocolViolation)
    assert (error.reason_code, error.reply) == (RC.UNSUPPORTED_PROTOCOL_VERSION, reply)


@pytest.mark.parametrize(
    "flags",
    [
        0x03,  # reserved bit 0 [MQTT-3.1.2-3]
        0x0A,  # will QoS 1 without the will flag
        0x22,  # will retain without the will flag
        0x1E,  # will QoS 3
    ],
)
def test_bad_connect_flags_are_malformed(flags: int) -> None:
    payload = b"\x00\x01c" + (wire.string("w") + wire.string("x") if flags & 0x04 else b"")
    error = server_error(wire.connect(4, flags, payload))
    assert (type(error), error.reason_code, error.reply) == (
        MalformedPacket,
        RC.MALFORMED_PACKET,
        b"",
    )
    error = server_error(
        wire.connect(5, flags, payload[:3] + (b"\x00" if flags & 4 else b"") + payload[3:])
    )
    assert (error.reason_code, error.reply) == (RC.MALFORMED_PACKET, wire.connack_v5(0x81))


def test_password_without_user_name() -> None:
    # 3.1.1 forbids it ([MQTT-3.1.2-22]); 5.0 allows it (§3.1.2.9).
    payload = b"\x00\x01c" + wire.string("secret")
    assert server_error(wire.connect(4, 0x42, payload)).reason_code == RC.MALFORMED_PACKET
    [connect] = server_packets(wire.connect(5, 0x42, payload))
    assert (
        isinstance(connect, Connect) and connect.password == b"secret" and connect.username is None
    )


def test_empty_client_id() -> None:
    # 3.1.1: only with a clean session, else CONNACK rc 2 ([MQTT-3.1.3-8], [MQTT-3.1.3-9]).
    error = server_error(wire.connect(4, 0x00, b"\x00\x00"))
    assert (error.reason_code, error.reply) == (
        RC.CLIENT_IDENTIFIER_NOT_VALID,
        wire.connack_v311(2),
    )
    assert server_packets(wire.connect(4, 0x02, b"\x00\x00")) == [Connect(4, "", True)]
    # 5.0: the server assigns one (§3.1.3.1), whatever Clean Start says.
    assert server_packets(wire.connect(5, 0x00, b"\x00\x00")) == [Connect(5, "", False)]


@pytest.mark.parametrize("level", [4, 5])
def test_connect_with_bytes_left_over_is_malformed(level: int) -> None:
    error = server_error(wire.connect(level, payload=b"\x00\x01c!"))
    assert error.reason_code == RC.MALFORMED_PACKET
    assert error.reply == (wire.connack_v5(0x81) if level == 5 else b"")


def test_will_topic_rules() -> None:
    for topic, code in (
        (b"a/+", RC.TOPIC_NAME_INVALID),
        (b"", RC.TOPIC_NAME_INVALID),
        (b"\xff", RC.MALFORMED_PACKET),
    ):
        payload = b"\x00\x01c" + wire.string(topic) + wire.string("bye")
        assert server_error(wire.connect(4, 0x06, payload)).reason_code == code


def test_enhanced_authentication_is_refused() -> None:  # 5.0 §4.12
    connect = encode(Connect(5, "c", properties=Properties(authentication_method="SCRAM-SHA-1")), 5)
    error = server_error(connect)
    assert (error.reason_code, error.reply) == (RC.BAD_AUTHENTICATION_METHOD, wire.connack_v5(0x8C))
    # Authentication Data without a Method is a protocol error (§3.1.2.11.10).
    error = server_error(wire.connect(5, properties=b"\x04\x16\x00\x01x"))
    assert (error.reason_code, error.reply) == (RC.PROTOCOL_ERROR, wire.connack_v5(0x82))
    # AUTH after CONNECT: no method was agreed (§3.15); in 3.1.1 type 15 is reserved.
    assert after_connect(5, b"\xf0\x00") == (RC.PROTOCOL_ERROR, wire.disconnect_reply(0x82))
    assert after_connect(4, b"\xf0\x00") == (RC.MALFORMED_PACKET, b"")


def test_will_beyond_the_servers_abilities() -> None:  # [MQTT-3.2.2-12], [MQTT-3.2.2-13]
    qos2 = encode(Connect(5, "c", will=Will("w", b"", 2)), 5)
    error = server_error(qos2, maximum_qos=1)
    assert (error.reason_code, error.reply) == (RC.QOS_NOT_SUPPORTED, wire.connack_v5(0x9B))
    retained = encode(Connect(5, "c", will=Will("w", b"", 0, True)), 5)
    error = server_error(retained, retain_available=False)
    assert (error.reason_code, error.reply) == (RC.RETAIN_NOT_SUPPORTED, wire.connack_v5(0x9A))
    assert server_packets(encode(Connect(4, "c", will=Will("w", b"", 2)), 4), maximum_qos=1)


def test_will_properties_context() -> None:
    # Will Delay Interval is a will property only; in the CONNECT's own properties it is malformed.
    assert WILL == 0
    error = server_error(wire.connect(5, properties=b"\x05\x18\x00\x00\x00\x01"))
    assert (error.reason_code, error.reply) == (RC.MALFORMED_PACKET, wire.connack_v5(0x81))
