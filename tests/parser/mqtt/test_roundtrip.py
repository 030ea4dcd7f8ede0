"""Every packet type, both versions: encode → feed (whole, byte by byte, trailing bytes) gives
the same packet back; and bytes written by hand from the spec read as expected."""

from __future__ import annotations

import pytest

from parser.mqtt import (
    MQTT_5,
    MQTT_311,
    NO_PROPERTIES,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
    encode,
    encode_publish,
)
from tests.parser.mqtt.streams import client_packets, connect_bytes, server_packets

LEVELS = [MQTT_311, MQTT_5]
PROPS = Properties(user_properties=(("k", "v"), ("k", "w")), reason_string="why")


def v5_only(packet: Packet, level: int) -> Packet:
    """``packet`` as a 3.1.1 peer sees it: no properties, no reason codes."""
    if level == MQTT_5:
        return packet
    fields = {f: getattr(packet, f) for f in packet.__struct_fields__}
    if "properties" in fields:
        fields["properties"] = NO_PROPERTIES
    if "reason_code" in fields:
        fields["reason_code"] = ReasonCode.SUCCESS
    if isinstance(packet, UnsubAck):
        fields["reason_codes"] = ()
    if isinstance(packet, Subscribe):
        fields["subscriptions"] = tuple(
            Subscription(s.topic_filter, s.qos) for s in packet.subscriptions
        )
    return type(packet)(**fields)


def connects(level: int) -> list[Connect]:
    will_props = Properties(will_delay_interval=5, content_type="text/plain")
    return [
        Connect(level, "dev-1"),
        Connect(level, "", clean_start=True, keep_alive_s=65535),
        Connect(level, "dev-2", False, 30, "user", b"\x00secret\xff"),
        Connect(level, "dev-3", True, 10, "u", None, Will("ev/dev-3/status", b"gone", 1, True)),
        Connect(
            level,
            "dev-4",
            will=Will("w", b"", 2, False, will_props if level == 5 else NO_PROPERTIES),
        ),
    ]


CLIENT_SENT: list[Packet] = [
    Publish("ev/1/telemetry", b"hello"),
    Publish("ev/1/telemetry", b"", 1, True, True, 7),
    Publish("ev/ü/€", bytes(range(256)), 2, False, False, 65535, Properties(content_type="a/b")),
    PubAck(1),
    PubRec(2, ReasonCode.QUOTA_EXCEEDED, PROPS),
    PubRel(3),
    PubRel(3, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND),
    PubComp(4, ReasonCode.SUCCESS, PROPS),
    Subscribe(5, (Subscription("ev/+/telemetry", 1), Subscription("#", 2, True, True, 2))),
    Subscribe(6, (Subscription("$share/g/ev/#", 0),), Properties(subscription_identifiers=(9,))),
    Unsubscribe(7, ("ev/+/telemetry", "a/b"), Properties(user_properties=(("k", "v"),))),
    PingReq(),
    Disconnect(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE, PROPS),
]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("index", range(5))
def test_connect_round_trips(level: int, index: int) -> None:
    connect = connects(level)[index]
    assert server_packets(encode(connect, level), b"\x30") == [connect]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("packet", CLIENT_SENT, ids=lambda p: type(p).__name__)
def test_client_packets_round_trip_to_the_server(level: int, packet: Packet) -> None:
    if isinstance(packet, Subscribe) and level == MQTT_311 and packet.packet_id == 5:
        packet = v5_only(packet, level)
    hello = connect_bytes(level)
    packets = server_packets(hello + encode(packet, level), encode(packet, level)[:-1])
    assert packets[1:] == [v5_only(packet, level)]


