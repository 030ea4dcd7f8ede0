"""One delivery target's notifications, in order per device, and the retry decisions (pure: the
caller passes ``now``, so tests drive it with a fake clock).

Order matters per device only (a target must see a device's ``open`` before its ``clear``), so
each device has its own line and at most one notification in flight: the others are sent
concurrently, up to ``max_in_flight`` deliveries. A global line held every device behind one
failing or slow notification (a receiver answering 500 for one device kept 49 others' critical
alarms unsent for 30 s; one answering in 1 s delivered one notification per second). A
notification a target could not take this time stays at the front of its device's line and waits
for its backoff (gateway/common/backoff.py, counted by the notification's attempts); that
device's later ones wait with it, other devices do not. A batch holds the heads of distinct
devices, so a partly taken batch (SNS PublishBatch) cannot reorder a device either. One that
cannot succeed (refused), that ran out of attempts, that outlived ``ttl_s`` since its frame
arrived, or that found the queue full, is handed back as dead, with the reason, for the
dead-letter file.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway.common.backoff import Backoff, RandomSource
from gateway.notify.settings import RetrySettings
from parser.rules import Notification


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    RETRY = "retry"  # may succeed later: back off and send again
    REFUSED = "refused"  # cannot succeed: dead-letter now
    LOST = "lost"  # the target gave up and dead-lettered it itself (the Kinesis sink does)


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    reason: str = ""


ACCEPTED = Verdict(Outcome.ACCEPTED)


@dataclass(slots=True)
class Outgoing:
    """One notification on its way to one target. ``arrived_at``: its frame's arrival, on the
    monotonic clock (the latency histogram and ``ttl_s`` count from it)."""

    note: Notification
    body: bytes  # the JSON record, as written to notifications/
    arrived_at: float
    attempts: int = 0
    due_at: float = 0.0
    last_error: str = ""
    # The notifications/ file holding it, or one before it (gateway/notify/cursor.py).
    file: str | None = None
    settled: bool = False  # delivered or dead-lettered


@dataclass(slots=True)
class Dead:
    item: Outgoing
    reason: str  # bounded: refused, expired, queue_full, lost (a metric label)
    detail: str


@dataclass(slots=True)
class Settled:
    accepted: list[Outgoing] = field(default_factory=list)
    dead: list[Dead] = field(default_factory=list)
    retried: int = 0


class Target(Protocol):
    """A delivery target: ``deliver`` returns one verdict per item, in order, and never raises
    for the target's own failures (those are verdicts)."""

    name: str  # the metric label: sns, webhook, kinesis
    max_batch: int

    async def open(self) -> None: ...

    async def deliver(self, batch: Sequence[Outgoing]) -> list[Verdict]: ...

    async def close(self) -> None: ...


class TargetQueue:
    """Per-device lines; every device with notifications is in exactly one place: ready (its
    head may be sent), backing off (a heap by due time) or in flight."""

    def __init__(self, retry: RetrySettings, rng: RandomSource | None = None) -> None:
        self._retry = retry
        self._delays = Backoff(retry.first_s, retry.max_s, rng)  # by each item's attempts
        self._lines: dict[str, deque[Outgoing]] = {}  # device -> its notifications, in order
        self._ready: deque[str] = deque()  # devices in the order their heads became sendable
        self._backoff: list[tuple[float, int, str]] = []  # (due_at, tie-break, device)
        self._tie = itertools.count()
        self._count = 0
        self.in_flight = 0  # deliveries taken and not settled yet
        self.overflow: list[Outgoing] = []  # refused at the door, to be dead-lettered
        self._expired: list[Dead] = []  # found when their line came up, to be dead-lettered

    def __len__(self) -> int:
        """Notifications not settled yet (queued or in flight)."""
        return self._count

    def push(self, item: Outgoing) -> None:
        if self._count >= self._retry.queue_max:
            self.overflow.append(item)
            return
        device = item.note.device_id
        line = self._lines.get(device)
        if line is None:
            line = self._lines[device] = deque()
            self._ready.append(device)
        line.append(item)
        self._count += 1

    def take_dead(self) -> list[Dead]:
        """Those refused at the door, and those found past ``ttl_s`` when their line came up."""
        dead = [Dead(item, "queue_full", "the target's queue was full") for item in self.overflow]
        self.overflow = []
        dead += self._expired
        self._expired = []
        return dead

    def wait_s(self, now: float) -> float | None:
        """Seconds until a head may be sent (0: now); None when none will be without a settle."""
        if self._ready:
            return 0.0
        if self._backoff:
            return max(0.0, self._backoff[0][0] - now)
        return None

    def batch(self, max_batch: int, now: float) -> list[Outgoing]:
        """The heads of up to ``max_batch`` devices that may be sent now, one per device; they
        stay queued (and their devices in flight) until :meth:`settle`."""
        backoff, ready = self._backoff, self._ready
        while backoff and backoff[0][0] <= now:
            ready.append(heapq.heappop(backoff)[2])
        ttl_s = self._retry.ttl_s
        batch: list[Outgoing] = []
        while ready and len(batch) < max_batch:
            device = ready.popleft()
            line = self._lines[device]
            # A device's line is in arrival order: what outlived ttl_s is a prefix of it.
            while line and now - line[0].arrived_at >= ttl_s:
                item = line.popleft()
                self._count -= 1
                why = f"not delivered within {ttl_s:g} s"
                self._expired.append(Dead(item, "expired", _gave_up(item, why)))
            if line:
                batch.append(line[0])
            else:
                del self._lines[device]
        if batch:
            self.in_flight += 1
        return batch

    def settle(self, batch: Sequence[Outgoing], verdicts: Sequence[Verdict], now: float) -> Settled:
        """Apply a delivery's verdicts to ``batch`` (heads of their devices' lines)."""
        out = Settled()
        retry = self._retry
        self.in_flight -= 1
        for item, verdict in zip(batch, verdicts, strict=True):
            device = item.note.device_id
            line = self._lines[device]
            item.attempts += 1
            outcome = verdict.outcome
            if outcome is Outcome.RETRY and item.attempts < retry.max_attempts:
                item.last_error = verdict.reason
                item.due_at = now + self._delays.delay_s(item.attempts)
                # Stays at the front of its line: nothing of this device overtakes it.
                heapq.heappush(self._backoff, (item.due_at, next(self._tie), device))
                out.retried += 1
                continue
            line.popleft()
            self._count -= 1
            if outcome is Outcome.ACCEPTED:
                out.accepted.append(item)
            elif outcome is Outcome.REFUSED:
                out.dead.append(Dead(item, "refused", verdict.reason))
            elif outcome is Outcome.LOST:
                out.dead.append(Dead(item, "lost", verdict.reason))
            else:
                item.last_error = verdict.reason
                out.dead.append(Dead(item, "expired", _gave_up(item, "out of attempts")))
            if line:
                self._ready.append(device)
            else:
                del self._lines[device]
        return out


def _gave_up(item: Outgoing, why: str) -> str:
    last = f"; last error: {item.last_error}" if item.last_error else ""
    return f"{why} after {item.attempts} attempts{last}"
