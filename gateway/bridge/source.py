"""One source broker: a persistent session, reconnected forever, feeding the routes.

Per connection: CONNECT with the session kept (3.1.1 clean session off; MQTT 5 clean start off
plus a Session Expiry Interval, and the in-flight window as Receive Maximum), SUBSCRIBE, then take
messages one at a time into the in-flight window and hand each to its route. Acknowledgements go
back as each route's ACK policy is met (``gateway.bridge.window``). A lost connection abandons
the window — the broker redelivers what was not acknowledged — and the next attempt waits a
jittered backoff (gateway/common/backoff.py). A pipeline message not written by its deadline
(dead-lettered) also ends the connection on purpose, for the same redelivery.
"""

from __future__ import annotations

import asyncio
import math
import ssl
from collections.abc import Callable

import aiomqtt
import structlog
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.bridge.client import BridgeClient, Received
from gateway.bridge.routes import Route, is_own_copy, message_id, pick
from gateway.bridge.settings import BridgeSettings, SourceSettings
from gateway.bridge.stats import SourceStats
from gateway.bridge.window import InFlightWindow
from gateway.common.backoff import Backoff

log = structlog.get_logger("gateway.bridge")

# How often a connection checks its window for messages past their deadline.
DEADLINE_CHECK_S = 1.0


class Overdue(Exception):
    """A message was not delivered by its deadline: reconnect to have it redelivered."""


class SourceSession:
    def __init__(
        self,
        settings: SourceSettings,
        bridge: BridgeSettings,
        tls: ssl.SSLContext | None,
        routes: list[Route],
        on_state: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._bridge = bridge
        self._tls = tls
        self._routes = routes
        self._on_state = on_state
        self.stats = SourceStats(settings.name)
        self.state = "starting"
        self._loop = asyncio.get_running_loop()
        self.down_since: float | None = self._loop.time()
        self._taking = asyncio.Event()  # cleared while the pipeline's memory budget is full
        self._taking.set()
        self._stopping = False
        self.window: InFlightWindow | None = None
        self._subscribed_before = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self._run(), name=f"bridge-source-{self.name}")
        return self._task

    async def close(self) -> None:
        """End the connection (a DISCONNECT that keeps the session) and stop."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # FlowControl's Reader: taking stops; the client's inbox fills and its socket pauses.
    def pause_reading(self) -> None:
        self._taking.clear()

    def resume_reading(self) -> None:
        if not self._stopping:
            self._taking.set()

    def stop_taking(self) -> None:
        """Shutdown: take nothing more; what is in the window still gets acknowledged."""
        self._stopping = True
        self._taking.clear()

    def _set_state(self, state: str) -> None:
        self.state = state
        connected = state == "connected"
        self.stats.connected = connected
        if connected:
            self.down_since = None
        elif self.down_since is None:
            self.down_since = self._loop.time()
        self._on_state()

    async def _run(self) -> None:
        backoff = Backoff(self._bridge.backoff_base_s, self._bridge.backoff_cap_s)
        while True:
            client = BridgeClient.for_source(
                self.settings, self._bridge.in_flight, self._tls, self.stats
            )
            self._set_state("connecting")
            window = InFlightWindow(self._bridge.in_flight, client.ack, self._loop.time)
            self.window = window
            try:
                async with client:
                    if not client.session_present and self._subscribed_before:
                        # The broker kept nothing for us (restarted without persistence, or
                        # the session expired): what was published meanwhile is gone there.
                        log.warning("source session was not kept by the broker", source=self.name)
                    await self._subscribe(client)
                    self._subscribed_before = True
                    backoff.reset()
                    self._set_state("connected")
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self._watch(client, window))
                        tasks.create_task(self._take(client, window))
            except* (aiomqtt.MqttError, Overdue) as group:
                error = group.exceptions[0]
                connected = self.state == "connected"
                log.warning(
                    "source connection lost" if connected else "source connect failed",
                    source=self.name,
                    error=str(error) or type(error).__name__,
                    abandoned=len(window),
                )
            finally:
                window.abandon()
                self.stats.reading_paused = False
                self._set_state("disconnected")
            self.stats.reconnects += 1
            await asyncio.sleep(backoff.next_delay_s())

    async def _subscribe(self, client: BridgeClient) -> None:
        subscriptions = self.settings.subscriptions
        topics: list[tuple[str, SubscribeOptions]] | list[tuple[str, int]]
        if self.settings.protocol == "5":
            # Retain handling 1: retained messages only for a new subscription, not again on
            # every reconnect of a kept session (mosquitto#2248: retained messages resent).
            topics = [
                (
                    s.topic_filter,
                    SubscribeOptions(
                        qos=s.qos, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
                    ),
                )
                for s in subscriptions
            ]
        else:
            topics = [(s.topic_filter, int(s.qos)) for s in subscriptions]
        granted = await client.subscribe_all(topics)
        for sub, value in zip(subscriptions, granted, strict=False):
            if value >= 0x80:
                raise aiomqtt.MqttError(f"subscription {sub.topic_filter!r} refused ({value:#x})")
            if value < sub.qos:
                log.warning(
                    "broker granted a lower QoS than asked",
                    source=self.name,
                    subscription=sub.topic_filter,
                    asked=sub.qos,
                    granted=value,
                )

    async def _watch(self, client: BridgeClient, window: InFlightWindow) -> None:
        while True:
            try:
                await asyncio.wait_for(client.wait_disconnected(), DEADLINE_CHECK_S)
            except TimeoutError:
                if window.overdue(self._loop.time()):
                    raise Overdue(
                        f"a message was not written within {self._bridge.redeliver_after_s:g} s"
                    ) from None
                continue
            raise aiomqtt.MqttError("disconnected")

    async def _take(self, client: BridgeClient, window: InFlightWindow) -> None:
        while True:
            await self._taking.wait()
            await window.wait_for_space()
            message = await client.next_message()
            self._dispatch(window, message)

    def _dispatch(self, window: InFlightWindow, message: Received) -> None:
        if is_own_copy(message, self._bridge.name):
            # A copy this bridge published into this broker: forwarding it again would loop.
            self.stats.loops_dropped += 1
            window.admit(message, None).delivered()
            return
        found = pick(self._routes, message.topic)
        if found is None:
            self.stats.unrouted += 1
            if self.stats.unrouted & (self.stats.unrouted - 1) == 0:  # 1st, 2nd, 4th, 8th …
                log.warning(
                    "message matches no route; acknowledged",
                    source=self.name,
                    topic=message.topic,
                    unrouted=self.stats.unrouted,
                )
            window.admit(message, None).delivered()
            return
        route, values = found
        stats = route.stats
        stats.received += 1
        if message.dup:
            stats.redelivered += 1
        deadline = math.inf
        if route.has_deadline:
            deadline = self._loop.time() + self._bridge.redeliver_after_s
        delivery = window.admit(message, stats, deadline)
        route.forward(delivery, values, message_id(self.name, message))
