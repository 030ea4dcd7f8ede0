"""Real client bytes: ``mosquitto_pub`` (Debian mosquitto-clients) talks to a tiny loopback
server driven by our server connection, which answers with its own CONNACK and PUBACKs."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import pytest

from parser.mqtt import (
    MQTT_5,
    MQTT_311,
    Connect,
    Disconnect,
    MqttServerConnection,
    Packet,
    Publish,
)

MOSQUITTO_PUB = shutil.which("mosquitto_pub")
pytestmark = [
    pytest.mark.skipif(MOSQUITTO_PUB is None, reason="mosquitto-clients not installed"),
    pytest.mark.asyncio,
]


async def serve_one(*args: str, stdin: bytes = b"", **limits: Any) -> list[Packet]:
    """Runs ``mosquitto_pub -p PORT *args`` against one connection; returns what it sent."""
    received: list[Packet] = []
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = MqttServerConnection(**limits)
        try:
            while data := await reader.read(65536):
                for packet in connection.feed(data):
                    received.append(packet)
                    if isinstance(packet, Connect):
                        writer.write(connection.connack())
                    elif isinstance(packet, Publish) and packet.qos == 1:
                        writer.write(connection.puback(packet.packet_id))
                await writer.drain()
        finally:
            writer.close()
            done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    assert MOSQUITTO_PUB is not None
    process = await asyncio.create_subprocess_exec(
        MOSQUITTO_PUB,
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-i",
        "interop-1",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(stdin), timeout=10)
        await asyncio.wait_for(done.wait(), timeout=10)
    finally:
        if process.returncode is None:
            process.kill()
        server.close()
        await server.wait_closed()
    assert process.returncode == 0, stderr.decode()
    return received


@pytest.mark.parametrize(("version", "level"), [("mqttv311", MQTT_311), ("mqttv5", MQTT_5)])
async def test_mosquitto_pub_qos1(version: str, level: int) -> None:
    packets = await serve_one("-V", version, "-q", "1", "-t", "ev/x/telemetry", "-m", "hello")
    connect, publish, disconnect = packets
    assert isinstance(connect, Connect)
    assert (connect.protocol_level, connect.client_id, connect.clean_start) == (
        level,
        "interop-1",
        True,
    )
    assert isinstance(publish, Publish)
    assert (publish.topic, publish.payload, publish.qos, publish.retain) == (
        "ev/x/telemetry",
        b"hello",
        1,
        False,
    )
    assert publish.packet_id > 0
    assert isinstance(disconnect, Disconnect)


async def test_mosquitto_pub_v5_topic_alias_and_properties() -> None:
    packets = await serve_one(
        "-V",
        "mqttv5",
        "-q",
        "1",
        "-t",
        "ev/x/telemetry",
        "-D",
        "publish",
        "topic-alias",
        "1",
        "-D",
        "publish",
        "user-property",
        "unit",
        "kWh",
        "-D",
        "connect",
        "receive-maximum",
        "10",
        "-l",
        stdin=b"one\ntwo\nthree\n",
        topic_alias_maximum=4,
    )
    publishes = [p for p in packets if isinstance(p, Publish)]
    assert [(p.topic, p.payload) for p in publishes] == [
        ("ev/x/telemetry", b"one"),
        ("ev/x/telemetry", b"two"),
        ("ev/x/telemetry", b"three"),
    ]
    assert all(p.properties.topic_alias == 1 for p in publishes)
    assert all(p.properties.user_properties == (("unit", "kWh"),) for p in publishes)
    connect = packets[0]
    assert isinstance(connect, Connect) and connect.properties.receive_maximum == 10