SERVER_SENT: list[Packet] = [
    Publish("ev/cmd", b"reboot", 1, False, False, 9),
    PubAck(1, ReasonCode.NO_MATCHING_SUBSCRIBERS),
    PubRec(2),
    PubRel(3),
    PubComp(4, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND, PROPS),
    SubAck(5, (ReasonCode.GRANTED_QOS_0, ReasonCode.GRANTED_QOS_2, ReasonCode.UNSPECIFIED_ERROR)),
    UnsubAck(6, (ReasonCode.SUCCESS, ReasonCode.NO_SUBSCRIPTION_EXISTED), PROPS),
    PingResp(),
]
CONNACKS = [
    ConnAck(),
    ConnAck(True),
    ConnAck(False, ReasonCode.NOT_AUTHORIZED),
    ConnAck(False, ReasonCode.BAD_USER_NAME_OR_PASSWORD),
]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("connack", CONNACKS)
def test_connacks_round_trip_to_the_client(level: int, connack: ConnAck) -> None:
    assert client_packets(level, encode(connack, level), b"\x20\x02") == [connack]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("packet", SERVER_SENT, ids=lambda p: type(p).__name__)
def test_server_packets_round_trip_to_the_client(level: int, packet: Packet) -> None:
    data = encode(ConnAck(), level) + encode(packet, level)
    assert client_packets(level, data, b"\x90")[1:] == [v5_only(packet, level)]


def test_v5_only_packets_round_trip() -> None:
    packets: list[Packet] = [
        Disconnect(ReasonCode.SERVER_SHUTTING_DOWN, Properties(server_reference="other")),
        Auth(ReasonCode.CONTINUE_AUTHENTICATION, Properties(authentication_method="SCRAM")),
        Disconnect(),
    ]
    data = encode(ConnAck(), MQTT_5) + b"".join(encode(p, MQTT_5) for p in packets)
    assert client_packets(MQTT_5, data)[1:] == packets


def test_encode_refuses_what_the_protocol_cannot_carry() -> None:
    with pytest.raises(ValueError):
        encode(Auth(), MQTT_311)
    with pytest.raises(ValueError):
        encode(Publish("t", b"", 3, packet_id=1), MQTT_311)
    with pytest.raises(ValueError):
        encode(Publish("t", b"", 1), MQTT_311)  # no packet id
    with pytest.raises(ValueError):
        encode(Connect(MQTT_311, "c", password=b"p"), MQTT_311)
    with pytest.raises(ValueError):
        encode(Connect(MQTT_5, "c"), MQTT_311)
    with pytest.raises(ValueError):
        encode(Publish("a\x00b", b""), MQTT_311)
    with pytest.raises(ValueError):
        encode(Publish("x" * 65536, b""), MQTT_311)
    with pytest.raises(ValueError):
        encode(PingReq(), 3)


# Written from the spec's figures, not by our encoder.
CONNECT_311 = (
    b"\x10\x1b"  # CONNECT, remaining length 27
    b"\x00\x04MQTT\x04"  # protocol name and level (3.1.1 §3.1.2.1-2)
    b"\xc2\x00\x3c"  # user name, password, clean session; keep alive 60
    b"\x00\x03dev"  # client id
    b"\x00\x04user\x00\x04pass"
)
PUBLISH_311 = b"\x32\x0c\x00\x03a/b\x00\x0a" + b"hello"
CONNECT_5 = (
    b"\x10\x18\x00\x04MQTT\x05\x02\x00\x0a"
    b"\x08\x11\x00\x00\x0e\x10\x21\x00\x14"  # session expiry 3600, receive maximum 20
    b"\x00\x03dev"
)


def test_hand_written_bytes() -> None:
    assert server_packets(CONNECT_311 + PUBLISH_311) == [
        Connect(MQTT_311, "dev", True, 60, "user", b"pass"),
        Publish("a/b", b"hello", 1, False, False, 10),
    ]
    assert encode(Connect(MQTT_311, "dev", True, 60, "user", b"pass"), MQTT_311) == CONNECT_311
    assert encode_publish("a/b", b"hello", 1, 10) == PUBLISH_311
    connect = Connect(
        MQTT_5,
        "dev",
        True,
        10,
        properties=Properties(session_expiry_interval=3600, receive_maximum=20),
    )
    assert server_packets(CONNECT_5) == [connect]
    assert encode(connect, MQTT_5) == CONNECT_5
