"""The server's reply helpers: bytes for the negotiated version, limits advertised in CONNACK."""

from __future__ import annotations

from typing import Any

from parser.mqtt import (
    MQTT_5,
    MQTT_311,
    ConnAck,
    MqttClientConnection,
    MqttServerConnection,
    Properties,
    ReasonCode,
    encode,
    return_code,
)
from parser.mqtt.connection import DEFAULT_MAX_PACKET_BYTES
from tests.parser.mqtt.streams import connect_bytes

RC = ReasonCode


def connected(level: int, **limits: Any) -> MqttServerConnection:
    connection = MqttServerConnection(**limits)
    connection.feed(connect_bytes(level, keep_alive_s=30))
    return connection


def test_state_exposed_for_the_listener() -> None:
    connection = MqttServerConnection()
    assert (connection.protocol_level, connection.keep_alive_s) == (None, None)
    connection.feed(connect_bytes(MQTT_5, keep_alive_s=30))
    assert (connection.protocol_level, connection.keep_alive_s) == (5, 30)
    # A Server Keep Alive in CONNACK overrides the client's ([MQTT-3.2.2-21]).
    connection.connack(properties=Properties(server_keep_alive=120))
    assert connection.keep_alive_s == 120


def test_v311_replies() -> None:
    connection = connected(MQTT_311)
    assert connection.connack() == b"\x20\x02\x00\x00"
    assert connection.connack(True) == b"\x20\x02\x01\x00"
    # Session present only on success ([MQTT-3.2.2-4]); 5.0 codes map to return codes.
    assert connection.connack(True, RC.BAD_USER_NAME_OR_PASSWORD) == b"\x20\x02\x00\x04"
    assert connection.connack(False, RC.NOT_AUTHORIZED) == b"\x20\x02\x00\x05"
    assert connection.connack(False, RC.SERVER_BUSY) == b"\x20\x02\x00\x03"
    assert connection.puback(7) == b"\x40\x02\x00\x07"
    assert connection.puback(7, RC.QUOTA_EXCEEDED) == b"\x40\x02\x00\x07"  # 3.1.1 has no code
    assert connection.pubrec(8) == b"\x50\x02\x00\x08"
    assert connection.pubcomp(9) == b"\x70\x02\x00\x09"
    assert (
        connection.pubacks([1, 256, 65535]) == b"\x40\x02\x00\x01\x40\x02\x01\x00\x40\x02\xff\xff"
    )
    failure = connection.suback(3, [RC.GRANTED_QOS_1, RC.NOT_AUTHORIZED, RC.GRANTED_QOS_2])
    assert failure == b"\x90\x05\x00\x03\x01\x80\x02"  # [MQTT-3.9.3-2]
    assert connection.unsuback(4, [RC.SUCCESS]) == b"\xb0\x02\x00\x04"
    assert connection.pingresp() == b"\xd0\x00"
    assert connection.disconnect(RC.KEEP_ALIVE_TIMEOUT) == b""  # a 3.1.1 server just closes


def test_v5_replies() -> None:
    connection = connected(MQTT_5)
    assert connection.puback(7) == b"\x40\x02\x00\x07"  # short form, 5.0 §3.4.2.1
    assert connection.puback(7, RC.QUOTA_EXCEEDED) == b"\x40\x03\x00\x07\x97"
    assert connection.pubrec(8, RC.PAYLOAD_FORMAT_INVALID) == b"\x50\x03\x00\x08\x99"
    assert connection.pubcomp(9, RC.PACKET_IDENTIFIER_NOT_FOUND) == b"\x70\x03\x00\x09\x92"
    assert connection.suback(3, [RC.GRANTED_QOS_1, RC.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED]) == (
        b"\x90\x05\x00\x03\x00\x01\x9e"
    )
    assert connection.unsuback(4, [RC.NO_SUBSCRIPTION_EXISTED]) == b"\xb0\x04\x00\x04\x00\x11"
    assert connection.disconnect(RC.KEEP_ALIVE_TIMEOUT) == b"\xe0\x01\x8d"
    assert connection.disconnect(RC.SESSION_TAKEN_OVER) == b"\xe0\x01\x8e"
    assert connection.disconnect() == b"\xe0\x00"
    assert connection.connack(False, RC.NOT_AUTHORIZED) == b"\x20\x03\x00\x87\x00"


def test_v5_connack_advertises_the_limits() -> None:
    connection = connected(
        MQTT_5,
        max_packet_bytes=4096,
        receive_maximum=32,
        topic_alias_maximum=16,
        maximum_qos=1,
        retain_available=False,
    )
    reply = connection.connack(True, properties=Properties(assigned_client_identifier="gw-1"))
    client = MqttClientConnection(MQTT_5)
    [connack] = client.feed(reply)
    assert connack == ConnAck(
        True,
        RC.SUCCESS,
        Properties(
            assigned_client_identifier="gw-1",
            maximum_packet_size=4096,
            receive_maximum=32,
            topic_alias_maximum=16,
            maximum_qos=1,
            retain_available=0,
        ),
    )
    assert client.connack == connack
    # The defaults are the spec's defaults except the packet size, so only that is sent.
    [connack] = MqttClientConnection(MQTT_5).feed(connected(MQTT_5).connack())
    assert isinstance(connack, ConnAck)
    assert connack.properties == Properties(maximum_packet_size=DEFAULT_MAX_PACKET_BYTES)


def test_return_code_mapping() -> None:
    assert [return_code(c) for c in (RC.SUCCESS, RC.UNSUPPORTED_PROTOCOL_VERSION)] == [0, 1]
    assert [return_code(c) for c in (RC.CLIENT_IDENTIFIER_NOT_VALID, RC.SERVER_UNAVAILABLE)] == [
        2,
        3,
    ]
    assert [return_code(c) for c in (RC.BAD_USER_NAME_OR_PASSWORD, RC.NOT_AUTHORIZED)] == [4, 5]
    assert encode(ConnAck(False, RC.BANNED), MQTT_311) == b"\x20\x02\x00\x05"
