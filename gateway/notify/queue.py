"""One delivery target's notifications in arrival order, and the retry decisions (pure: the
caller passes ``now``, so tests drive it with a fake clock).

A notification a target could not take this time stays at the front and waits for its backoff
(capped exponential, jittered to 50-100 % like the pipeline's sink retries); the ones behind it
wait too, so a target sees a device's ``open`` before its ``clear``. A batch holds at most one
notification per device: a target may take part of a batch (SNS PublishBatch), and a device's
later notification taken while its earlier one is retried would overtake it. One that cannot succeed
(refused), that ran out of attempts, that outlived ``ttl_s`` since its frame arrived, or that
found the queue full, is handed back as dead, with the reason, for the dead-letter file.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Protocol

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
    reason: str  # bounded: refused, expired, queue_full, lost, shutdown (a metric label)
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
    def __init__(
        self, retry: RetrySettings, jitter: Callable[[float, float], float] = random.uniform
    ) -> None:
        self._retry = retry
        self._jitter = jitter
        self._items: deque[Outgoing] = deque()
        self.overflow: list[Outgoing] = []  # refused at the door, to be dead-lettered

    def __len__(self) -> int:
        return len(self._items)

    def push(self, item: Outgoing) -> None:
        if len(self._items) >= self._retry.queue_max:
            self.overflow.append(item)
        else:
            self._items.append(item)

    def take_dead(self, now: float) -> list[Dead]:
        """Those refused at the door, and those at the front past ``ttl_s`` (arrival order is
        queue order, so expired items are a prefix)."""
        dead = [Dead(item, "queue_full", "the target's queue was full") for item in self.overflow]
        self.overflow = []
        ttl_s = self._retry.ttl_s
        items = self._items
        while items and now - items[0].arrived_at >= ttl_s:
            item = items.popleft()
            dead.append(Dead(item, "expired", _gave_up(item, f"not delivered within {ttl_s:g} s")))
        return dead

    def wait_s(self, now: float) -> float | None:
        """Seconds until the front may be sent (0: now); None when there is nothing to send."""
        if not self._items:
            return None
        return max(0.0, self._items[0].due_at - now)

    def batch(self, max_batch: int) -> list[Outgoing]:
        """The front items to send now, up to the second one of a device (see above); they
        stay queued until :meth:`settle`."""
        batch: list[Outgoing] = []
        devices: set[str] = set()
        for item in islice(self._items, max_batch):
            if item.note.device_id in devices:
                break
            devices.add(item.note.device_id)
            batch.append(item)
        return batch

    def settle(self, batch: Sequence[Outgoing], verdicts: Sequence[Verdict], now: float) -> Settled:
        """Apply a delivery's verdicts to ``batch`` (the front of the queue)."""
        out = Settled()
        retry = self._retry
        again: list[Outgoing] = []
        for item, verdict in zip(batch, verdicts, strict=True):
            self._items.popleft()
            item.attempts += 1
            outcome = verdict.outcome
            if outcome is Outcome.ACCEPTED:
                out.accepted.append(item)
            elif outcome is Outcome.REFUSED:
                out.dead.append(Dead(item, "refused", verdict.reason))
            elif outcome is Outcome.LOST:
                out.dead.append(Dead(item, "lost", verdict.reason))
            elif item.attempts >= retry.max_attempts:
                item.last_error = verdict.reason
                out.dead.append(Dead(item, "expired", _gave_up(item, "out of attempts")))
            else:
                item.last_error = verdict.reason
                delay = min(retry.max_s, retry.first_s * 2 ** (item.attempts - 1))
                item.due_at = now + delay * self._jitter(0.5, 1.0)
                again.append(item)
        # Back to the front, in their order: nothing behind them overtakes.
        self._items.extendleft(reversed(again))
        out.retried = len(again)
        return out

    def drain(self) -> list[Outgoing]:
        """Everything still queued (shutdown)."""
        items = [*self._items, *self.overflow]
        self._items.clear()
        self.overflow = []
        return items


def _gave_up(item: Outgoing, why: str) -> str:
    last = f"; last error: {item.last_error}" if item.last_error else ""
    return f"{why} after {item.attempts} attempts{last}"
