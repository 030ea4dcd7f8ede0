"""The spec's MUSTs on the server side after CONNECT: each refusal with its reason code and
its reply bytes (3.1.1: close without a word; 5.0: DISCONNECT with the code)."""

from __future__ import annotations

import pytest

from parser.mqtt import (
    MQTT_5,
    MQTT_311,
    Connect,
    Disconnect,
    MqttServerConnection,
    Properties,
    ProtocolViolation,
    Publish,
    ReasonCode,
    encode,
)
from tests.parser.mqtt import wire
from tests.parser.mqtt.streams import (
    after_connect,
    assert_refused,
    both,
    connect_bytes,
    server_error,
    server_packets,
)

RC = ReasonCode
V311 = connect_bytes(MQTT_311)
V5 = connect_bytes(MQTT_5)


# --- fixed header -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\x60\x02\x00\x01",  # PUBREL needs flags 0b0010 [MQTT-3.6.1-1]
        b"\x80\x06\x00\x01\x00\x01a\x00",  # SUBSCRIBE [MQTT-3.8.1-1]
        b"\xa0\x05\x00\x01\x00\x01a",  # UNSUBSCRIBE [MQTT-3.10.1-1]
        b"\x42\x02\x00\x01",  # PUBACK flags must be 0
        b"\xc1\x00",  # PINGREQ flags must be 0
        b"\xe8\x00",  # DISCONNECT flags must be 0
        b"\x00\x00",  # packet type 0 is reserved
        b"\xc0\x01\x00",  # PINGREQ has no body
    ],
)
def test_reserved_flags_and_types(data: bytes) -> None:  # [MQTT-2.2.2-1], [MQTT-2.2.2-2]
    v5_data = data if data[0] >> 4 not in (8, 10) else data[:4] + b"\x00" + data[4:]
    if data[0] >> 4 in (8, 10):
        v5_data = bytes((data[0], data[1] + 1)) + v5_data[2:]
    assert_refused(data, RC.MALFORMED_PACKET, v5_data)


@pytest.mark.parametrize("first", [0x20, 0x90, 0xB0, 0xD0])
def test_server_only_packets_from_a_client(first: int) -> None:
    assert_refused(bytes((first, 0)), RC.PROTOCOL_ERROR)


def test_packets_after_disconnect() -> None:  # [MQTT-3.14.4-1]
    assert_refused(b"\xe0\x00\xc0\x00", RC.PROTOCOL_ERROR)


def test_five_byte_remaining_length_is_malformed() -> None:  # [MQTT-1.5.5-1]
    assert_refused(b"\x30\xff\xff\xff\xff\x01", RC.MALFORMED_PACKET)
    assert server_error(b"\x10\x80\x80\x80\x80\x01").reply == b""


def test_packet_too_large() -> None:  # 5.0 §3.1.2.11.4, §3.2.2.3.6
    fits = wire.publish("t", b"x" * 95)
    assert len(fits) == 100
    assert server_packets(V311 + fits, max_packet_bytes=100)[1] == Publish("t", b"x" * 95)
    big_311 = wire.publish("t", b"x" * 96)
    big_5 = wire.publish("t", b"x" * 95, properties=b"\x00")
    assert_refused(big_311, RC.PACKET_TOO_LARGE, big_5, max_packet_bytes=100)
    # Refused from the header alone: the body is never buffered.
    connection = MqttServerConnection(max_packet_bytes=100)
    connection.feed(V5)
    with pytest.raises(ProtocolViolation) as raised:
        connection.feed(b"\x30\x63")  # announces 2 + 99 bytes
    assert raised.value.reply == wire.disconnect_reply(0x95)
    # An oversize CONNECT: just close, whatever its version (answered from its header).
    error = server_error(encode(Connect(5, "c" * 200), 5), max_packet_bytes=100)
    assert (error.reason_code, error.reply) == (RC.PACKET_TOO_LARGE, b"")


