"""A destination: a pool of connections to one AWS-side MQTT endpoint, each held to a rate.

AWS IoT Core takes 100 publishes a second per connection and one CONNECT a second per client
id, so throughput comes from N connections with distinct ids, each spending from its own token
bucket before every PUBLISH. Messages wait in one queue (bounded by the shipper's window); any
connection that is up takes the next. A message is confirmed once its PUBACK is back (QoS 1/2) or
it was written (QoS 0). A publish that fails or times out takes its connection down, and every
message that connection had not finished goes back to the front of the queue to be published
again — so a lost PUBACK means a duplicate, never a loss (mosquitto#2176: a bridge stalled on a
lost PUBACK).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable

import aiomqtt
import structlog
from paho.mqtt.properties import Properties

from gateway.bridge.client import BridgeClient, PublishRefused
from gateway.bridge.settings import DestinationSettings
from gateway.bridge.stats import ConnectionStats
from gateway.common.backoff import Backoff
from gateway.common.token_bucket import TokenBucket

log = structlog.get_logger("gateway.bridge")


class Outgoing:
    """One journaled message on its way to the destination: the line at ``offset`` (up to
    ``end``) of its series. Published without the retain flag, as the bridge always has: the
    gateway's own MQTT listener, one of the destinations, refuses retained messages (0x9A),
    which would hold the queue for good."""

    __slots__ = (
        "done",
        "end",
        "offset",
        "origin_ms",
        "payload",
        "properties",
        "qos",
        "topic",
    )

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        properties: Properties | None,
        offset: int,
        end: int,
        origin_ms: int = 0,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.properties = properties
        self.offset = offset
        self.end = end
        self.origin_ms = origin_ms  # what its lag counts from (wall clock, ms)
        self.done = False  # confirmed by the destination


class DestinationPool:
    def __init__(
        self,
        settings: DestinationSettings,
        tls: ssl.SSLContext | None,
        backoff_s: tuple[float, float],
        confirmed: Callable[[Outgoing], None],
    ) -> None:
        """``confirmed(message)`` once the endpoint took ``message``."""
        self.settings = settings
        self._confirmed = confirmed
        self.v5 = settings.protocol == "5"
        self._tls = tls
        self._backoff_s = backoff_s
        self._queue: deque[Outgoing] = deque()
        self._queued = asyncio.Event()
        now = asyncio.get_running_loop().time()
        self.stats = [
            ConnectionStats(
                settings.name, i, TokenBucket(settings.rate_per_connection, settings.burst, now)
            )
            for i in range(1, settings.connections + 1)
        ]
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> list[asyncio.Task[None]]:
        for stats in self.stats:
            name = f"bridge-{self.settings.name}-{stats.connection}"
            self._tasks.append(asyncio.create_task(self._connection(stats), name=name))
        return self._tasks

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def submit(self, message: Outgoing) -> None:
        self._queue.append(message)
        self._queued.set()

    async def _next(self) -> Outgoing:
        while not self._queue:
            self._queued.clear()
            await self._queued.wait()
        return self._queue.popleft()

    async def _connection(self, stats: ConnectionStats) -> None:
        backoff = Backoff(*self._backoff_s)
        while True:
            client = BridgeClient.for_destination(self.settings, stats.connection, self._tls)
            try:
                async with client:
                    backoff.reset()
                    stats.connected = True
                    await self._publish_all(client, stats)
            except* PublishRefused as group:
                # Not a message to drop: it waits at the front until the endpoint's policy lets
                # it through (the journal keeps it meanwhile).
                log.error(
                    "destination refused a message; retrying it",
                    destination=self.settings.name,
                    connection=stats.connection,
                    reason=str(group.exceptions[0]),
                )
            except* aiomqtt.MqttError as group:
                log.warning(
                    "destination connection lost",
                    destination=self.settings.name,
                    connection=stats.connection,
                    error=str(group.exceptions[0]) or type(group.exceptions[0]).__name__,
                )
            finally:
                stats.connected = False
            stats.reconnects += 1
            await asyncio.sleep(backoff.next_delay_s())

    async def _publish_all(self, client: BridgeClient, stats: ConnectionStats) -> None:
        loop = asyncio.get_running_loop()
        # Never more unacknowledged PUBLISHes than the server's Receive Maximum allows
        # (mosquitto#3002: HiveMQ disconnects bridges that ignore it with 0x93).
        slots = asyncio.Semaphore(
            min(self.settings.in_flight_per_connection, client.server_receive_maximum)
        )
        # Taken by this connection and not confirmed yet, in the order taken. Kept here rather
        # than in each publish task: a task cancelled before its first step runs no code.
        unconfirmed: dict[Outgoing, None] = {}
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(_fail_on_disconnect(client))
                while True:
                    await slots.acquire()
                    message = await self._next()
                    unconfirmed[message] = None
                    delay = stats.bucket.reserve(loop.time())
                    if delay:
                        await asyncio.sleep(delay)
                    tasks.create_task(self._publish(client, message, slots, stats, unconfirmed))
        finally:
            # Published again, first, on whichever connection is up next.
            self._queue.extendleft(reversed(unconfirmed))
            self._queued.set()

    async def _publish(
        self,
        client: BridgeClient,
        message: Outgoing,
        slots: asyncio.Semaphore,
        stats: ConnectionStats,
        unconfirmed: dict[Outgoing, None],
    ) -> None:
        try:
            await client.publish_confirmed(
                message.topic,
                message.payload,
                message.qos,
                message.properties,
                self.settings.publish_timeout_s,
            )
        finally:
            slots.release()
        del unconfirmed[message]
        stats.published += 1
        self._confirmed(message)


async def _fail_on_disconnect(client: BridgeClient) -> None:
    await client.wait_disconnected()
    raise aiomqtt.MqttError("disconnected")
