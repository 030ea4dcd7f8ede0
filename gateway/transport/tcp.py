"""Device TCP listeners: one connection per device socket, its bytes fed to its codec session.

Synchronous callbacks only (uvicorn's protocol shape): ``data_received`` feeds the session and
hands frames to the pipeline; the reply leaves when the frame is accepted under the listener's
ACK policy. Hygiene: a connection limit, a login deadline, an idle deadline counted from the last
*complete* frame (so trickled bytes — slowloris — do not keep a socket alive), a bounded frame
size (the codec's), a bounded write buffer, and data before login refused.
"""

from __future__ import annotations

import time
from typing import ClassVar

import structlog

from gateway.common.stats import ListenerStats
from gateway.common.tickets import Ticket
from gateway.pipeline.accept import FrameSource, Pipeline
from gateway.pipeline.flow_control import FlowControl
from gateway.transport.connection import DeviceConnection
from gateway.transport.port import PortState
from gateway.transport.reply_order import PendingReply
from gateway.transport.settings import ListenerSettings
from gateway.transport.tls import common_name
from parser.codec import Codec, Session
from parser.events import Action, Frame, Login, Reject

log = structlog.get_logger("gateway.transport.tcp")


class Listener:
    """One bound port for one codec: the state its connections share, and its codec."""

    def __init__(
        self,
        settings: ListenerSettings,
        codec: Codec,
        pipeline: Pipeline,
        budget: FlowControl,
    ) -> None:
        stats = ListenerStats(codec.name, "tcp")
        self.port: PortState[ListenerSettings, TcpConnection] = PortState(
            codec.name, settings, stats, pipeline, budget
        )
        self.codec = codec

    @property
    def name(self) -> str:
        return self.port.name

    @property
    def settings(self) -> ListenerSettings:
        return self.port.settings

    @property
    def stats(self) -> ListenerStats:
        return self.port.stats

    @property
    def connections(self) -> set[TcpConnection]:
        return self.port.connections

    @property
    def bound_port(self) -> int:
        return self.port.bound_port

    def all_stats(self) -> list[ListenerStats]:
        return [self.port.stats]

    def connection(self) -> TcpConnection:
        codec = self.codec  # (a reload changes the codec of new connections only)
        return DeviceConnection(self.port, lambda conn: TcpDeviceHandler(conn, codec))

    async def start(self, *, reuse_port: bool = False) -> tuple[str, int]:
        return await self.port.start(self.connection, reuse_port=reuse_port)

    def stop_accepting(self) -> None:
        self.port.stop_accepting()

    def reload(self, settings: ListenerSettings, codec: Codec) -> None:
        """SIGHUP: new certificates, allow-lists and device allow-list for new connections;
        open connections are untouched."""
        self.port.reload(settings)
        self.codec = codec

    def sweep(self, now: float) -> None:
        """Close connections past their login or idle deadline."""
        login_s, idle_s = self.settings.login_timeout_s, self.settings.idle_timeout_s
        for conn in list(self.port.connections):
            if conn.paused:
                continue  # we stopped reading it: its silence is ours, not the device's
            # Before login, last_activity is the connect time (or the last resume).
            if conn.device_id is None and now - conn.last_activity > login_s:
                conn.close("login_timeout")
            elif now - conn.last_activity > idle_s:
                conn.close("idle_timeout")


TcpConnection = DeviceConnection[ListenerSettings, "TcpDeviceHandler"]