# --- PUBLISH ----------------------------------------------------------------------------------


def test_publish_qos_3_and_dup_on_qos_0_are_malformed() -> None:  # [MQTT-3.3.1-4], [MQTT-3.3.1-2]
    assert_refused(wire.publish("t", flags=0b0110), RC.MALFORMED_PACKET)
    assert_refused(wire.publish("t", flags=0b1000), RC.MALFORMED_PACKET)


def test_packet_id_zero_is_malformed() -> None:  # [MQTT-2.3.1-1]
    assert_refused(
        wire.publish("t", qos=1, packet_id=0),
        RC.MALFORMED_PACKET,
        wire.publish("t", qos=1, packet_id=0, properties=b"\x00"),
    )
    for data in (
        b"\x40\x02\x00\x00",
        b"\x82\x06\x00\x00\x00\x01a\x00",
        b"\xa2\x05\x00\x00\x00\x01a",
    ):
        assert both(data)[0] == RC.MALFORMED_PACKET


@pytest.mark.parametrize("topic", ["a/+", "#", "a/#", "+"])
def test_wildcards_in_a_topic_name(topic: str) -> None:  # [MQTT-3.3.2-2]
    v5 = wire.publish(topic, properties=b"\x00")
    assert_refused(wire.publish(topic), RC.TOPIC_NAME_INVALID, v5)


@pytest.mark.parametrize(
    "raw",
    [
        b"a\x00b",  # U+0000 [MQTT-1.5.4-2]
        b"\xed\xa0\x80",  # an encoded surrogate, U+D800 [MQTT-1.5.4-1]
        b"\xc0\xaf",  # overlong '/'
        b"\xff",
        b"\xe2\x82",  # truncated sequence
    ],
)
def test_invalid_utf8_is_malformed(raw: bytes) -> None:
    assert_refused(wire.publish(raw), RC.MALFORMED_PACKET, wire.publish(raw, properties=b"\x00"))


def test_empty_topic_name() -> None:
    # 3.1.1: a topic name has at least one character ([MQTT-4.7.3-1]); 5.0 needs an alias.
    assert both(wire.publish(""), wire.publish("", properties=b"\x00")) == (
        RC.TOPIC_NAME_INVALID,
        b"",
        RC.PROTOCOL_ERROR,
        wire.disconnect_reply(0x82),
    )


def test_publish_truncated_fields() -> None:
    assert_refused(b"\x30\x01\x00", RC.MALFORMED_PACKET)
    assert_refused(b"\x30\x03\x00\x05a", RC.MALFORMED_PACKET)
    assert_refused(b"\x32\x04\x00\x01a\x00", RC.MALFORMED_PACKET)


def test_subscription_identifier_from_a_client() -> None:  # [MQTT-3.3.4-6]
    assert after_connect(5, wire.publish("t", properties=b"\x02\x0b\x01")) == (
        RC.PROTOCOL_ERROR,
        wire.disconnect_reply(0x82),
    )


def test_receive_maximum() -> None:  # 5.0 §3.3.4: 0x93 beyond the advertised window
    p1, p2, p3 = (wire.publish("t", qos=1, packet_id=i, properties=b"\x00") for i in (1, 2, 3))
    assert after_connect(5, p1 + p2 + p3, receive_maximum=2) == (
        RC.RECEIVE_MAXIMUM_EXCEEDED,
        wire.disconnect_reply(0x93),
    )
    # Acknowledging through the helpers frees the slots.
    connection = MqttServerConnection(receive_maximum=2)
    connection.feed(V5 + p1 + p2)
    assert connection.puback(1) + connection.pubacks([2]) == b"\x40\x02\x00\x01\x40\x02\x00\x02"
    assert len(connection.feed(p3 + p1)) == 2
    # QoS 2 holds its slot until PUBCOMP (or an error PUBREC).
    connection = MqttServerConnection(receive_maximum=1)
    connection.feed(V5 + wire.publish("t", qos=2, packet_id=5, properties=b"\x00"))
    connection.pubrec(5)
    with pytest.raises(ProtocolViolation):
        connection.feed(p1)
    connection = MqttServerConnection(receive_maximum=1)
    connection.feed(V5 + wire.publish("t", qos=2, packet_id=5, properties=b"\x00"))
    connection.pubrec(5, RC.QUOTA_EXCEEDED)
    assert connection.feed(p1)
    # 3.1.1 has no Receive Maximum: nothing is counted.
    q1 = b"".join(wire.publish("t", qos=1, packet_id=i) for i in (1, 2, 3))
    assert len(server_packets(V311 + q1, receive_maximum=1)) == 4


