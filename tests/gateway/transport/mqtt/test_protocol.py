"""One MQTT connection on the real pipeline: packets in through a mock transport, acknowledgements
out, records out through an in-memory sink (tests/gateway/transport/mqtt/test_connection.py holds
the protocol's corner cases on a pipeline the test drives by hand)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from gateway.common.stats import SinkStats
from gateway.pipeline.accept import Pipeline
from gateway.pipeline.flow_control import FlowControl
from gateway.pipeline.registry import CodecRegistry
from gateway.pipeline.settings import PipelineSettings
from gateway.transport.mqtt.listener import MqttListener
from gateway.transport.mqtt.settings import MqttListenerSettings, MqttRoute
from parser.mqtt.client import MqttClientConnection
from parser.mqtt.encode import encode, encode_publish
from parser.mqtt.packets import MQTT_311, ConnAck, Connect, PubAck, PubComp, PubRec, PubRel
from tests.gateway.pipeline.memory_sink import STREAMS, MemorySink, until
from tests.gateway.transport.mock_transport import made
from tests.parser.streams import evb1_heartbeat

DEVICE = "356307042441013"
TOPIC = f"ev/{DEVICE}/telemetry"


@pytest_asyncio.fixture
async def mqtt() -> AsyncIterator[tuple[MqttListener, MemorySink]]:
    sink = MemorySink(gated=True)
    settings = PipelineSettings()
    flow = FlowControl(settings.high_water_bytes, settings.low_water_bytes, time.monotonic)
    stats = {stream: SinkStats(stream) for stream in STREAMS}
    pipeline = Pipeline(settings, dict.fromkeys(STREAMS, sink), flow, stats)
    pipeline.start()
    config = MqttListenerSettings(port=0, routes=[MqttRoute()], identity="client_id")
    codecs = {"evb1": CodecRegistry.load().create("evb1")}
    yield MqttListener(config, codecs, pipeline, flow), sink
    await pipeline.close()


def publish(qos: int, packet_id: int) -> bytes:
    return encode_publish(TOPIC, evb1_heartbeat(packet_id), qos, packet_id)


@pytest.mark.asyncio
async def test_a_puback_leaves_once_the_message_is_written_and_its_records_are_out(
    mqtt: tuple[MqttListener, MemorySink],
) -> None:
    listener, sink = mqtt
    conn = listener.connection()
    transport = made(conn)
    client = MqttClientConnection(MQTT_311)
    conn.data_received(encode(Connect(MQTT_311, DEVICE, keep_alive_s=60), MQTT_311))
    conn.data_received(publish(1, 1) + publish(0, 0) + publish(1, 2))
    assert [type(p) for p in client.feed(transport.written())] == [ConnAck]
    for gate in sink.gates.values():
        gate.set()
    await until(lambda: len(transport.out) > 0)
    assert client.feed(transport.written()) == [PubAck(1), PubAck(2)]  # in PUBLISH order
    raw = [json.loads(r) for r in sink.records["raw"]]
    assert [(r["device_id"], r["codec"], r["transport"]) for r in raw] == [
        (DEVICE, "evb1", "mqtt")
    ] * 3
    assert listener.codec_stats["evb1"].frames == 3


@pytest.mark.asyncio
async def test_qos2_is_stored_once_and_pubrec_waits_for_the_write(
    mqtt: tuple[MqttListener, MemorySink],
) -> None:
    listener, sink = mqtt
    conn = listener.connection()
    transport = made(conn)
    client = MqttClientConnection(MQTT_311)
    conn.data_received(encode(Connect(MQTT_311, DEVICE, keep_alive_s=60), MQTT_311))
    conn.data_received(publish(2, 9))
    conn.data_received(encode_publish(TOPIC, evb1_heartbeat(9), 2, 9, dup=True))  # a resend
    assert [type(p) for p in client.feed(transport.written())] == [ConnAck]
    for gate in sink.gates.values():
        gate.set()
    await until(lambda: len(transport.out) > 0)
    assert client.feed(transport.written()) == [PubRec(9)]
    conn.data_received(encode(PubRel(9), MQTT_311))
    assert client.feed(transport.written()) == [PubComp(9)]
    assert len(sink.records["raw"]) == 1
