"""The codec's invariant under hostile bytes: ``feed`` gives packets or raises the codec's own
``MqttError`` (with bytes to reply), never anything else, and never buffers more than
``max_packet_bytes``. Valid streams cut anywhere give back exactly what was encoded."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parser.mqtt import (
    MQTT_5,
    MQTT_311,
    Connect,
    Disconnect,
    MqttClientConnection,
    MqttError,
    MqttServerConnection,
    Packet,
    PingReq,
    Properties,
    PubAck,
    Publish,
    PubRel,
    ReasonCode,
    Subscribe,
    Subscription,
    Unsubscribe,
    encode,
)
from parser.mqtt.framing import PacketFramer

levels = st.sampled_from([MQTT_311, MQTT_5])
bounds = st.sampled_from([5, 16, 64, 1024, 256 * 1024])
cuts = st.lists(st.integers(0, 2000), max_size=10)
texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00+#"), max_size=20)
topics = texts.filter(bool)
filters = st.sampled_from(["a/+/c", "#", "ev/+/telemetry", "$share/g/x/#", "+"]) | topics
user_properties = st.lists(st.tuples(texts, texts), max_size=3).map(tuple)
publish_properties = st.builds(
    Properties,
    content_type=st.none() | texts,
    message_expiry_interval=st.none() | st.integers(0, 2**32 - 1),
    payload_format_indicator=st.none() | st.integers(0, 1),
    correlation_data=st.none() | st.binary(max_size=10),
    user_properties=user_properties,
)


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    qos = draw(st.integers(0, 2))
    return Publish(
        draw(topics),
        draw(st.binary(max_size=300)),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
        draw(st.integers(1, 65535)) if qos else 0,
        draw(publish_properties),
    )


client_packets = st.one_of(
    publishes(),
    st.builds(PubAck, st.integers(1, 65535)),
    st.builds(PubRel, st.integers(1, 65535)),
    st.builds(
        Subscribe,
        st.integers(1, 65535),
        st.lists(st.builds(Subscription, filters, st.integers(0, 2)), min_size=1, max_size=3).map(
            tuple
        ),
    ),
    st.builds(
        Unsubscribe, st.integers(1, 65535), st.lists(filters, min_size=1, max_size=3).map(tuple)
    ),
    st.just(PingReq()),
)


def feed_in_pieces(connection: PacketFramer, data: bytes, edges: list[int]) -> list[Packet]:
    """Feeds ``data`` cut at ``edges``; checks the invariant after every call."""
    points = [0, *sorted(e for e in edges if e < len(data)), len(data)]
    packets: list[Packet] = []
    for start, end in itertools.pairwise(points):
        try:
            packets += connection.feed(data[start:end])
        except MqttError as error:
            assert isinstance(error.reply, bytes)
            assert isinstance(error.reason_code, ReasonCode)
            return packets
        assert connection.buffered_bytes <= connection.max_packet_bytes
    return packets


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=600), edges=cuts, bound=bounds)
def test_arbitrary_bytes_from_the_start(data: bytes, edges: list[int], bound: int) -> None:
    feed_in_pieces(MqttServerConnection(max_packet_bytes=bound), data, edges)
    feed_in_pieces(MqttClientConnection(MQTT_5, max_packet_bytes=bound), data, edges)
    feed_in_pieces(MqttClientConnection(MQTT_311, max_packet_bytes=bound), data, edges)


@settings(max_examples=500, deadline=None)
@given(
    level=levels, data=st.binary(max_size=600), edges=cuts, bound=bounds, aliases=st.integers(0, 3)
)
def test_arbitrary_bytes_after_a_valid_connect(
    level: int, data: bytes, edges: list[int], bound: int, aliases: int
) -> None:
    connection = MqttServerConnection(max_packet_bytes=max(bound, 64), topic_alias_maximum=aliases)
    assert connection.feed(encode(Connect(level, "fuzz"), level))
    feed_in_pieces(connection, data, edges)


@settings(max_examples=300, deadline=None)
@given(level=levels, packets=st.lists(client_packets, max_size=6), edges=cuts)
def test_valid_streams_cut_anywhere_give_the_packets_back(
    level: int, packets: list[Packet], edges: list[int]
) -> None:
    if level == MQTT_311:
        packets = [
            Publish(p.topic, p.payload, p.qos, p.retain, p.dup, p.packet_id)
            if isinstance(p, Publish)
            else p
            for p in packets
        ]
    hello = Connect(level, "fuzz")
    stream = b"".join(encode(p, level) for p in [hello, *packets, Disconnect()])
    got = feed_in_pieces(MqttServerConnection(), stream, edges)
    assert got == [hello, *packets, Disconnect()]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    level=levels,
    packets=st.lists(client_packets, min_size=1, max_size=4),
    index=st.integers(0, 10_000),
    byte=st.integers(0, 255),
    edges=cuts,
)
def test_corrupted_streams(
    level: int, packets: list[Packet], index: int, byte: int, edges: list[int]
) -> None:
    stream = bytearray(b"".join(encode(p, level) for p in [Connect(level, "fuzz"), *packets]))
    stream[index % len(stream)] = byte
    feed_in_pieces(
        MqttServerConnection(max_packet_bytes=512, topic_alias_maximum=2), bytes(stream), edges
    )
