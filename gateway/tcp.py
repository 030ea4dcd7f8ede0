"""Device TCP listeners: one ``asyncio.Protocol`` per connection feeding its codec session.

Synchronous callbacks only (uvicorn's protocol shape): ``data_received`` feeds the session and
hands frames to the pipeline; the reply leaves when the frame is accepted under the listener's
ACK policy. Hygiene: a connection limit, a login deadline, an idle deadline counted from the last
*complete* frame (so trickled bytes — slowloris — do not keep a socket alive), a bounded frame
size (the codec's), a bounded write buffer, and data before login refused.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from functools import partial
from typing import cast

import structlog

from gateway.flow_control import FlowControl
from gateway.pipeline import FrameSource, Pipeline
from gateway.settings import ListenerSettings
from gateway.stats import ListenerStats
from gateway.tls import TlsSession, load, server_context
from parser.codec import Codec, Session
from parser.events import Action, Frame, Login, Reject
from parser.proxy_protocol import AllowList, ProxyHeaderParser, ProxyMode, ProxyProtocolError

log = structlog.get_logger("gateway.tcp")

# The budget is checked between slices of a read: a slice's records are at most a few times
# its size, which bounds how far a single read can overshoot the high watermark.
CONSUME_SLICE_BYTES = 4096
# NLB headers are under 100 bytes; a direct peer cannot make us parse 64 KiB of TLVs.
PROXY_HEADER_BYTES = 4096


class Listener:
    """One bound port: its codec, settings, counters and open connections."""

    def __init__(
        self,
        settings: ListenerSettings,
        codec: Codec,
        pipeline: Pipeline,
        flow: FlowControl,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.pipeline = pipeline
        self.flow = flow
        self.stats = ListenerStats(codec.name, "tcp")
        self.connections: set[TcpDeviceProtocol] = set()
        self.server: asyncio.Server | None = None
        self.bound_port = settings.port
        self.delivered = settings.ack_policy == "delivered"
        self.tls = server_context(settings.tls) if settings.tls is not None else None
        self.allow = AllowList.parse(settings.allowed_networks)
        self.proxy_mode = (
            None if settings.proxy_protocol == "off" else ProxyMode(settings.proxy_protocol)
        )

    async def start(self, *, reuse_port: bool = False) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: TcpDeviceProtocol(self),
            self.settings.host,
            self.settings.port,
            backlog=4096,
            reuse_address=True,
            reuse_port=reuse_port or None,
            # With PROXY protocol the header precedes the ClientHello: TLS starts after it.
            ssl=self.tls if self.proxy_mode is None else None,
        )
        host, port = self.server.sockets[0].getsockname()[:2]
        self.bound_port = int(port)
        return str(host), int(port)

    def reload(self, settings: ListenerSettings, codec: Codec) -> None:
        """SIGHUP: new certificates, allow-lists and device allow-list for new connections;
        open connections are untouched."""
        if self.tls is not None and settings.tls is not None:
            load(self.tls, settings.tls)
        self.allow = AllowList.parse(settings.allowed_networks)
        self.codec = codec
        self.settings = settings

    def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close()

    def sweep(self, now: float) -> None:
        """Close connections past their login or idle deadline."""
        login_s, idle_s = self.settings.login_timeout_s, self.settings.idle_timeout_s
        for conn in list(self.connections):
            if conn.paused:
                continue  # we stopped reading it: its silence is ours, not the device's
            # Before login, last_activity is the connect time (or the last resume).
            if conn.device_id is None and now - conn.last_activity > login_s:
                conn.close("login_timeout")
            elif now - conn.last_activity > idle_s:
                conn.close("idle_timeout")


class TcpDeviceProtocol(asyncio.Protocol):
    __slots__ = (
        "_backlog",
        "_outbox",
        "_paused_by_flow",
        "_proxy",
        "_stopped",
        "_tls",
        "bytes_in",
        "close_reason",
        "device_id",
        "frames",
        "last_activity",
        "listener",
        "opened_at",
        "peer",
        "session",
        "source",
        "transport",
    )

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.device_id: str | None = None
        self.peer = "?"
        self.source = FrameSource(listener.codec.name, "tcp", None)
        self.opened_at = self.last_activity = time.monotonic()
        self.frames = self.bytes_in = 0
        self.close_reason = "peer_closed"
        self._paused_by_flow = self._stopped = False
        self._outbox: list[bytes] = []
        self._backlog = b""  # bytes read but not fed while the memory budget was full
        self._proxy: ProxyHeaderParser | None = None
        self._tls: TlsSession | None = None

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        listener = self.listener
        stats = listener.stats
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if len(listener.connections) >= listener.settings.max_connections:
            stats.refused["max_connections"] += 1
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # ACKs are tiny and latency-bound; keep-alive reaps peers that vanished silently.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        transport.set_write_buffer_limits(high=listener.settings.write_buffer_bytes)
        self.source = FrameSource(listener.codec.name, "tcp", self.peer)
        self.session = listener.codec.session()
        listener.connections.add(self)
        stats.connections_open += 1
        stats.connections_total += 1
        listener.flow.register(self)
        if listener.proxy_mode is not None:
            # The device's address comes in the PROXY header; check and log it then.
            self._proxy = ProxyHeaderParser(
                listener.proxy_mode, max_header_bytes=PROXY_HEADER_BYTES
            )
        else:
            self._admit()

    def _admit(self) -> bool:
        """Allow-list check on the device's address, then the open log line."""
        listener = self.listener
        if not listener.allow.allows(self.peer.rpartition(":")[0].strip("[]")):
            self.close("source_not_allowed", abort=True)
            return False
        log.info("connection open", codec=listener.codec.name, peer=self.peer)
        return True

    def _proxy_header(self, data: bytes) -> bytes | None:
        """Feed the PROXY header parser; the device's bytes after it, or None (wait/closed)."""
        assert self._proxy is not None
        try:
            result = self._proxy.feed(data)
        except ProxyProtocolError as exc:
            self.listener.stats.rejects[f"proxy_{exc.reason}"] += 1
            self.close("bad_proxy_header", abort=True)
            return None
        if result is None:
            return None
        self._proxy = None
        if self.listener.tls is not None:
            self._tls = TlsSession(self.listener.tls)
        if result.source is not None:
            host, port = result.source
            self.peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            self.source = FrameSource(self.listener.codec.name, "tcp", self.peer)
        return result.rest if self._admit() else None

    def data_received(self, data: bytes) -> None:
        if self.session is None or self._stopped:
            return
        self.bytes_in += len(data)
        self.listener.stats.bytes_in += len(data)
        if self._proxy is not None:
            rest = self._proxy_header(data)
            if not rest:
                return
            data = rest
        if self._tls is not None:
            try:
                data, handshake = self._tls.receive(data)
            except ssl.SSLError:
                self.listener.stats.rejects["tls_error"] += 1
                self.close("tls_error", abort=True)
                return
            if handshake and self.transport is not None:
                self.transport.write(handshake)
            if not data:
                return
        self._consume(self._backlog + data if self._backlog else data)
        if self._outbox:
            self.flush_replies()

    def _consume(self, data: bytes) -> None:
        """Feed the session in slices, stopping as soon as the memory budget is full.

        One read can hold tens of KiB of frames whose records are several times larger, so the
        budget is checked between slices; what is left waits here, as raw bytes, until resumed.
        """
        session = self.session
        assert session is not None
        flow = self.listener.flow
        self._backlog = b""
        for start in range(0, len(data), CONSUME_SLICE_BYTES):
            if flow.paused:
                self._backlog = data[start:]
                return
            try:
                events = session.feed(data[start : start + CONSUME_SLICE_BYTES])
            except Exception:  # a codec bug must cost one connection, never the process
                log.exception("codec failed", codec=self.listener.codec.name, peer=self.peer)
                self.listener.stats.rejects["codec_error"] += 1
                self.close("codec_error")
                return
            for event in events:
                if type(event) is Frame:
                    self._frame(event)
                elif type(event) is Login:
                    self._login(event)
                else:
                    assert isinstance(event, Reject)
                    self._reject(event)
                if self.transport is None or self.transport.is_closing():
                    return

    def eof_received(self) -> bool:
        if self.session is not None:
            for event in self.session.eof():
                if isinstance(event, Reject):
                    self.listener.stats.rejects[event.reason] += 1
        return False  # close our side too

    def pause_writing(self) -> None:
        # The device does not read its ACKs: more than write_buffer_bytes are queued for it.
        self.close("write_buffer_full", abort=True)

    def connection_lost(self, exc: Exception | None) -> None:
        listener = self.listener
        if self in listener.connections:
            listener.connections.discard(self)
            listener.stats.connections_open -= 1
            listener.flow.unregister(self)
            log.info(
                "connection closed",
                codec=listener.codec.name,
                peer=self.peer,
                device_id=self.device_id,
                frames=self.frames,
                bytes=self.bytes_in,
                seconds=round(time.monotonic() - self.opened_at, 1),
                reason=self.close_reason if exc is None else f"{self.close_reason}: {exc}",
            )
        self.transport = None

    # -- flow control (idempotent, uvicorn style) -------------------------------------------

    def pause_reading(self) -> None:
        if not self._paused_by_flow and self.transport is not None:
            self._paused_by_flow = True
            self.transport.pause_reading()

    @property
    def paused(self) -> bool:
        return self._paused_by_flow

    def resume_reading(self) -> None:
        if not self._paused_by_flow or self.transport is None or self.listener.flow.paused:
            return  # (the budget may have filled again while other readers resumed)
        self._paused_by_flow = False
        # Deadlines restart: the time spent paused was the gateway's, not the device's.
        self.last_activity = time.monotonic()
        if self._stopped:
            return
        if self._backlog:
            self._consume(self._backlog)
            if self._outbox:
                self.flush_replies()
        if not self._paused_by_flow and self.transport is not None:
            self.transport.resume_reading()

    def stop_reading(self) -> None:
        """Shutdown: read nothing more; what was accepted is still flushed and ACKed."""
        if not self._stopped and self.transport is not None:
            self._stopped = True
            if not self._paused_by_flow:
                self.transport.pause_reading()

    def close(self, reason: str, *, abort: bool = False) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.flush_replies()  # what was accepted before the close is still acknowledged
            self.close_reason = reason
            self.listener.stats.refused[reason] += 1
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    # -- events --------------------------------------------------------------------------------

    def _frame(self, event: Frame) -> None:
        listener = self.listener
        if self.device_id is None and listener.settings.require_login:
            listener.stats.rejects["data_before_login"] += 1
            self.close("data_before_login")
            return
        now = time.monotonic()
        self.last_activity = now
        self.frames += 1
        stats = listener.stats
        stats.frames += 1
        if event.error_code is not None:
            stats.decode_errors[event.error_code] += 1
        reply = event.reply
        if reply and listener.delivered:
            stats.records += listener.pipeline.accept(
                self.source, event, partial(self._send_reply, reply, now)
            )
        else:
            stats.records += listener.pipeline.accept(self.source, event, None)
            if reply:
                self._send_reply(reply, now)

    def _login(self, event: Login) -> None:
        listener = self.listener
        self.device_id = event.device_id
        self.last_activity = now = time.monotonic()
        # The login frame is kept like any frame, but its reply does not wait for the sink:
        # it acknowledges an identity, not data, and devices give up on slow logins.
        listener.stats.records += listener.pipeline.accept(self.source, event, None)
        if event.reply:
            self._send_reply(event.reply, now)
        log.debug("login", codec=listener.codec.name, peer=self.peer, device_id=event.device_id)

    def _reject(self, event: Reject) -> None:
        self.listener.stats.rejects[event.reason] += 1
        log.debug(
            "reject",
            codec=self.listener.codec.name,
            peer=self.peer,
            device_id=self.device_id,
            reason=event.reason,
            detail=event.detail,
        )
        if event.reply and self.transport is not None:
            self.flush_replies()  # keep replies in stream order
            self._write(event.reply)
        if event.action is Action.CLOSE:
            self.close(event.reason)

    def _send_reply(self, reply: bytes, accepted_at: float) -> None:
        """Queue a reply; it is written with the others of the same read or sink batch."""
        if not self._outbox:
            self.listener.pipeline.replies.add(self)
        self._outbox.append(reply)
        self.listener.stats.ack_latency.observe(time.monotonic() - accepted_at)

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(self._tls.send(data) if self._tls is not None else data)

    def flush_replies(self) -> None:
        outbox, self._outbox = self._outbox, []
        transport = self.transport
        if transport is None or transport.is_closing() or not outbox:
            return  # the device reconnects and resends; at-least-once, never lost
        self._write(outbox[0] if len(outbox) == 1 else b"".join(outbox))
        self.listener.stats.acks += len(outbox)
