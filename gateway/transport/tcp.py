"""Device TCP listeners: one ``asyncio.Protocol`` per connection feeding its codec session.

Synchronous callbacks only (uvicorn's protocol shape): ``data_received`` feeds the session and
hands frames to the pipeline; the reply leaves when the frame is accepted under the listener's
ACK policy. Hygiene: a connection limit, a login deadline, an idle deadline counted from the last
*complete* frame (so trickled bytes — slowloris — do not keep a socket alive), a bounded frame
size (the codec's), a bounded write buffer, and data before login refused.
"""

from __future__ import annotations

import time

import structlog

from gateway.common.stats import ListenerStats
from gateway.pipeline.accept import FrameSource, Pipeline
from gateway.transport.connection import DeviceConnection, DevicePort
from gateway.transport.flow_control import FlowControl
from gateway.transport.settings import ListenerSettings
from gateway.transport.tls import common_name
from parser.codec import Codec, Session
from parser.events import Action, Frame, Login, Reject

log = structlog.get_logger("gateway.transport.tcp")


class Listener(DevicePort):
    """One bound port for one codec: its settings and the sessions of its connections."""

    def __init__(
        self,
        settings: ListenerSettings,
        codec: Codec,
        pipeline: Pipeline,
        flow: FlowControl,
    ) -> None:
        super().__init__(settings, ListenerStats(codec.name, "tcp"), pipeline, flow)
        self.settings = settings
        self.codec = codec
        self.delivered = settings.ack_policy == "delivered"

    @property
    def name(self) -> str:
        return self.codec.name

    def connection(self) -> TcpDeviceProtocol:
        return TcpDeviceProtocol(self)

    def reload(self, settings: ListenerSettings, codec: Codec) -> None:
        """SIGHUP: new certificates, allow-lists and device allow-list for new connections;
        open connections are untouched."""
        self.reload_port(settings)
        self.codec = codec
        self.settings = settings

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


class TcpDeviceProtocol(DeviceConnection):
    __slots__ = ("listener", "session", "source")

    def __init__(self, listener: Listener) -> None:
        super().__init__(listener)
        self.listener = listener
        self.session: Session | None = None
        self.source = FrameSource(listener.codec.name, "tcp", None)

    def _opened(self) -> None:
        self.session = self.listener.codec.session()

    def _peer_known(self) -> None:
        self.source = FrameSource(self.listener.codec.name, "tcp", self.peer)

    def _feed(self, data: bytes) -> None:
        session = self.session
        assert session is not None
        try:
            events = session.feed(data)
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
            ticket = self.reply_order.ticket(reply, now)
            stats.records += listener.pipeline.accept(self.source, event, ticket)
        else:
            stats.records += listener.pipeline.accept(self.source, event, None)
            if reply:
                self.reply_order.now(reply, now)

    def _login(self, event: Login) -> None:
        listener = self.listener
        # Mutual TLS: the certificate names the one device this connection may speak for, in
        # its subject CN (as MQTT's identity = "certificate" reads it; SANs are not read).
        certificate = self.peer_certificate()
        if certificate and (name := common_name(certificate)) != event.device_id:
            self._certificate_mismatch(event.device_id, name)
            return
        self.device_id = event.device_id
        self.last_activity = now = time.monotonic()
        # The login frame is kept like any frame, but its reply does not wait for the sink:
        # it acknowledges an identity, not data, and devices give up on slow logins.
        listener.stats.records += listener.pipeline.accept(self.source, event, None)
        if event.reply:
            self.reply_order.now(event.reply, now)
        log.debug("login", codec=listener.codec.name, peer=self.peer, device_id=event.device_id)

    def _certificate_mismatch(self, device_id: str, certificate_cn: str | None) -> None:
        """A login naming another device than the client certificate: refused, not stored
        (a certificate proves one device's identity; it must not speak for the others)."""
        self.listener.stats.rejects["certificate_mismatch"] += 1
        log.warning(
            "login refused: the client certificate names another device",
            codec=self.listener.codec.name,
            peer=self.peer,
            device_id=device_id,
            certificate_cn=certificate_cn,
        )
        self.close("certificate_mismatch")

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
        if event.reply:
            self.reply_order.now(event.reply, time.monotonic())
        if event.action is Action.CLOSE:
            self.close(event.reason)
