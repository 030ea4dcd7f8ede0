"""A blocking MQTT test client on a raw socket (the codec's client side), for the tests that need
exact bytes on the wire (malformed packets, protocol levels, packet ids, sessions), and the
configuration helpers the MQTT tests share."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TypeVar

from parser.mqtt.client import MqttClientConnection
from parser.mqtt.encode import encode, encode_publish
from parser.mqtt.errors import MqttError
from parser.mqtt.packets import (
    MQTT_311,
    NO_PROPERTIES,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    Properties,
    PubRel,
)
from tests.gateway.devices import DeviceSocket
from tests.gateway.gatewayproc import GatewayProcess

DEVICE = "356307042441013"
TOPIC = f"ev/{DEVICE}/telemetry"
P = TypeVar("P", bound=Packet)


def start_gateway(
    tmp: Path, listener: str = "", top: str = "", name: str = "gw",
    env: dict[str, str] | None = None,
) -> GatewayProcess:  # fmt: skip
    """``gateway run`` with one MQTT listener on a free loopback port (``listener``: extra keys
    of its ``[[mqtt_listeners]]`` table) and no TCP listeners."""
    config = tmp / f"{name}.toml"
    config.write_text(
        f"listeners = []\n{top}\n[[mqtt_listeners]]\nhost = '127.0.0.1'\nport = 0\n{listener}\n"
    )
    return GatewayProcess(tmp / "data", codecs=(), config=config, env=env)


class MqttTestClient(DeviceSocket):
    def __init__(self, port: int, level: int = MQTT_311, timeout: float = 5.0) -> None:
        super().__init__(port, timeout)
        self.level = level
        self.codec = MqttClientConnection(level)
        self.received: list[Packet] = []

    def connect(
        self,
        client_id: str = "",
        *,
        clean: bool = True,
        keep_alive_s: int = 60,
        username: str | None = None,
        password: bytes | None = None,
        properties: Properties = NO_PROPERTIES,
    ) -> ConnAck:
        packet = Connect(self.level, client_id, clean, keep_alive_s, username, password, None,
                         properties)  # fmt: skip
        self.send(encode(packet, self.level))
        return self.expect(ConnAck)

    def publish(self, payload: bytes, qos: int = 1, packet_id: int = 1, *, topic: str = TOPIC,
                dup: bool = False) -> None:  # fmt: skip
        self.send(encode_publish(topic, payload, qos, packet_id if qos else 0, dup=dup,
                                 protocol_level=self.level))  # fmt: skip

    def pubrel(self, packet_id: int) -> None:
        self.send(encode(PubRel(packet_id), self.level))

    def disconnect(self) -> None:
        self.send(encode(Disconnect(), self.level))
        self.sock.close()

    def next_packet(self, timeout: float | None = None) -> Packet | None:
        """The next packet from the gateway; None when it closed (or the timeout passed)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.received:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                return None
            if not data:
                return None
            try:
                self.received += self.codec.feed(data)
            except MqttError:
                return None
        return self.received.pop(0)

    def expect(self, kind: type[P], timeout: float | None = None) -> P:
        packet = self.next_packet(timeout)
        assert isinstance(packet, kind), f"expected {kind.__name__}, got {packet!r}"
        return packet