class TcpDeviceHandler:
    """One device of a codec port (its connection's :class:`DeviceHandler`): bytes to its
    codec session, frames to the pipeline."""

    # (the port is its connection's: one slot less on every connection)
    __slots__ = ("codec", "conn", "session", "source")

    hold_replies: ClassVar[bool] = False

    def __init__(self, conn: TcpConnection, codec: Codec) -> None:
        self.conn = conn
        self.codec = codec
        self.session: Session | None = None
        self.source = FrameSource(codec.name, "tcp", None, conn.port.acks_delivered)

    def opened(self) -> None:
        self.session = self.codec.session()

    def peer_known(self) -> None:
        self.source = FrameSource(
            self.codec.name, "tcp", self.conn.peer, self.conn.port.acks_delivered
        )

    def feed(self, data: bytes) -> None:
        """The frames of one read whose replies wait for the sink share one ticket, and their
        replies leave as one buffer (issue 17: a ticket, its place in the reply order and its
        release per frame cost ~1.2 µs of a frame's ~17). The ticket takes its place in the reply
        order once the run of frames ends: at the end of the read, or before a login or reject
        of the same read answers, so replies keep the order of the frames. A record of the read
        given up on (dead-lettered) holds back the replies of the whole read, not only of the
        frames from it on: the connection closes and the device resends them (at least once).
        """
        session = self.session
        assert session is not None
        conn = self.conn
        try:
            events = session.feed(data)
        except Exception:  # a codec bug must cost one connection, never the process
            log.exception("codec failed", codec=self.codec.name, peer=conn.peer)
            self.conn.port.stats.rejects["codec_error"] += 1
            conn.close("codec_error")
            return
        run: Ticket[PendingReply] | None = None
        replies: list[bytes] = []
        try:
            for event in events:
                if type(event) is Frame:
                    run = self._frame(event, run, replies)
                else:
                    if run is not None:
                        self._number(run, replies)
                        run = None
                    if type(event) is Login:
                        self._login(event)
                    else:
                        assert isinstance(event, Reject)
                        self._reject(event)
                if conn.transport is None or conn.transport.is_closing():
                    return
        finally:
            if run is not None:
                self._number(run, replies)

    def _number(self, run: Ticket[PendingReply], replies: list[bytes]) -> None:
        """A run of frames sharing ``run`` ended: its replies take their place in the order."""
        order = self.conn.reply_order
        reply = replies[0] if len(replies) == 1 else b"".join(replies)
        run.note = (order.reserve(), reply, run.note[2], len(replies))
        replies.clear()

    def eof(self) -> None:
        if self.session is not None:
            for event in self.session.eof():
                if isinstance(event, Reject):
                    self.conn.port.stats.rejects[event.reason] += 1

    def frame_lost(self) -> None:
        self.conn.close("frame_lost")

    def unblocked(self) -> None:
        pass  # nothing is held here: what waits is the connection's backlog

    def before_reply(self) -> None:
        pass  # every reply is queued on the connection as it is made

    def closing_bytes(self, reason: str) -> bytes:
        return b""  # the codecs have no goodbye

    def lost(self) -> None:
        pass

    # -- events --------------------------------------------------------------------------------

    def _frame(
        self, event: Frame, run: Ticket[PendingReply] | None, replies: list[bytes]
    ) -> Ticket[PendingReply] | None:
        """Accept a frame; the ticket of the read's run of frames owing a reply after it."""
        conn = self.conn
        port = conn.port
        if conn.device_id is None and port.settings.require_login:
            port.stats.rejects["data_before_login"] += 1
            conn.close("data_before_login")
            return run
        now = time.monotonic()
        conn.last_activity = now
        conn.frames += 1
        stats = port.stats
        stats.frames += 1
        if event.error_code is not None:
            stats.decode_errors[event.error_code] += 1
        reply = event.reply
        if reply and port.acks_wait:
            if run is None:
                # (numbered, with its replies, once the run ends: _number)
                run = Ticket(conn.reply_order, (-1, b"", now, 0))
            replies.append(reply)
            stats.records += port.pipeline.accept(self.source, event, run)
        else:
            stats.records += port.pipeline.accept(self.source, event, None)
            if reply:
                conn.reply_now(reply, now)
        return run

    def _login(self, event: Login) -> None:
        port = self.conn.port
        # Mutual TLS: the certificate names the one device this connection may speak for, in
        # its subject CN (as MQTT's identity = "certificate" reads it; SANs are not read).
        certificate = self.conn.peer_certificate()
        if certificate and (name := common_name(certificate)) != event.device_id:
            self._certificate_mismatch(event.device_id, name)
            return
        self.conn.device_id = event.device_id
        self.conn.last_activity = now = time.monotonic()
        # The login frame is kept like any frame, but its reply does not wait for the sink:
        # it acknowledges an identity, not data, and devices give up on slow logins.
        port.stats.records += port.pipeline.accept(self.source, event, None)
        if event.reply:
            self.conn.reply_now(event.reply, now)
        log.debug("login", codec=self.codec.name, peer=self.conn.peer, device_id=event.device_id)

    def _certificate_mismatch(self, device_id: str, certificate_cn: str | None) -> None:
        """A login naming another device than the client certificate: refused, not stored
        (a certificate proves one device's identity; it must not speak for the others)."""
        self.conn.port.stats.rejects["certificate_mismatch"] += 1
        log.warning(
            "login refused: the client certificate names another device",
            codec=self.codec.name,
            peer=self.conn.peer,
            device_id=device_id,
            certificate_cn=certificate_cn,
        )
        self.conn.close("certificate_mismatch")

    def _reject(self, event: Reject) -> None:
        self.conn.port.stats.rejects[event.reason] += 1
        log.debug(
            "reject",
            codec=self.codec.name,
            peer=self.conn.peer,
            device_id=self.conn.device_id,
            reason=event.reason,
            detail=event.detail,
        )
        if event.reply:
            self.conn.reply_now(event.reply, time.monotonic())
        if event.action is Action.CLOSE:
            self.conn.close(event.reason)
