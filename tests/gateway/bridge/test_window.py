"""The in-flight window, driven without brokers."""

from __future__ import annotations

import asyncio
import math

import pytest

from gateway.bridge.client import Received
from gateway.bridge.stats import RouteStats
from gateway.bridge.window import InFlightWindow

pytestmark = pytest.mark.asyncio


def message(mid: int, qos: int = 1) -> Received:
    return Received(f"t/{mid}", b"x", qos, False, mid, (), None, 0.0)


def window(limit: int, acked: list[int]) -> InFlightWindow:
    return InFlightWindow(limit, lambda m: acked.append(m.mid), lambda: 1.0)


async def test_acks_leave_in_arrival_order_once_their_destination_took_them() -> None:
    acked: list[int] = []
    w = window(8, acked)
    route = RouteStats("r")
    d1, d2, d3 = (w.admit(message(i), route) for i in (1, 2, 3))
    assert route.in_flight == 3
    d3.delivered()
    d2.delivered()
    assert acked == []  # 1 is still on its way: 2 and 3 wait behind it
    d1.delivered()
    assert acked == [1, 2, 3]
    assert (route.in_flight, route.acknowledged, route.lag.counts[-1]) == (0, 3, 0)
    d1.delivered()  # a second confirmation sends nothing twice
    assert acked == [1, 2, 3]


async def test_a_full_window_takes_nothing_until_a_message_is_acknowledged() -> None:
    acked: list[int] = []
    w = window(2, acked)
    first = w.admit(message(1), None)
    w.admit(message(2), None)
    space = asyncio.ensure_future(w.wait_for_space())
    for _ in range(3):
        await asyncio.sleep(0)
    assert not space.done()
    first.delivered()
    await space
    assert acked == [1]


async def test_abandoned_messages_are_never_acknowledged() -> None:
    acked: list[int] = []
    w = window(4, acked)
    route = RouteStats("r")
    late = w.admit(message(1), route)
    assert w.abandon() == 1
    assert late.abandoned and route.in_flight == 0
    late.delivered()  # its connection is gone: the broker will deliver it again
    assert acked == []
    await w.wait_empty()


async def test_only_a_message_past_its_deadline_is_overdue() -> None:
    w = window(4, [])
    w.admit(message(1), None)  # no deadline: MQTT destinations retry until PUBACK
    w.admit(message(2), None, deadline=10.0)
    assert not w.overdue(9.0)
    assert w.overdue(10.5)
    assert not window(4, []).overdue(math.inf)
