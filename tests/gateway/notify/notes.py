"""Notifications to deliver in the dispatcher and target tests, as the engine makes them."""

from __future__ import annotations

import msgspec

from gateway.notify.queue import Outgoing
from parser.records import Alarm, Reading
from parser.rules import Notification, NotificationEngine

T0_MS = 1_767_225_600_000


def notification(
    device_id: str = "356307042441013",
    code: str = "EVB1-0x0101",
    severity: str = "critical",
    raw_id: str = "raw1",
) -> Notification:
    """An ``open`` of a protocol alarm, made by a real engine."""
    engine = NotificationEngine([], reminder_s=None, rate_per_s=1.0, burst=1)
    reading = Reading("alarm", T0_MS, alarms=(Alarm(code, severity, "thermal", 66),))
    [note] = engine.evaluate(device_id, raw_id, [reading], 0.0, T0_MS)
    return note


def outgoing(arrived_at: float = 0.0, **kwargs: str) -> Outgoing:
    note = notification(**kwargs)
    return Outgoing(note, msgspec.json.encode(note), arrived_at)
