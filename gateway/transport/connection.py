"""What every device socket does, whatever its protocol (raw TCP codecs, MQTT).

A :class:`DeviceConnection` is one ``asyncio.Protocol`` with synchronous callbacks (uvicorn's
shape) holding its port's shared state (:class:`~gateway.transport.port.PortState`) and its own
reading flags (:class:`~gateway.transport.read_flow.ReadFlow`): connection limit from TCP
accept, socket options, the PROXY header, TLS over memory BIOs (after the header, if any), the
memory budget checked between slices of a read (bytes left over wait until resumed), replies
released in frame order (:class:`ReplyOrder`) and batched per read or sink batch, and a bounded
write buffer. What the bytes mean is its :class:`DeviceHandler`'s, which the port's factory
builds for each connection (composition: the handler holds the connection, never subclasses it).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

import structlog

from gateway.transport.port import PortState, S
from gateway.transport.read_flow import ReadFlow
from gateway.transport.reply_order import ReplyOrder
from gateway.transport.tls import TlsSession
from parser.proxy_protocol import ProxyHeaderParser, ProxyMode, ProxyProtocolError

log = structlog.get_logger("gateway.transport.connection")

# The budget is checked between slices of a read: a slice's records are at most a few times
# its size, which bounds how far a single read can overshoot the high watermark.
CONSUME_SLICE_BYTES = 4096
# NLB headers are under 100 bytes; a direct peer cannot make us parse 64 KiB of TLVs.
PROXY_HEADER_BYTES = 4096


class DeviceHandler(Protocol):
    """What a protocol (a codec's session, MQTT) does with one connection's bytes."""

    # Whether queued replies wait while the connection is paused (they leave when unblocked).
    hold_replies: ClassVar[bool]

    def opened(self) -> None:
        """The connection was admitted under the limit (before the PROXY header, if any)."""

    def peer_known(self) -> None:
        """``peer`` is final (after the PROXY header, if any)."""

    def feed(self, data: bytes) -> None:
        """Handle the next bytes of the stream (at most one slice)."""

    def frame_lost(self) -> None:
        """A frame owing a reply was given up on by the sink (dead-lettered), so the replies
        behind it can never be released in order: close (after the ones released), and the
        device reconnects and resends everything not ACKed."""

    def unblocked(self) -> None:
        """Reading resumes: handle what the protocol itself held back, before the backlog."""

    def before_reply(self) -> None:
        """A reply is queued or the outbox written: replies the handler owes go first."""

    def closing_bytes(self, reason: str) -> bytes:
        """What to write last before a (graceful) close, after the replies owed."""

    def eof(self) -> None:
        """The peer closed its side."""

    def lost(self) -> None:
        """The connection is gone (after the connection's own bookkeeping)."""


H = TypeVar("H", bound=DeviceHandler)


class DeviceConnection(asyncio.Protocol, Generic[S, H]):
    """One device socket of a port whose settings are ``S``, its bytes handled by ``H``."""

    # An idle connection is most of them (15k per process): what only a busy one needs (read
    # flags, reply ordering, the outbox) is made on first use, and is not there while idle.
    __slots__ = (
        "_acks_queued",
        "_backlog",
        "_flow",
        "_outbox",
        "_proxy",
        "_reply_order",
        "_tls",
        "bytes_in",
        "close_reason",
        "device_id",
        "frames",
        "handler",
        "last_activity",
        "live",
        "opened_at",
        "peer",
        "port",
        "transport",
    )

    def __init__(
        self,
        port: PortState[S, Any],
        handler: Callable[[DeviceConnection[S, H]], H],
    ) -> None:
        self.port = port
        self._flow: ReadFlow | None = None
        self.transport: asyncio.Transport | None = None
        self.live = False  # admitted under the connection limit; its bytes are read
        self.device_id: str | None = None
        self.peer = "?"
        self.opened_at = self.last_activity = time.monotonic()
        self.frames = self.bytes_in = 0
        self.close_reason = "peer_closed"
        self._outbox: list[bytes] | None = None
        self._acks_queued = 0  # replies in the outbox (one buffer may hold several)
        self._backlog = b""  # bytes read but not fed while the memory budget was full
        self._proxy: ProxyHeaderParser | None = None
        self._tls: TlsSession | None = None
        self._reply_order: ReplyOrder | None = None
        self.handler = handler(self)

    @property
    def flow(self) -> ReadFlow:
        """This connection's reading flags, made the first time one is set or read here."""
        flow = self._flow
        if flow is None:
            flow = self._flow = ReadFlow()
        return flow

    @property
    def reply_order(self) -> ReplyOrder:
        """The replies of its frames, in order; made with the first frame whose reply waits."""
        order = self._reply_order
        if order is None:
            order = self._reply_order = ReplyOrder(self)
        return order

    def reply_now(self, reply: bytes, accepted_at: float) -> None:
        """A reply owed at once (:meth:`ReplyOrder.now`): with no reply order yet, no frame's
        reply is waiting, so it leaves now."""
        if self._reply_order is None:
            self.send_reply(reply, accepted_at)
        else:
            self._reply_order.now(reply, accepted_at)

    def frame_lost(self) -> None:
        """(ReplyOrder's Replier) the handler closes as its protocol says."""
        self.handler.frame_lost()

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        port = self.port
        stats = port.stats
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if port.proxy_mode is ProxyMode.REQUIRED and not port.trusted.allows(self._peer_host()):
            self.close("proxy_untrusted", abort=True)  # only the load balancer may connect
            return
        if len(port.connections) >= port.settings.max_connections:
            stats.refused["max_connections"] += 1
            transport.abort()
            return
        # (TCP_NODELAY and SO_KEEPALIVE come from the listening socket: PortState.start.)
        transport.set_write_buffer_limits(high=port.settings.write_buffer_bytes)
        self.live = True
        self.handler.opened()
        port.connections.add(self)
        stats.connections_open += 1
        stats.connections_total += 1
        if port.budget.paused:
            self.pause_reading()  # (the port is the budget's reader, for all its connections)
        if port.proxy_mode is not None:
            # The device's address comes in the PROXY header; check and log it then.
            self._proxy = ProxyHeaderParser(port.proxy_mode, max_header_bytes=PROXY_HEADER_BYTES)
        elif self._admit() and port.tls is not None:
            self._tls = TlsSession(port.tls)

    def _admit(self) -> bool:
        """Allow-list check on the device's address, then the open log line."""
        port = self.port
        if not port.allow.allows(self._peer_host()):
            self.close("source_not_allowed", abort=True)
            return False
        self.handler.peer_known()
        log.info("connection open", codec=port.name, peer=self.peer)
        return True

    def _proxy_header(self, data: bytes) -> bytes | None:
        """Feed the PROXY header parser; the device's bytes after it, or None (wait/closed)."""
        assert self._proxy is not None
        try:
            result = self._proxy.feed(data)
        except ProxyProtocolError as exc:
            self.port.stats.rejects[f"proxy_{exc.reason}"] += 1
            self.close("bad_proxy_header", abort=True)
            return None
        if result is None:
            return None
        self._proxy = None
        if result.command != "none" and not self.port.trusted.allows(self._peer_host()):
            # A header from a peer that is not the load balancer: anyone can write one, and
            # believing it would let a direct client claim any address (and pass allow-lists).
            self.close("proxy_untrusted", abort=True)
            return None
        if self.port.tls is not None:
            self._tls = TlsSession(self.port.tls)
        if result.source is not None:
            host, port = result.source
            self.peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return result.rest if self._admit() else None

    def _peer_host(self) -> str:
        """The IP address of ``peer`` (the socket's, or the PROXY header's once read)."""
        return self.peer.rpartition(":")[0].strip("[]")

    def peer_certificate(self) -> dict[str, Any] | None:
        """The verified client certificate (mutual TLS), as ``SSLSocket.getpeercert`` gives it."""
        return self._tls.peer_certificate() if self._tls is not None else None

    def data_received(self, data: bytes) -> None:
        if not self.live or (self._flow is not None and self._flow.stopped):
            return
        self.bytes_in += len(data)
        self.port.stats.bytes_in += len(data)
        if self._proxy is not None:
            rest = self._proxy_header(data)
            if not rest:
                return
            data = rest
        if self._tls is not None:
            try:
                data, handshake = self._tls.receive(data)
            except ssl.SSLError:
                self.port.stats.rejects["tls_error"] += 1
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
        """Feed the protocol in slices, stopping as soon as the memory budget is full.

        One read can hold tens of KiB of frames whose records are several times larger, so the
        budget is checked between slices; what is left waits here, as raw bytes, until resumed.
        """
        budget, feed = self.port.budget, self.handler.feed
        self._backlog = b""
        for start in range(0, len(data), CONSUME_SLICE_BYTES):
            # (read each time: feeding may hold the flow, making it if it was not there)
            flow = self._flow
            if budget.paused or (flow is not None and flow.held):
                self._backlog = data[start:]
                return
            feed(data[start : start + CONSUME_SLICE_BYTES])
            if self.transport is None or self.transport.is_closing():
                return

    def eof_received(self) -> bool:
        self.handler.eof()
        return False  # close our side too

    def pause_writing(self) -> None:
        # The device does not read its ACKs: more than write_buffer_bytes are queued for it.
        self.close("write_buffer_full", abort=True)

    def connection_lost(self, exc: Exception | None) -> None:
        port = self.port
        if self in port.connections:
            port.connections.discard(self)
            port.stats.connections_open -= 1
            log.info(
                "connection closed",
                codec=port.name,
                peer=self.peer,
                device_id=self.device_id,
                frames=self.frames,
                bytes=self.bytes_in,
                seconds=round(time.monotonic() - self.opened_at, 1),
                reason=self.close_reason if exc is None else f"{self.close_reason}: {exc}",
            )
        self.transport = None
        port.replies.discard(self)
        self.handler.lost()

    # -- the memory budget's reader (FlowControl) ----------------------------------------------

    def pause_reading(self) -> None:
        self.flow.pause(self.transport)

    @property
    def paused(self) -> bool:
        return self._flow is not None and self._flow.paused

    @property
    def held(self) -> bool:
        """Held by its protocol (read without making the flags of a connection that has none)."""
        return self._flow is not None and self._flow.held

    def resume_reading(self) -> None:
        flow = self._flow
        if flow is None or not flow.paused or self.transport is None or self.port.budget.paused:
            return  # (the budget may have filled again while other readers resumed)
        flow.paused = False
        # Deadlines restart: the time spent paused was the gateway's, not the device's.
        self.last_activity = time.monotonic()
        if flow.stopped:
            return
        self.unblocked()

    def unblocked(self) -> None:
        """Feed what waited, then read the socket again unless something still holds it."""
        self.handler.unblocked()
        if self._backlog:
            self._consume(self._backlog)
        if self._outbox:
            self.flush_replies()
        self.flow.resume(self.transport)

    def stop_reading(self) -> None:
        """Shutdown: read nothing more; what was accepted is still flushed and ACKed."""
        self.flow.stop(self.transport)

    def close(self, reason: str, *, abort: bool = False) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.flush()  # what was accepted before the close is still acknowledged
            if not abort and (last := self.handler.closing_bytes(reason)):
                self.write(last)
            self.close_reason = reason
            self.port.stats.refused[reason] += 1
            if abort:
                self.transport.abort()
            else:
                if self._tls is not None:
                    self.transport.write(self._tls.close_notify())
                self.transport.close()

    # -- replies -------------------------------------------------------------------------------

    def queue_reply(self, reply: bytes, count: int = 1) -> None:
        """Queue a reply (``count`` of them in one buffer); it is written with the others of
        the same read or sink batch, after those the handler owes."""
        self.handler.before_reply()
        self.append_reply(reply, count)

    def append_reply(self, reply: bytes, count: int) -> None:
        """Queue a reply as it is (the handler's own, owed ones)."""
        outbox = self._outbox
        if outbox is None:
            self._outbox = [reply]
            self.port.replies.add(self)
        else:
            outbox.append(reply)
        self._acks_queued += count

    def send_reply(self, reply: bytes, accepted_at: float, count: int = 1) -> None:
        """Queue the acknowledgement (``count`` of them in one buffer) of data that arrived at
        ``accepted_at``."""
        self.queue_reply(reply, count)
        self.port.stats.ack_latency.observe(time.monotonic() - accepted_at, count)

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(self._tls.send(data) if self._tls is not None else data)

    def flush_replies(self) -> None:
        if not (self.handler.hold_replies and self.paused):
            self.flush()

    def flush(self) -> None:
        """Write the replies queued (and those the handler owes) now."""
        self.handler.before_reply()
        outbox, self._outbox = self._outbox, None
        acks, self._acks_queued = self._acks_queued, 0
        transport = self.transport
        if transport is None or transport.is_closing() or not outbox:
            return  # the device reconnects and resends; at-least-once, never lost
        self.write(outbox[0] if len(outbox) == 1 else b"".join(outbox))
        self.port.stats.acks += acks