def test_maximum_qos_and_retain_available() -> None:  # 5.0 §3.2.2.3.4, §3.2.2.3.5
    qos2 = wire.publish("t", qos=2, properties=b"\x00")
    assert after_connect(5, qos2, maximum_qos=1) == (
        RC.QOS_NOT_SUPPORTED,
        wire.disconnect_reply(0x9B),
    )
    retained = wire.publish("t", flags=1, properties=b"\x00")
    assert after_connect(5, retained, retain_available=False) == (
        RC.RETAIN_NOT_SUPPORTED,
        wire.disconnect_reply(0x9A),
    )


def test_topic_aliases() -> None:  # 5.0 §3.3.2.3.4
    alias = {n: b"\x03\x23" + n.to_bytes(2, "big") for n in range(4)}
    data = (
        V5
        + wire.publish("ev/1/t", b"a", properties=alias[1])
        + wire.publish("", b"b", properties=alias[1])
        + wire.publish("ev/2/t", b"c", properties=alias[1])  # replaces alias 1
        + wire.publish("", b"d", properties=alias[1])
        + wire.publish("ev/3/t", b"e", properties=b"\x00")
    )
    topics = [
        (p.topic, p.payload)
        for p in server_packets(data, topic_alias_maximum=2)[1:]
        if isinstance(p, Publish)
    ]
    assert topics == [
        ("ev/1/t", b"a"),
        ("ev/1/t", b"b"),
        ("ev/2/t", b"c"),
        ("ev/2/t", b"d"),
        ("ev/3/t", b"e"),
    ]
    # Alias 0 or above the maximum we advertised: 0x94 ([MQTT-3.3.2-8], [MQTT-3.3.2-9]).
    for n in (0, 3):
        assert after_connect(5, wire.publish("t", properties=alias[n]), topic_alias_maximum=2) == (
            RC.TOPIC_ALIAS_INVALID,
            wire.disconnect_reply(0x94),
        )
    assert after_connect(5, wire.publish("t", properties=alias[1])) == (
        RC.TOPIC_ALIAS_INVALID,
        wire.disconnect_reply(0x94),
    )
    # An alias never set: protocol error.
    assert after_connect(5, wire.publish("", properties=alias[2]), topic_alias_maximum=2) == (
        RC.PROTOCOL_ERROR,
        wire.disconnect_reply(0x82),
    )


# --- SUBSCRIBE, UNSUBSCRIBE, DISCONNECT -------------------------------------------------------


def subscribe(entries: bytes, v5: bool = False) -> bytes:
    return wire.packet(0x82, b"\x00\x01" + (b"\x00" if v5 else b"") + entries)


@pytest.mark.parametrize("text", ["a/#/b", "a#", "a/b+", "", "$share/g+/a", "a\x00"])
def test_invalid_topic_filters_are_malformed(text: str) -> None:  # 4.7.1, [MQTT-4.7.3-1]
    entry = wire.string(text) + b"\x01"
    assert_refused(subscribe(entry), RC.MALFORMED_PACKET, subscribe(entry, True))
    unsub = wire.string(text)
    assert_refused(
        wire.packet(0xA2, b"\x00\x01" + unsub),
        RC.MALFORMED_PACKET,
        wire.packet(0xA2, b"\x00\x01\x00" + unsub),
    )


