"""Feed MQTT connections three ways (whole, byte by byte, with trailing bytes) with plain bytes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from parser.mqtt import (
    MQTT_5,
    MQTT_311,
    Connect,
    MqttClientConnection,
    MqttError,
    MqttServerConnection,
    Packet,
    ReasonCode,
    encode,
)
from parser.mqtt.framing import PacketFramer
from tests.parser.mqtt import wire


def connect_bytes(level: int, client_id: str = "dev-1", **fields: Any) -> bytes:
    return encode(Connect(level, client_id, **fields), level)


def feed_three_ways(
    make: Callable[[], PacketFramer], data: bytes, trailing: bytes = b""
) -> list[Packet]:
    """Packets for ``data``; asserts byte-by-byte agrees and ``trailing`` stays buffered."""
    whole = make().feed(data)
    bytewise = make()
    one_by_one = [p for i in range(len(data)) for p in bytewise.feed(data[i : i + 1])]
    assert one_by_one == whole
    assert bytewise.buffered_bytes == 0
    connection = make()
    assert connection.feed(data + trailing) == whole, "a partial packet must not give packets"
    assert connection.buffered_bytes == len(trailing)
    return whole


def server_packets(data: bytes, trailing: bytes = b"", **limits: Any) -> list[Packet]:
    return feed_three_ways(lambda: MqttServerConnection(**limits), data, trailing)


def client_packets(level: int, data: bytes, trailing: bytes = b"", **limits: Any) -> list[Packet]:
    return feed_three_ways(lambda: MqttClientConnection(level, **limits), data, trailing)


def feed_error(make: Callable[[], PacketFramer], data: bytes) -> MqttError:
    """The error ``data`` raises, fed whole; fed byte by byte it must be the same error."""
    with pytest.raises(MqttError) as whole:
        make().feed(data)
    connection = make()
    with pytest.raises(MqttError) as bytewise:
        for i in range(len(data)):
            connection.feed(data[i : i + 1])
    assert type(bytewise.value) is type(whole.value)
    assert bytewise.value.reason_code == whole.value.reason_code
    assert bytewise.value.reply == whole.value.reply
    with pytest.raises(MqttError) as again:
        connection.feed(b"\xc0\x00")
    assert again.value is bytewise.value, "a failed connection stays failed"
    return whole.value


def server_error(data: bytes, **limits: Any) -> MqttError:
    return feed_error(lambda: MqttServerConnection(**limits), data)


def client_error(level: int, data: bytes, **limits: Any) -> MqttError:
    return feed_error(lambda: MqttClientConnection(level, **limits), data)


def after_connect(level: int, data: bytes, **limits: Any) -> tuple[ReasonCode, bytes]:
    """Reason code and reply for ``data`` sent after a good CONNECT at ``level``."""
    error = server_error(connect_bytes(level) + data, **limits)
    assert isinstance(error.packets[0], Connect)
    return error.reason_code, error.reply


def both(
    data_311: bytes, data_5: bytes | None = None, **limits: Any
) -> tuple[ReasonCode, bytes, ReasonCode, bytes]:
    code_311, reply_311 = after_connect(MQTT_311, data_311, **limits)
    code_5, reply_5 = after_connect(MQTT_5, data_311 if data_5 is None else data_5, **limits)
    return code_311, reply_311, code_5, reply_5


def assert_refused(
    data_311: bytes, code: ReasonCode, data_5: bytes | None = None, **limits: Any
) -> None:
    """3.1.1 closes without a word (3.1.1 §4.8); 5.0 gets DISCONNECT with ``code`` (§4.13)."""
    assert both(data_311, data_5, **limits) == (code, b"", code, wire.disconnect_reply(code))
