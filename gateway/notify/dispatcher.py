"""Delivery of notifications to their targets, at least once, never behind a batch.

``submit`` is synchronous (called from ``Pipeline.accept``, inside ``data_received``): it counts
the frame's notifications and queues the unsuppressed ones on every target at once, so a target
is sent to within the same loop iteration, in parallel with the durable ``notifications/``
write (which the pipeline does on its own, linger-free stream). It returns the ticket of that
write: the frame's ACK waits for it under ``delivered``, and its completion is the ``local``
delivery latency.

One task per target sends its queue in order (``max_batch`` at a time), retries with backoff and
dead-letters what cannot be delivered to ``<data_dir>/dead-letters/notifications-*.jsonl`` with
the target, reason and the notification itself. Memory: each target queue holds at most
``retry.queue_max`` notifications; the rate limit bounds how fast they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import msgspec
import structlog

from gateway.local_sink import RotatingFile
from gateway.notify.metrics import NotifyStats
from gateway.notify.queue import Dead, Outcome, Outgoing, Target, TargetQueue, Verdict
from gateway.notify.settings import RetrySettings
from gateway.settings import LocalSinkSettings
from gateway.sink import SinkError
from gateway.tickets import Ticket
from parser.records import iso_ms
from parser.rules import Notification

log = structlog.get_logger("gateway.notify")


class DeadLetter(msgspec.Struct, frozen=True):
    at: str
    target: str
    reason: str
    detail: str
    attempts: int
    notification: msgspec.Raw  # the record exactly as written to notifications/
    record_class: str = msgspec.field(default="notifications", name="class")


class Dispatcher:
    def __init__(
        self,
        targets: Sequence[Target],
        retry: RetrySettings,
        local: LocalSinkSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.targets = list(targets)
        self._clock = clock
        self.stats = NotifyStats([t.name for t in self.targets])
        self._queues = {t.name: TargetQueue(retry) for t in self.targets}
        self._wake = {t.name: asyncio.Event() for t in self.targets}
        self._idle = {t.name: asyncio.Event() for t in self.targets}
        self._tasks: list[asyncio.Task[None]] = []
        self._dead_file = RotatingFile(local.data_dir / "dead-letters", "notifications", local)
        self._dead_thread = ThreadPoolExecutor(1, thread_name_prefix="dead-letters-notify")
        self._encode = msgspec.json.Encoder().encode

    def queued(self) -> dict[str, int]:
        return {name: len(q) + len(q.overflow) for name, q in self._queues.items()}

    def start(self) -> None:
        for target in self.targets:
            task = asyncio.create_task(self._send(target), name=f"notify-{target.name}")
            task.add_done_callback(_died)
            self._tasks.append(task)

    def submit(
        self,
        notes: Sequence[Notification],
        bodies: Sequence[bytes],
        arrived_at: float,
        frame_ticket: Ticket | None,
    ) -> Ticket:
        """Queue one frame's notifications on the targets; returns the ticket its
        ``notifications/`` records carry (done once all of them are written)."""
        stats = self.stats
        for note, body in zip(notes, bodies, strict=True):
            stats.count(note)
            if note.suppressed:
                continue
            for name, queue in self._queues.items():
                queue.push(Outgoing(note, body, arrived_at))
                self._idle[name].clear()
                self._wake[name].set()
        local = stats.targets["local"]

        def written() -> None:
            local.delivered += len(bodies)
            local.latency.observe(self._clock() - arrived_at)
            if frame_ticket is not None:
                frame_ticket.part_done()

        return Ticket(len(bodies), written)

    async def _send(self, target: Target) -> None:
        name = target.name
        queue = self._queues[name]
        wake, idle = self._wake[name], self._idle[name]
        stats = self.stats.targets[name]
        while True:
            dead = queue.take_dead(self._clock())
            if dead:
                await self._dead_letter(name, dead)
            wait = queue.wait_s(self._clock())
            if wait is None:
                idle.set()
                await wake.wait()
                wake.clear()
                continue
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            batch = queue.batch(target.max_batch)
            try:
                verdicts = await target.deliver(batch)
            except Exception as exc:  # a target bug must not end deliveries: retry, loudly
                log.exception("notification target failed", target=name)
                verdicts = [Verdict(Outcome.RETRY, type(exc).__name__)] * len(batch)
            now = self._clock()
            settled = queue.settle(batch, verdicts, now)
            for item in settled.accepted:
                stats.latency.observe(now - item.arrived_at)
            stats.delivered += len(settled.accepted)
            stats.retries += settled.retried
            if settled.retried:
                log.warning(
                    "notification delivery failed; retrying",
                    target=name,
                    notifications=settled.retried,
                    error=next(v.reason for v in verdicts if v.outcome is Outcome.RETRY),
                )
            if settled.dead:
                await self._dead_letter(name, settled.dead)

    async def _dead_letter(self, target: str, dead: list[Dead]) -> None:
        stats = self.stats.targets[target]
        at = iso_ms(time.time_ns() // 1_000_000)
        lines = []
        for d in dead:
            stats.dead_letters[d.reason] += 1
            item = d.item
            # Lost ones are in the Kinesis sink's own dead-letter file already.
            if d.reason != "lost":
                record = DeadLetter(
                    at, target, d.reason, d.detail, item.attempts, msgspec.Raw(item.body)
                )
                lines.append(self._encode(record))
            log.error(
                "notification dead-lettered",
                target=target,
                reason=d.reason,
                detail=d.detail,
                code=item.note.code,
                device_id=item.note.device_id,
                notification_id=item.note.id,
            )
        if not lines:
            return
        data = b"\n".join(lines) + b"\n"
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._dead_thread, self._dead_file.write, data)
        except SinkError as exc:
            log.error("cannot write notification dead letters", error=str(exc), lines=len(lines))

    async def close(self, deadline: float) -> None:
        """Shutdown: deliver what is queued until ``deadline`` (monotonic), then dead-letter
        the rest with reason ``shutdown`` and close the targets."""
        pending = [self._idle[name].wait() for name, q in self._queues.items() if len(q)]
        if pending:
            with contextlib.suppress(TimeoutError):  # what is left is dead-lettered below
                await asyncio.wait_for(asyncio.gather(*pending), max(0.0, deadline - self._clock()))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for name, queue in self._queues.items():
            left = queue.drain()
            if left:
                detail = "not delivered by the shutdown deadline"
                await self._dead_letter(name, [Dead(i, "shutdown", detail) for i in left])
        for target in self.targets:
            await target.close()
        self._dead_thread.shutdown(wait=True)
        self._dead_file.close()


def _died(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # A dead sender would leave notifications queued forever: crash loudly so the
        # supervisor restarts us (as the pipeline does for a dead sink writer).
        log.critical("notification sender died", task=task.get_name(), error=repr(task.exception()))
        os._exit(70)