@pytest.mark.parametrize("text", ["$share//a", "$share/g", "$share/+/a", "$share/#"])
def test_invalid_shared_subscriptions(text: str) -> None:  # 5.0 [MQTT-4.8.2-1], [MQTT-4.8.2-2]
    entry = wire.string(text) + b"\x01"
    assert after_connect(5, subscribe(entry, True)) == (
        RC.MALFORMED_PACKET,
        wire.disconnect_reply(0x81),
    )
    # 3.1.1 has no shared subscriptions: most of these are plain filters there.
    if "+" not in text and "#" not in text:
        assert server_packets(V311 + subscribe(entry))[1]


def test_subscribe_rules() -> None:
    # At least one filter ([MQTT-3.8.3-3]) and one to UNSUBSCRIBE ([MQTT-3.10.3-2]).
    assert_refused(subscribe(b""), RC.MALFORMED_PACKET, subscribe(b"", True))
    assert_refused(b"\xa2\x02\x00\x01", RC.MALFORMED_PACKET, b"\xa2\x03\x00\x01\x00")
    # Options: QoS 3, reserved bits ([MQTT-3-8.3-4], [MQTT-3.8.3-5]).
    for options in (0x03, 0xC1):
        entry = wire.string("a") + bytes((options,))
        assert_refused(subscribe(entry), RC.MALFORMED_PACKET, subscribe(entry, True))
    assert both(subscribe(wire.string("a") + b"\x04"))[0] == RC.MALFORMED_PACKET  # 3.1.1 bit 2
    # 5.0: retain handling 3, no local on a shared subscription ([MQTT-3.8.3-4]).
    for entry in (wire.string("a") + b"\x30", wire.string("$share/g/a") + b"\x04"):
        assert after_connect(5, subscribe(entry, True)) == (
            RC.PROTOCOL_ERROR,
            wire.disconnect_reply(0x82),
        )
    # A truncated entry.
    assert_refused(
        subscribe(wire.string("a")), RC.MALFORMED_PACKET, subscribe(wire.string("a"), True)
    )


def test_disconnect_rules() -> None:
    # 5.0: a reason code DISCONNECT may not carry is malformed; session expiry may not be set
    # at DISCONNECT when the CONNECT had none (§3.14.2.2.2).
    assert after_connect(5, b"\xe0\x01\x05") == (RC.MALFORMED_PACKET, wire.disconnect_reply(0x81))
    expiry = b"\xe0\x07\x00\x05\x11\x00\x00\x00\x0a"
    assert after_connect(5, expiry) == (RC.PROTOCOL_ERROR, wire.disconnect_reply(0x82))
    with_expiry = encode(Connect(5, "c", properties=Properties(session_expiry_interval=60)), 5)
    assert server_packets(with_expiry + expiry)[1] == Disconnect(
        RC.SUCCESS, Properties(session_expiry_interval=10)
    )
    # 3.1.1 DISCONNECT has no body.
    assert after_connect(4, b"\xe0\x01\x00") == (RC.MALFORMED_PACKET, b"")


def test_ack_reason_codes_are_checked() -> None:
    assert after_connect(5, b"\x40\x03\x00\x01\x92") == (
        RC.MALFORMED_PACKET,
        wire.disconnect_reply(0x81),
    )
    assert after_connect(5, b"\x62\x03\x00\x01\x10") == (
        RC.MALFORMED_PACKET,
        wire.disconnect_reply(0x81),
    )
    assert after_connect(4, b"\x40\x03\x00\x01\x00") == (RC.MALFORMED_PACKET, b"")


def test_error_carries_the_packets_before_it() -> None:
    good = wire.publish("a", b"1") + wire.publish("b", b"2")
    error = server_error(V311 + good + b"\x00\x00")
    assert [type(p) for p in error.packets] == [Connect, Publish, Publish]
