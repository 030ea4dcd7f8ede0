"""One MQTT device port: its routes, sessions, credentials, counters and connections."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from gateway.common.stats import ListenerStats
from gateway.pipeline.accept import Pipeline
from gateway.transport.connection import DevicePort
from gateway.transport.flow_control import FlowControl
from gateway.transport.mqtt.metrics import MqttStats
from gateway.transport.mqtt.passwords import PasswordChecker
from gateway.transport.mqtt.protocol import MqttConnection
from gateway.transport.mqtt.routes import Router
from gateway.transport.mqtt.sessions import SessionStore
from gateway.transport.mqtt.settings import MqttListenerSettings
from gateway.transport.mqtt.wills import PendingWills
from parser.codec import Codec
from parser.mqtt.connection import MqttServerConnection

log = structlog.get_logger("gateway.transport.mqtt")

TRANSPORT = "mqtt"
# 5.0 Topic Aliases a client may use towards us (CONNACK Topic Alias Maximum): devices that
# publish one long topic at a high rate save its bytes on every message.
TOPIC_ALIAS_MAXIMUM = 16


class MqttListener(DevicePort):
    """Connection-level counters (connections, closes, rejects, acknowledgements and their
    latency, the protocol's own bytes) are labelled codec ``mqtt``: a connection may publish
    to routes of several codecs. Frames, records, decode errors and the payload bytes that
    carried them are counted per route codec. All with transport ``mqtt``."""

    def __init__(
        self,
        settings: MqttListenerSettings,
        codecs: dict[str, Codec],
        pipeline: Pipeline,
        flow: FlowControl,
    ) -> None:
        super().__init__(settings, ListenerStats(TRANSPORT, TRANSPORT), pipeline, flow)
        self.settings = settings
        self.delivered = settings.ack_policy == "delivered"
        self.router = Router(settings, codecs)
        self.codec_stats = {
            name: ListenerStats(name, TRANSPORT) for name in self.router.codec_names
        }
        self.mqtt_stats = MqttStats()
        self.sessions = SessionStore(settings.max_sessions, settings.max_session_expiry_s)
        self.wills = PendingWills(settings.max_sessions)
        self.passwords = _password_checker(settings)

    @property
    def name(self) -> str:
        return TRANSPORT

    def connection(self) -> MqttConnection:
        return MqttConnection(self)

    def codec_connection(self) -> MqttServerConnection:
        s = self.settings
        return MqttServerConnection(
            max_packet_bytes=s.max_packet_bytes,
            receive_maximum=s.receive_maximum,
            enforce_receive_maximum=False,  # see MqttListenerSettings.receive_maximum
            # Nothing could ever receive a retained message (devices may subscribe to their
            # command topic only), so 5.0 clients are told there is none (CONNACK Retain
            # Available 0; a retained PUBLISH or will is then refused, 0x9A, as 5.0 §3.2.2.3.5
            # says). 3.1.1 cannot be told: there the flag is ignored and the message stored.
            retain_available=False,
            topic_alias_maximum=TOPIC_ALIAS_MAXIMUM,
        )

    def all_stats(self) -> list[ListenerStats]:
        self.mqtt_stats.sessions = len(self.sessions)
        return [self.stats, *self.codec_stats.values()]

    def prepare_reload(
        self, settings: MqttListenerSettings, codecs: dict[str, Codec]
    ) -> Callable[[], None]:
        """SIGHUP, in two steps so that all listeners load before any changes: load the
        password file (ConfigError), then the returned function applies routes (to the next
        messages of every connection), passwords, certificates and the allow-list (to new
        connections)."""
        passwords = _password_checker(settings)
        router = Router(settings, codecs)

        def apply() -> None:
            self.reload_port(settings)
            self.settings = settings
            self.delivered = settings.ack_policy == "delivered"
            self.router = router
            self.passwords = passwords
            for name in router.codec_names:
                self.codec_stats.setdefault(name, ListenerStats(name, TRANSPORT))

        return apply

    def sweep(self, now: float) -> None:
        """Close connections past their CONNECT deadline or keep-alive x 1.5; expire sessions;
        store the wills whose delay has passed."""
        self.sessions.sweep(now)
        self.wills.sweep(now)
        for conn in list(self.connections):
            assert isinstance(conn, MqttConnection)
            if not conn.paused and now - conn.last_activity > conn.silence_allowed_s():
                conn.expire()


def _password_checker(settings: MqttListenerSettings) -> PasswordChecker | None:
    if settings.password_file is None:
        return None
    return PasswordChecker.load(settings.password_file, settings.max_pending_password_checks)
