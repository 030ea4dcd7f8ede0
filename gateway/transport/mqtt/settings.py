"""Settings of the MQTT device listeners (``[[mqtt_listeners]]``).

An MQTT listener is one port where devices connect as MQTT clients and publish frames: routes
map topic templates to codecs, ``identity`` says who the device is, ``auth`` how it proves it.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from gateway.common.settings_base import AckPolicy, ConfigError, Section
from gateway.transport.settings import EdgeSettings
from parser.topics import TopicError, TopicTemplate

DEVICE_ID = "device_id"
DEFAULT_ROUTE = "ev/{device_id}/telemetry"


def _template(text: str) -> str:
    try:
        TopicTemplate.parse(text)
    except TopicError as exc:
        raise ValueError(str(exc)) from None
    return text


class MqttRoute(Section):
    """Messages published on topics matching ``topic`` carry one frame of ``codec`` each."""

    topic: str = DEFAULT_ROUTE
    codec: str = "evb1"

    _valid_topic = field_validator("topic")(_template)


class MqttListenerSettings(EdgeSettings):
    # Loopback unless configured: a listener other machines reach is a deliberate choice, and
    # one without auth there must say so (see _consistent).
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=0, le=65535)  # 0 = any free port (tests, demos)
    # accepted: PUBACK once in the gateway's memory; journaled: once a journal fsync covers the
    # message; delivered: once every remote target (Kinesis) confirmed its records.
    ack_policy: AckPolicy = "journaled"
    max_connections: int = Field(default=15_000, ge=1)
    routes: list[MqttRoute] = Field(default_factory=lambda: [MqttRoute()], min_length=1)
    # Who the device is: the {device_id} level of the topic, the CONNECT client id or username,
    # or the CN of its client certificate. Unless it is the topic, a topic's {device_id} must
    # equal that identity: a device may only publish under its own.
    identity: Literal["topic", "client_id", "username", "certificate"] = "topic"
    # "none" proves nothing: any client may connect, claim any identity and take over any
    # client id. Beyond loopback it must be set explicitly.
    auth: Literal["none", "password", "certificate"] = "none"
    # A password or certificate proves an identity only if the identity is taken from it
    # (username, certificate): else any device that logs in may publish as any other, so such
    # a combination is refused. True allows it, for a trusted gateway in front of the devices
    # that logs in once and publishes for many.
    allow_any_identity: bool = False
    # `gateway passwd FILE USER` writes it; read again on SIGHUP.
    password_file: Path | None = None
    # Password checks (one scrypt each, ~50 ms) waiting or running at once; a CONNECT beyond
    # this is refused at once as busy (5.0 0x89, 3.1.1 "server unavailable"), so that guessing
    # cannot queue unbounded work. One waiting longer than connect_timeout_s is refused alike.
    max_pending_password_checks: int = Field(default=64, ge=1)
    # A will (topic and payload) larger than this is refused at CONNECT (5.0: 0x97): the will
    # is kept for the connection's life, outside the memory budget. Wills are stored like a
    # PUBLISH on their topic when a connection ends without a normal DISCONNECT; one on a topic
    # no route takes, or under another device's identity, is refused at CONNECT too.
    max_will_bytes: int = Field(default=4096, ge=0)
    # A device may subscribe to its own command topic (granted and kept); nothing else.
    command_topic: str = "ev/{device_id}/command"
    # The CONNECT must arrive within this long after the TCP (and TLS) handshake.
    connect_timeout_s: float = Field(default=10.0, gt=0)
    # A client that asks for keep-alive 0 (none) is still closed after this long in silence.
    idle_timeout_s: float = Field(default=600.0, gt=0)
    # Largest packet taken (CONNACK's Maximum Packet Size in v5); larger ones close the
    # connection (0x95). Frames of the binary codecs are far smaller.
    max_packet_bytes: int = Field(default=64 * 1024, ge=128, le=268_435_455)
    # QoS 1 and 2 PUBLISHes in flight per connection that a 5.0 client is told (CONNACK's
    # Receive Maximum; 65535 is the most there can be). Advertised, not enforced: many clients
    # (MQTT.js 5) send bursts beyond it, and memory is bounded by the pipeline's budget, which
    # stops reading the socket when full, not by this window.
    receive_maximum: int = Field(default=65535, ge=1, le=65535)
    # Persistent sessions (clean_session=0, v5 session expiry > 0) kept for reconnects: at most
    # this many, each at most this long after its connection ended. Also bounds the 5.0 wills
    # waiting out their delay (past it the oldest is stored at once).
    max_sessions: int = Field(default=100_000, ge=0)
    max_session_expiry_s: int = Field(default=3600, ge=0)
    # A device that does not read its PUBACKs is cut off once this much is queued for it.
    write_buffer_bytes: int = Field(default=64 * 1024, ge=1024)

    _valid_command_topic = field_validator("command_topic")(_template)

    @model_validator(mode="after")
    def _consistent(self) -> MqttListenerSettings:
        if "auth" not in self.model_fields_set and not _loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is reachable from other machines and auth is not set: set "
                "auth = 'password' or 'certificate', or auth = 'none' to accept any client"
            )
        if self.auth == "password" and self.password_file is None:
            raise ValueError("auth = 'password' needs password_file")
        proven = {"password": "username", "certificate": "certificate"}.get(self.auth)
        if proven is not None and self.identity != proven and not self.allow_any_identity:
            raise ValueError(
                f"auth = '{self.auth}' needs identity = '{proven}' (else any device that logs "
                "in may publish as any other); allow_any_identity = true for a trusted gateway"
            )
        needs_client_certs = self.auth == "certificate" or self.identity == "certificate"
        if needs_client_certs and (self.tls is None or self.tls.client_ca_file is None):
            raise ValueError("client certificates need tls.client_ca_file (mutual TLS)")
        if self.identity == "topic":
            for route in self.routes:
                if DEVICE_ID not in TopicTemplate.parse(route.topic).names:
                    raise ValueError(
                        f"route {route.topic!r} has no {{device_id}} level, and identity = "
                        "'topic' takes the device id from it"
                    )
        if DEVICE_ID not in TopicTemplate.parse(self.command_topic).names:
            raise ValueError("command_topic needs a {device_id} level")
        return self


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "" (every interface) or a name that may resolve anywhere


LISTEN_PREFIX = "mqtt="


def parse_mqtt_listen(spec: str) -> MqttListenerSettings:
    """``mqtt=HOST:PORT`` from ``--listen``: plain, no auth, the default route; ConfigError.
    Only on loopback: a listener other machines reach needs its auth set in the config."""
    host, colon, port = spec.removeprefix(LISTEN_PREFIX).rpartition(":")
    if not colon or not port.isdigit():
        raise ConfigError([f"--listen {spec!r}: expected mqtt=HOST:PORT"])
    try:
        return MqttListenerSettings(host=host.strip("[]") or "0.0.0.0", port=int(port))
    except ValidationError as exc:
        raise ConfigError([f"--listen {spec!r}: {e['msg']}" for e in exc.errors()]) from None
