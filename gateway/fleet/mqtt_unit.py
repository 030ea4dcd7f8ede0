"""An EVB1 unit that speaks MQTT: the same frames as QoS 1 PUBLISHes to its telemetry topic. Pure.

It connects with its device id as client id and a persistent session (Clean Session 0), so a
reconnect resumes; every frame is one message on ``ev/{device_id}/telemetry`` whose packet id is
the frame's EVB1 sequence number (never 0, [MQTT-2.3.1-1]), and a PUBACK settles it. After a
reconnect, or when the PUBACK is overdue, the PUBLISH is sent again with the DUP flag. The
codec's client side reads the gateway's packets (no paho on the simulator's hot path).
"""

from __future__ import annotations

from gateway.fleet.protocol_units import Evb1Unit
from gateway.fleet.unit import Pending
from parser.mqtt.client import MqttClientConnection
from parser.mqtt.encode import encode, encode_publish
from parser.mqtt.errors import MqttError
from parser.mqtt.packets import MQTT_311, ConnAck, Connect, PubAck, ReasonCode

TOPIC = "ev/{device_id}/telemetry"
KEEP_ALIVE_S = 60  # EVB1 heartbeats (every 30 s) keep the connection active


class Evb1MqttUnit(Evb1Unit):
    codec = "evb1"

    def _init_protocol(self) -> None:
        super()._init_protocol()
        self._topic = TOPIC.format(device_id=self.device_id)
        self._mqtt = MqttClientConnection(MQTT_311)

    def _next_seq(self) -> int:
        seq = super()._next_seq()
        return seq or super()._next_seq()  # the seq is the packet id, which is never 0

    def connected(self, now: float) -> list[bytes]:
        self._mqtt = MqttClientConnection(MQTT_311)
        return super().connected(now)

    def _login(self) -> bytes:
        connect = Connect(MQTT_311, self.device_id, clean_start=False, keep_alive_s=KEEP_ALIVE_S)
        return encode(connect, MQTT_311)

    def _wire(self, pending: Pending, *, resend: bool) -> bytes:
        return encode_publish(self._topic, pending.payload, 1, pending.key, dup=resend)

    def received(self, data: bytes, now: float) -> list[bytes]:
        try:
            packets = self._mqtt.feed(data)
        except MqttError as exc:
            self._fail(f"gateway sent bad MQTT: {exc}", refused=False)
            return []
        for packet in packets:
            if isinstance(packet, PubAck):
                pending = self.waiting.get(packet.packet_id)
                self._acked(packet.packet_id, pending.kind if pending else -1, now)
            elif isinstance(packet, ConnAck):
                if packet.reason_code != ReasonCode.SUCCESS:
                    self._fail(f"CONNACK {packet.reason_code.name}", refused=True)
                    return []
                self._logged_in(now)
        return self.pump(now) if self.logged_in else []
