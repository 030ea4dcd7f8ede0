"""Settings of ``gateway bridge`` (the ``[bridge]`` section): sources, routes, destinations.

A *source* is a broker the bridge subscribes to (the Azure Event Grid namespace, or a broker on an
Azure VM) over a persistent session. A *route* maps the topics of one source, by a template such
as ``src/{device_id}/t``, either into the gateway's own pipeline (decoded by a codec) or to a
*destination*: an AWS-side MQTT endpoint (AWS IoT Core, or the gateway's MQTT listener behind the
NLB) reached over a pool of connections, each held to a publish rate.

Everything that would make the bridge lose, downgrade or loop messages is refused here, so that
``gateway check-config`` reports it before anything connects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator

from gateway.common.settings_base import AckPolicy, Section, missing_file_allowed
from parser.topics import TopicError, TopicTemplate, validate_filter

PIPELINE = "pipeline"
DEVICE_ID = "device_id"
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
MqttVersion = Literal["3.1.1", "5"]
Qos = Literal[0, 1, 2]


class ClientTlsSettings(Section):
    """TLS towards a broker; with ``cert_file`` and ``key_file`` also mutual TLS (X.509 auth)."""

    # None: the system's trusted CAs (public endpoints such as AWS IoT Core, Event Grid).
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # The name sent as SNI and verified in the server's certificate; default: the host. AWS IoT
    # Core requires SNI; set it when connecting by IP address or through a load balancer.
    server_hostname: str | None = None
    min_version: Literal["1.2", "1.3"] = "1.2"

    @model_validator(mode="after")
    def _files(self) -> ClientTlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (a client certificate)")
        for path in (self.ca_file, self.cert_file, self.key_file):
            if path is not None and not path.is_file() and not missing_file_allowed(path):
                raise ValueError(f"{path}: no such file")
        return self


class EndpointSettings(Section):
    """Where a broker is and how the bridge proves who it is; shared by sources and destinations.

    The password never sits in the settings file: it is read from ``password_file`` or from the
    environment variable ``password_env`` when the settings load, and kept as a ``SecretStr``
    (shown as ``**********``, never logged).
    """

    name: str = Field(pattern=NAME_PATTERN)
    host: str = Field(min_length=1)
    port: int = Field(default=8883, ge=1, le=65535)
    protocol: MqttVersion = "5"
    tls: ClientTlsSettings | None = None
    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    keepalive_s: int = Field(default=60, ge=5, le=65535)
    _password: SecretStr | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _load_password(self) -> EndpointSettings:
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("give password_file or password_env, not both")
        if self.password_file is not None and not (
            not self.password_file.exists() and missing_file_allowed(self.password_file)
        ):
            try:
                text = self.password_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
                raise ValueError(f"password_file {self.password_file}: {reason}") from None
            self._password = SecretStr(text.rstrip("\r\n"))
        elif self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ValueError(f"password_env: ${self.password_env} is not set")
            self._password = SecretStr(value)
        if self._password is not None and self.username is None:
            raise ValueError("a password needs a username")
        return self

    @property
    def password(self) -> SecretStr | None:
        return self._password

    def same_broker(self, other: EndpointSettings) -> bool:
        """Both reach the same broker by the same address (an alias is not recognised)."""
        return (self.host.lower(), self.port) == (other.host.lower(), other.port)


class SubscriptionSettings(Section):
    filter: str
    # QoS 0 or 1 (Event Grid has no QoS 2 either). A QoS 2 subscription would lose messages:
    # paho answers PUBREC on receipt and keeps the message only in that client object, so after
    # any reconnect (or a crash) the broker's resent PUBREL finds nothing. QoS 1 with manual
    # PUBACKs is at-least-once across reconnects and crashes.
    qos: Literal[0, 1] = 1
    # Shared subscription ``$share/<group>/<filter>``: bridges in one group split the messages
    # (each with its own client_id, so each keeps its own session).
    share_group: str | None = Field(default=None, pattern=r"^[^/+#$\s]+$")

    @field_validator("filter")
    @classmethod
    def _valid_filter(cls, value: str) -> str:
        try:
            validate_filter(value)
        except TopicError as exc:
            raise ValueError(str(exc)) from None
        if value.startswith("$share/"):
            raise ValueError("write the group in share_group, not in the filter")
        return value

    @property
    def topic_filter(self) -> str:
        """What is sent in the SUBSCRIBE."""
        if self.share_group is None:
            return self.filter
        return f"$share/{self.share_group}/{self.filter}"


class SourceSettings(EndpointSettings):
    """A broker the bridge pulls from, over a persistent session."""

    # The session's identity at the broker: keep it stable, or the broker's queue for the bridge
    # is left behind under the old id.
    client_id: str = Field(min_length=1, max_length=128)
    subscriptions: list[SubscriptionSettings] = Field(min_length=1)
    # MQTT 5: how long the broker keeps the session (and queues for it) after a disconnect;
    # Event Grid allows at most 8 h. MQTT 3.1.1 sessions (clean session off) last as long as
    # the broker keeps them. A session that ended with its connection would lose the queue.
    session_expiry_s: int = Field(default=28_800, ge=1, le=4_294_967_295)


class DestinationSettings(EndpointSettings):
    """An AWS-side MQTT endpoint the bridge republishes to over a pool of connections."""

    # Connection i (1..N) is <client_id_prefix>-<i>: AWS IoT Core allows one CONNECT per second
    # per client id and takes over a session whose id connects twice.
    client_id_prefix: str = Field(min_length=1, max_length=100)
    connections: int = Field(default=1, ge=1, le=1000)
    # AWS IoT Core: 100 publishes per second per connection (not adjustable).
    rate_per_connection: float = Field(default=100.0, gt=0)
    burst: int = Field(default=10, ge=1)
    # The highest QoS the endpoint takes: AWS IoT Core has no QoS 2.
    max_qos: Qos = 1
    # Publishes awaiting their PUBACK per connection.
    in_flight_per_connection: int = Field(default=20, ge=1, le=65_535)
    # A PUBACK not back within this long: the connection is taken as dead and reconnected.
    publish_timeout_s: float = Field(default=10.0, gt=0)


class RouteSettings(Section):
    """Messages of ``source`` whose topic fits ``topic`` go to ``destination``.

    ``destination = "pipeline"`` (the default) decodes each message as one frame of ``codec``
    for the device named by the ``{device_id}`` level; any other value names a destination,
    where the message is published on ``destination_topic`` (filled from ``topic``'s levels).
    """

    name: str = Field(pattern=NAME_PATTERN)
    source: str
    topic: str
    destination: str = PIPELINE
    codec: str | None = None
    # When the source is acknowledged. journaled = once a journal fsync covers the message
    # (a pipeline route's records; an MQTT route's message in its destination's series under
    # <data_dir>/bridge/, from which it is published); delivered = once its destination
    # confirmed it (every remote target of the records; the MQTT endpoint's PUBACK), so the
    # source's session holds the backlog of an outage, as before the journal; accepted = at
    # once (a crash loses what was not journaled yet).
    ack_policy: AckPolicy = "journaled"
    destination_topic: str | None = None

    @field_validator("topic", "destination_topic")
    @classmethod
    def _valid_template(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                TopicTemplate.parse(value)
            except TopicError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _shape(self) -> RouteSettings:
        names = TopicTemplate.parse(self.topic).names
        if self.destination == PIPELINE:
            if self.codec is None:
                raise ValueError("a pipeline route needs a codec")
            if self.destination_topic is not None:
                raise ValueError("destination_topic is for MQTT destinations, not the pipeline")
            if DEVICE_ID not in names:
                raise ValueError(f"topic {self.topic!r} needs a {{device_id}} level")
            return self
        if self.codec is not None:
            raise ValueError("codec is for pipeline routes; MQTT destinations get the bytes")
        if self.destination_topic is None:
            raise ValueError("an MQTT destination needs destination_topic")
        missing = TopicTemplate.parse(self.destination_topic).names - names
        if missing:
            raise ValueError(f"destination_topic uses {sorted(missing)}, which topic lacks")
        return self


class BridgeSettings(Section):
    # Written into what the bridge publishes (MQTT 5 user property ``bridged-by``), so that a
    # message coming back to a source is recognised as its own and not forwarded again.
    name: str = Field(default="ev-gateway-bridge", pattern=NAME_PATTERN)
    sources: list[SourceSettings] = Field(min_length=1)
    destinations: list[DestinationSettings] = Field(default_factory=list)
    routes: list[RouteSettings] = Field(min_length=1)
    # Per source: messages taken but not yet acknowledged. The bridge stops taking (and, past
    # as many again, stops reading the socket) at this bound; MQTT 5 also announces it as the
    # CONNECT's Receive Maximum. It bounds the duplicates the source redelivers after one
    # reconnect or crash (a crash also publishes again, from the journal, what an MQTT
    # destination confirmed since its cursor was last saved: at most a second's worth).
    in_flight: int = Field(default=64, ge=1, le=65_535)
    # The n-th reconnect in a row waits min(cap, base * 2 ** (n - 1)), jittered to 50-100 %.
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_cap_s: float = Field(default=30.0, gt=0)
    # A pipeline message not written within this long (its records were dead-lettered) makes
    # the bridge reconnect that source, so the broker redelivers what was not acknowledged.
    redeliver_after_s: float = Field(default=300.0, gt=0)
    # /readyz says no once no source has been connected for this long.
    source_down_after_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> BridgeSettings:
        if self.backoff_base_s > self.backoff_cap_s:
            raise ValueError("backoff_base_s must not exceed backoff_cap_s")
        for kind, items in (
            ("source", self.sources),
            ("destination", self.destinations),
            ("route", self.routes),
        ):
            names = [item.name for item in items]
            for name in {n for n in names if names.count(n) > 1}:
                raise ValueError(f"two {kind}s named {name!r}")
        if any(d.name == PIPELINE for d in self.destinations):
            raise ValueError(f"{PIPELINE!r} is the gateway's own pipeline, not a destination name")
        sources = {s.name: s for s in self.sources}
        destinations = {d.name: d for d in self.destinations}
        for route in self.routes:
            source = sources.get(route.source)
            if source is None:
                raise ValueError(f"route {route.name!r}: no source named {route.source!r}")
            if route.destination != PIPELINE:
                destination = destinations.get(route.destination)
                if destination is None:
                    raise ValueError(
                        f"route {route.name!r}: no destination named {route.destination!r}"
                    )
                _check_qos(route, source, destination)
                for other in self.sources:
                    if destination.same_broker(other):
                        _check_loop(route, destination, other)
        for source in self.sources:
            route_filters = [
                TopicTemplate.parse(r.topic).filter for r in self.routes if r.source == source.name
            ]
            for sub in source.subscriptions:
                if not any(filters_overlap(sub.filter, f) for f in route_filters):
                    raise ValueError(
                        f"source {source.name!r}: no route takes the topics of subscription "
                        f"{sub.filter!r}"
                    )
        return self


def _check_qos(route: RouteSettings, source: SourceSettings, dest: DestinationSettings) -> None:
    """The bridge never lowers a message's QoS, so the destination must take every QoS the
    route's subscriptions can deliver (mosquitto#199, #2694: bridges that downgrade)."""
    route_filter = TopicTemplate.parse(route.topic).filter
    for sub in source.subscriptions:
        if filters_overlap(sub.filter, route_filter) and sub.qos > dest.max_qos:
            raise ValueError(
                f"route {route.name!r}: subscription {sub.filter!r} delivers QoS {sub.qos} but "
                f"destination {dest.name!r} takes at most QoS {dest.max_qos}; the bridge never "
                "lowers QoS: lower the subscription's qos or raise the destination's max_qos"
            )


def _check_loop(route: RouteSettings, dest: DestinationSettings, source: SourceSettings) -> None:
    """Republishing into a broker the bridge also reads from loops unless the copies can be
    told apart: MQTT 5 on both sides carries the ``bridged-by`` mark; 3.1.1 has no properties,
    so its topics must not meet (mosquitto#3011, #1263: bridge loops)."""
    if dest.protocol == "5" and source.protocol == "5":
        return
    assert route.destination_topic is not None  # checked by RouteSettings
    out_filter = TopicTemplate.parse(route.destination_topic).filter
    for sub in source.subscriptions:
        if filters_overlap(out_filter, sub.filter):
            raise ValueError(
                f"route {route.name!r} publishes to {dest.name!r}, the broker of source "
                f"{source.name!r}, on topics its subscription {sub.filter!r} receives: under "
                "MQTT 3.1.1 that loops (no user property can mark bridged copies); use MQTT 5 "
                "on both, or topics the subscription does not cover"
            )


def filters_overlap(a: str, b: str) -> bool:
    """Whether some topic matches both subscription filters (MQTT §4.7)."""
    left, right = a.split("/"), b.split("/")
    for index in range(max(len(left), len(right))):
        x = left[index] if index < len(left) else None
        y = right[index] if index < len(right) else None
        if x == "#" or y == "#":
            return True  # '#' also matches its parent level: a/# matches a
        if x is None or y is None:
            return False
        if x != y and "+" not in (x, y):
            return False
    return True


def unknown_codecs(bridge: BridgeSettings, known: list[str]) -> list[str]:
    """``check-config`` lines for pipeline routes naming a codec that is not registered."""
    return [
        f"bridge.routes.{i}.codec: unknown codec {r.codec!r}; known: {', '.join(known)}"
        for i, r in enumerate(bridge.routes)
        if r.codec is not None and r.codec not in known
    ]
