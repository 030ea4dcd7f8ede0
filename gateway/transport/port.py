"""One bound device port and the state its connections share (uvicorn's ``ServerState``).

A :class:`PortState` is what every connection of one port reads: its settings, counters, TLS
context, source allow-list, PROXY protocol mode and trusted proxies, the pipeline, the memory
budget (``budget``), the reply batcher and the open connections. The port is the budget's reader
for all its connections (one registration per port, not one set entry per connection). The
listeners (``tcp.Listener``, ``mqtt.listener.MqttListener``) hold one and hand it to each
connection they make; nothing in a connection reaches back into its listener.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Generic, Literal, Protocol, TypeVar

from gateway.common.settings_base import AckPolicy
from gateway.common.stats import ListenerStats
from gateway.pipeline.accept import Pipeline
from gateway.pipeline.flow_control import FlowControl
from gateway.transport.replies import ReplyBatcher
from gateway.transport.settings import TlsSettings
from gateway.transport.tls import load, server_context
from parser.proxy_protocol import AllowList, ProxyMode, trusted_proxies


class PortSettings(Protocol):
    """The settings every device port has (TCP ``[[listeners]]``, ``[[mqtt_listeners]]``)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def ack_policy(self) -> AckPolicy: ...
    @property
    def max_connections(self) -> int: ...
    @property
    def write_buffer_bytes(self) -> int: ...
    @property
    def tls(self) -> TlsSettings | None: ...
    @property
    def proxy_protocol(self) -> Literal["off", "optional", "required"]: ...
    @property
    def proxy_protocol_trusted_networks(self) -> list[str] | None: ...
    @property
    def allowed_networks(self) -> list[str] | None: ...


class Connection(Protocol):
    """What a port asks of its open connections: pause and resume with the memory budget, and
    at shutdown stop reading and close."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def stop_reading(self) -> None: ...

    def close(self, reason: str) -> None: ...


S = TypeVar("S", bound=PortSettings)
C = TypeVar("C", bound=Connection)


class PortState(Generic[S, C]):
    """One bound port: its settings ``S`` and its open connections ``C``."""

    def __init__(
        self, name: str, settings: S, stats: ListenerStats, pipeline: Pipeline, budget: FlowControl
    ) -> None:
        self.name = name  # what the logs call this port's traffic (the codec, or "mqtt")
        self.stats = stats
        self.pipeline = pipeline
        self.budget = budget  # the process's memory budget
        self.connections: set[C] = set()
        self.replies = ReplyBatcher()
        pipeline.on_batch_settled(self.replies)
        budget.register(self)
        self.server: asyncio.Server | None = None
        self.bound_port = settings.port
        self.tls: ssl.SSLContext | None = (
            server_context(settings.tls) if settings.tls is not None else None
        )
        self.proxy_mode = (
            None if settings.proxy_protocol == "off" else ProxyMode(settings.proxy_protocol)
        )
        self.settings = settings
        self.allow = AllowList.parse(settings.allowed_networks)
        self.trusted = _trusted(settings)
        self.acks_wait = settings.ack_policy != "accepted"  # an ACK waits for the pipeline
        self.acks_delivered = settings.ack_policy == "delivered"  # ... and the remote targets

    async def start(
        self, protocol: Callable[[], asyncio.Protocol], *, reuse_port: bool = False
    ) -> tuple[str, int]:
        settings = self.settings
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            protocol,
            settings.host,
            settings.port,
            backlog=4096,
            reuse_address=True,
            reuse_port=reuse_port or None,
            # No ssl= here: the connection runs TLS itself (TlsSession), from TCP accept on, so
            # a handshake counts against max_connections and the login deadline. With ssl=,
            # the protocol exists only once the handshake is done: silent sockets held the port
            # for uvloop's 60 s handshake timeout beyond every limit. And behind PROXY protocol
            # the header precedes the ClientHello anyway.
        )
        for sock in self.server.sockets:
            # Accepted sockets inherit these from the listening one (Linux, BSD): set once here,
            # not per connection (asking a uvloop transport for its socket keeps an object per
            # connection). ACKs are tiny and latency-bound; keep-alive reaps peers that vanished.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        host, port = self.server.sockets[0].getsockname()[:2]
        self.bound_port = int(port)
        return str(host), int(port)

    def reload(self, settings: S) -> None:
        """SIGHUP: new certificates, allow-list and trusted proxies for new connections; open
        ones untouched."""
        if self.tls is not None and settings.tls is not None:
            load(self.tls, settings.tls)
        self.allow = AllowList.parse(settings.allowed_networks)
        self.trusted = _trusted(settings)
        self.settings = settings

    def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close()

    # -- the memory budget's reader (FlowControl), for every open connection ------------------

    def pause_reading(self) -> None:
        for conn in list(self.connections):
            conn.pause_reading()

    def resume_reading(self) -> None:
        for conn in list(self.connections):
            conn.resume_reading()


def _trusted(settings: PortSettings) -> AllowList:
    return trusted_proxies(settings.proxy_protocol, settings.proxy_protocol_trusted_networks)


class DevicePort(Protocol):
    """A listener as the server runs it (``tcp.Listener``, ``mqtt.listener.MqttListener``)."""

    @property
    def name(self) -> str: ...
    @property
    def settings(self) -> PortSettings: ...
    @property
    def connections(self) -> AbstractSet[Connection]: ...
    @property
    def bound_port(self) -> int: ...
    async def start(self, *, reuse_port: bool = False) -> tuple[str, int]: ...
    def stop_accepting(self) -> None: ...
    def all_stats(self) -> list[ListenerStats]: ...
    def sweep(self, now: float) -> None: ...
