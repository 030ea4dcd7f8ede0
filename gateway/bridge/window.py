"""The in-flight window of one source connection: messages taken but not yet acknowledged.

A message is acknowledged to its source only once its route's ACK policy is met (journaled, or
delivered to its destination), and acknowledgements leave in the order the messages arrived
(MQTT 3.1.1 §4.6 [MQTT-4.6.0-2]: PUBACKs in the order of the PUBLISHes): a message taken care of
early waits for the ones before it. The window holds at most ``limit`` messages; the source
session takes no more until one leaves, so a backlog drains at the pace of the journal, or of
the destination under ``delivered`` (Vector's end-to-end acknowledgements).

When the connection ends, whatever is still in the window is *abandoned*: its acknowledgement
can no longer be sent, so the broker will deliver it again on the next connection. That is the
at-least-once trade: at most ``limit`` duplicates per lost connection, never a loss.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable

from gateway.bridge.client import Received
from gateway.bridge.stats import RouteStats


class Delivery:
    """One message on its way; ``delivered`` is called once its ACK policy is met."""

    __slots__ = ("_window", "abandoned", "deadline", "done", "message", "route")

    def __init__(
        self, window: InFlightWindow, message: Received, route: RouteStats | None, deadline: float
    ) -> None:
        self._window = window
        self.message = message
        self.route = route
        self.deadline = deadline  # loop time by which it must be delivered, or math.inf
        self.done = False
        self.abandoned = False

    def delivered(self) -> None:
        self._window.delivered(self)


class InFlightWindow:
    def __init__(
        self, limit: int, ack: Callable[[Received], None], clock: Callable[[], float]
    ) -> None:
        self.limit = limit
        self._ack = ack
        self._clock = clock
        self._entries: deque[Delivery] = deque()
        self._space = asyncio.Event()
        self._space.set()
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._entries)

    async def wait_for_space(self) -> None:
        await self._space.wait()

    async def wait_empty(self) -> None:
        await self._empty.wait()

    def admit(
        self, message: Received, route: RouteStats | None, deadline: float = math.inf
    ) -> Delivery:
        """Take ``message`` into the window (the caller waited for space)."""
        delivery = Delivery(self, message, route, deadline)
        self._entries.append(delivery)
        self._empty.clear()
        if route is not None:
            route.in_flight += 1
        if len(self._entries) >= self.limit:
            self._space.clear()
        return delivery

    def delivered(self, delivery: Delivery) -> None:
        if delivery.done or delivery.abandoned:
            return  # a second callback, or a connection that is gone: nothing to send
        delivery.done = True
        route = delivery.route
        if route is not None:
            now = self._clock()
            route.lag.observe(now - delivery.message.since)
        entries = self._entries
        while entries and entries[0].done:
            head = entries.popleft()
            self._ack(head.message)
            if head.route is not None:
                head.route.in_flight -= 1
                head.route.acknowledged += 1
        if len(entries) < self.limit:
            self._space.set()
        if not entries:
            self._empty.set()

    def overdue(self, now: float) -> bool:
        """Whether the oldest message has passed its deadline (its records were dead-lettered:
        only a redelivery can bring it back)."""
        return bool(self._entries) and min(d.deadline for d in self._entries) < now

    def abandon(self) -> int:
        """The connection is gone: drop every entry; returns how many there were."""
        count = len(self._entries)
        for delivery in self._entries:
            delivery.abandoned = True
            if delivery.route is not None:
                delivery.route.in_flight -= 1
        self._entries.clear()
        self._space.set()
        self._empty.set()
        return count
