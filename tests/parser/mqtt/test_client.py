"""The client side: what it accepts from a server, and what it refuses."""

from __future__ import annotations

import pytest

from parser.mqtt import (
    MQTT_5,
    MQTT_311,
    ConnAck,
    MqttClientConnection,
    Properties,
    Publish,
    ReasonCode,
    encode,
)
from tests.parser.mqtt import wire
from tests.parser.mqtt.streams import client_error, client_packets

RC = ReasonCode
OK = {MQTT_311: b"\x20\x02\x00\x00", MQTT_5: b"\x20\x03\x00\x00\x00"}


@pytest.mark.parametrize("level", [MQTT_311, MQTT_5])
def test_connack_first_and_once(level: int) -> None:  # [MQTT-3.2.0-1]
    assert client_error(level, b"\xd0\x00").reply == b""
    error = client_error(level, OK[level] + OK[level])
    assert error.reason_code == RC.PROTOCOL_ERROR
    assert error.reply == (wire.disconnect_reply(0x82) if level == MQTT_5 else b"")


@pytest.mark.parametrize("first", [0x10, 0x82, 0xA2, 0xC0])
def test_client_only_packets_from_a_server(first: int) -> None:
    assert client_error(MQTT_5, OK[MQTT_5] + bytes((first, 0))).reason_code == RC.PROTOCOL_ERROR


def test_connack_checks() -> None:
    assert client_error(MQTT_311, b"\x20\x02\x00\x06").reason_code == RC.MALFORMED_PACKET
    assert client_error(MQTT_311, b"\x20\x02\x02\x00").reason_code == RC.MALFORMED_PACKET
    # Session present with a refusal ([MQTT-3.2.2-6]).
    assert client_error(MQTT_5, b"\x20\x03\x01\x87\x00").reason_code == RC.PROTOCOL_ERROR
    assert client_error(MQTT_311, b"\x20\x02\x01\x05").reason_code == RC.PROTOCOL_ERROR
    assert client_packets(MQTT_311, b"\x20\x02\x00\x01") == [
        ConnAck(False, RC.UNSUPPORTED_PROTOCOL_VERSION)
    ]


def test_suback_codes() -> None:
    assert (
        client_error(MQTT_311, OK[MQTT_311] + b"\x90\x03\x00\x01\x03").reason_code
        == RC.MALFORMED_PACKET
    )
    assert (
        client_error(MQTT_5, OK[MQTT_5] + b"\x90\x04\x00\x01\x00\x92").reason_code
        == RC.MALFORMED_PACKET
    )


def test_server_topic_aliases_and_subscription_identifiers() -> None:
    props = Properties(topic_alias=1, subscription_identifiers=(1, 7))
    first = encode(Publish("ev/cmd", b"a", properties=props), MQTT_5)
    again = encode(Publish("", b"b", properties=props), MQTT_5)
    packets = client_packets(MQTT_5, OK[MQTT_5] + first + again, topic_alias_maximum=1)
    assert [(p.topic, p.payload) for p in packets[1:] if isinstance(p, Publish)] == [
        ("ev/cmd", b"a"),
        ("ev/cmd", b"b"),
    ]
    error = client_error(MQTT_5, OK[MQTT_5] + first)  # we advertised no aliases
    assert (error.reason_code, error.reply) == (RC.TOPIC_ALIAS_INVALID, wire.disconnect_reply(0x94))


def test_protocol_level_is_checked() -> None:
    with pytest.raises(ValueError):
        MqttClientConnection(3)
