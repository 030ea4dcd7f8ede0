"""Framing: Remaining Length boundaries (3.1.1 §2.2.3, 5.0 §1.5.5), the buffer bound, and
linear cost under many small reads."""

from __future__ import annotations

import time

import pytest

from parser.mqtt import (
    MQTT_311,
    MalformedPacket,
    MqttServerConnection,
    ProtocolViolation,
    Publish,
    ReasonCode,
    encode_publish,
)
from parser.mqtt.framing import MAX_PACKET_BYTES
from parser.mqtt.wire import encode_varint, read_varint
from tests.parser.mqtt import wire
from tests.parser.mqtt.streams import connect_bytes

HELLO = connect_bytes(MQTT_311)
BOUNDARIES = {
    127: b"\x7f",
    128: b"\x80\x01",
    16383: b"\xff\x7f",
    16384: b"\x80\x80\x01",
    2097151: b"\xff\xff\x7f",
    2097152: b"\x80\x80\x80\x01",
    268435455: b"\xff\xff\xff\x7f",
}


@pytest.mark.parametrize(("value", "encoded"), BOUNDARIES.items())
def test_variable_byte_integer(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded == wire.length(value)
    assert read_varint(encoded, 0, len(encoded)) == (value, len(encoded))
    assert read_varint(encoded, 0, len(encoded) - 1)[0] == -1  # incomplete, not an error


@pytest.mark.parametrize("remaining", [v for v in BOUNDARIES if v <= 2097152])
def test_publish_at_each_length_boundary(remaining: int) -> None:
    payload = bytes(i & 0xFF for i in range(remaining - 3))  # topic "t" takes 3 bytes
    packet = encode_publish("t", payload)
    assert packet[1 : 1 + len(BOUNDARIES[remaining])] == BOUNDARIES[remaining]
    assert len(packet) == 1 + len(BOUNDARIES[remaining]) + remaining
    step = 1 if remaining < 20000 else 4093
    connection = MqttServerConnection(max_packet_bytes=MAX_PACKET_BYTES)
    connection.feed(HELLO)
    packets = []
    for i in range(0, len(packet), step):
        packets += connection.feed(packet[i : i + step])
        assert connection.buffered_bytes <= len(packet)
    assert packets == [Publish("t", payload)]
    assert connection.buffered_bytes == 0


def test_largest_remaining_length_is_framed_and_bounded() -> None:
    header = b"\x30" + BOUNDARIES[268435455]
    connection = MqttServerConnection(max_packet_bytes=MAX_PACKET_BYTES)
    connection.feed(HELLO)
    assert connection.feed(header + b"\x00\x01t" + b"x" * 1000) == []
    assert connection.buffered_bytes == 1008
    connection = MqttServerConnection()
    connection.feed(HELLO)
    with pytest.raises(ProtocolViolation) as raised:
        connection.feed(header)
    assert raised.value.reason_code == ReasonCode.PACKET_TOO_LARGE
    assert connection.buffered_bytes == 0


def test_five_byte_length_is_refused_from_the_header() -> None:
    connection = MqttServerConnection(max_packet_bytes=MAX_PACKET_BYTES)
    connection.feed(HELLO)
    assert connection.feed(b"\x30\x80\x80\x80") == []
    with pytest.raises(MalformedPacket):
        connection.feed(b"\x80")


def test_many_packets_in_one_read_and_a_partial_tail() -> None:
    publishes = [encode_publish(f"ev/{i}/t", bytes(100), 1, i + 1) for i in range(500)]
    stream = HELLO + b"".join(publishes)
    connection = MqttServerConnection()
    assert len(connection.feed(stream + publishes[0][:50])) == 501
    assert connection.buffered_bytes == 50
    assert connection.feed(publishes[0][50:]) == [Publish("ev/0/t", bytes(100), 1, False, False, 1)]


def test_small_reads_stay_linear() -> None:
    # A 256 KiB PUBLISH fed one byte at a time: quadratic buffering would copy ~32 GB here.
    packet = encode_publish("t", bytes(256 * 1024 - 8))
    connection = MqttServerConnection(max_packet_bytes=len(packet))
    connection.feed(HELLO)
    started = time.process_time()
    packets = [p for i in range(len(packet)) for p in connection.feed(packet[i : i + 1])]
    assert time.process_time() - started < 5
    assert len(packets) == 1 and connection.buffered_bytes == 0


def test_max_packet_bytes_must_hold_a_fixed_header() -> None:
    with pytest.raises(ValueError):
        MqttServerConnection(max_packet_bytes=4)
    with pytest.raises(ValueError):
        MqttServerConnection(max_packet_bytes=MAX_PACKET_BYTES + 1)


def test_reused_receive_buffers_are_copied() -> None:
    buffer = bytearray(HELLO + encode_publish("t", b"payload"))
    connection = MqttServerConnection()
    packets = connection.feed(memoryview(buffer))
    buffer[:] = bytes(len(buffer))
    assert packets[1] == Publish("t", b"payload")
    assert MqttServerConnection().feed(bytearray(HELLO))
