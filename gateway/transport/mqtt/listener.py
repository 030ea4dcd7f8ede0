"""One MQTT device port: the state its connections share, and its reloads and deadlines."""

from __future__ import annotations

from collections.abc import Callable

from gateway.common.stats import ListenerStats
from gateway.pipeline.accept import Pipeline
from gateway.pipeline.flow_control import FlowControl
from gateway.transport.connection import DeviceConnection
from gateway.transport.mqtt.metrics import MqttStats
from gateway.transport.mqtt.port import TRANSPORT, MqttPortState, password_checker
from gateway.transport.mqtt.protocol import MqttConnection, MqttSocket
from gateway.transport.mqtt.routes import Router
from gateway.transport.mqtt.settings import MqttListenerSettings
from gateway.transport.port import PortState
from parser.codec import Codec


class MqttListener:
    """The port's state (:class:`PortState`, counters labelled codec ``mqtt``) and the MQTT
    state its connections share (:class:`MqttPortState`, counters per route codec). All with
    transport ``mqtt``."""

    def __init__(
        self,
        settings: MqttListenerSettings,
        codecs: dict[str, Codec],
        pipeline: Pipeline,
        budget: FlowControl,
    ) -> None:
        stats = ListenerStats(TRANSPORT, TRANSPORT)
        self.port: PortState[MqttListenerSettings, MqttSocket] = PortState(
            TRANSPORT, settings, stats, pipeline, budget
        )
        self.mqtt_port = MqttPortState(settings, codecs)

    @property
    def name(self) -> str:
        return self.port.name

    @property
    def settings(self) -> MqttListenerSettings:
        return self.port.settings

    @property
    def stats(self) -> ListenerStats:
        return self.port.stats

    @property
    def mqtt_stats(self) -> MqttStats:
        return self.mqtt_port.mqtt_stats

    @property
    def codec_stats(self) -> dict[str, ListenerStats]:
        return self.mqtt_port.codec_stats

    @property
    def connections(self) -> set[MqttSocket]:
        return self.port.connections

    @property
    def bound_port(self) -> int:
        return self.port.bound_port

    def connection(self) -> MqttSocket:
        mqtt_port = self.mqtt_port
        return DeviceConnection(self.port, lambda conn: MqttConnection(conn, mqtt_port))

    async def start(self, *, reuse_port: bool = False) -> tuple[str, int]:
        return await self.port.start(self.connection, reuse_port=reuse_port)

    def stop_accepting(self) -> None:
        self.port.stop_accepting()

    def all_stats(self) -> list[ListenerStats]:
        shared = self.mqtt_port
        shared.mqtt_stats.sessions = len(shared.sessions)
        return [self.port.stats, *shared.codec_stats.values()]

    def prepare_reload(
        self, settings: MqttListenerSettings, codecs: dict[str, Codec]
    ) -> Callable[[], None]:
        """SIGHUP, in two steps so that all listeners load before any changes: load the
        password file (ConfigError), then the returned function applies routes (to the next
        messages of every connection), passwords, certificates and the allow-list (to new
        connections)."""
        passwords = password_checker(settings)
        router = Router(settings, codecs)

        def apply() -> None:
            port, shared = self.port, self.mqtt_port
            port.reload(settings)
            port.acks_wait = settings.ack_policy != "accepted"
            port.acks_delivered = settings.ack_policy == "delivered"
            shared.router = router
            shared.passwords = passwords
            for name in router.codec_names:
                shared.codec_stats.setdefault(name, ListenerStats(name, TRANSPORT))

        return apply

    def sweep(self, now: float) -> None:
        """Close connections past their CONNECT deadline or keep-alive x 1.5; expire sessions;
        store the wills whose delay has passed."""
        shared = self.mqtt_port
        shared.sessions.sweep(now)
        shared.wills.sweep(now)
        for conn in list(self.port.connections):
            if not conn.paused and now - conn.last_activity > conn.handler.silence_allowed_s():
                conn.handler.expire()
