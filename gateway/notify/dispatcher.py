"""Delivery of notifications to their targets, at least once, never behind a batch.

``submit`` is synchronous (called from ``Pipeline.accept``, inside ``data_received``): it counts
the frame's notifications and queues the unsuppressed ones on every target at once, so a target
is sent to within the same loop iteration, in parallel with the durable ``notifications/``
write (which the pipeline does on its own, linger-free stream). It returns the ticket of that
write: the frame's ACK waits for it under ``delivered``, and its completion is the ``local``
delivery latency.

One task per target starts deliveries (``max_batch`` notifications of distinct devices each) while
fewer than ``retry.max_in_flight`` are under way: devices are served concurrently, each device's
notifications one at a time and in order (gateway/notify/queue.py). Each delivery settles on its
own: retries with backoff, and dead letters for what cannot be delivered, to
``<data_dir>/dead-letters/notifications-*.jsonl`` with the target, reason and the notification
itself. Memory: each target queue holds at most ``retry.queue_max`` notifications; the rate limit
bounds how fast they arrive.

The queues live in memory; ``notifications/`` is what survives a crash. Each target's cursor
(gateway/notify/cursor.py) is saved at most every ``CURSOR_SAVE_S`` while it moves and at
shutdown; at start the notifications after it are queued again. A clean stop leaves what it could
not deliver by its deadline exactly as a crash would: unsettled, for the next start (dead-lettered
instead, a restart during a target's outage dropped critical alarms). A target with no cursor yet
starts at the end: history is not sent to a target added later.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import structlog

from gateway.common import tickets
from gateway.common.sink import SinkError
from gateway.common.tasks import exit_if_died
from gateway.common.tickets import Ticket
from gateway.journal.settings import LocalSinkSettings
from gateway.notify.cursor import CursorFile, SettledPrefix
from gateway.notify.journal import Journal, Position, age_s
from gateway.notify.metrics import NotifyStats
from gateway.notify.queue import Dead, Outcome, Outgoing, Target, TargetQueue, Verdict
from gateway.notify.settings import RetrySettings
from gateway.sinks.dead_letters import DeadLetter, DeadLetterFile
from parser.records import iso_ms
from parser.rules import Notification

log = structlog.get_logger("gateway.notify")

CURSOR_SAVE_S = 1.0  # what a crash may send a second time, beyond what was in flight


# A frame's notifications on their ticket: how many, when the frame arrived, the frame's ticket.
FrameNotes = tuple[int, float, Ticket[Any] | None]


class Dispatcher:
    def __init__(
        self,
        targets: Sequence[Target],
        retry: RetrySettings,
        local: LocalSinkSettings,
        clock: Callable[[], float] = time.monotonic,
        *,
        current_file: Callable[[], Path | None] = lambda: None,
        worker: int | None = None,
        series: str = "notifications",
    ) -> None:
        """``current_file``: the notifications/ segment the journal writes to now, of the
        journal's ``series`` (this process's or this worker's)."""
        self.targets = list(targets)
        self._clock = clock
        self.stats = NotifyStats([t.name for t in self.targets])
        self._queues = {t.name: TargetQueue(retry) for t in self.targets}
        self._prefixes = {t.name: SettledPrefix(Position()) for t in self.targets}
        self._journal = Journal(local.data_dir / "notifications", series)
        # Workers share the data directory, each with its own queues.
        suffix = "" if worker is None else f"-{worker}"
        self._cursors = CursorFile(local.data_dir / f"notification-cursors{suffix}.json")
        self._cursor_moved = asyncio.Event()
        self._current_file = current_file
        self._last_file_at_start: str | None = None
        self._wake = {t.name: asyncio.Event() for t in self.targets}
        # Set while no delivery is under way and none may start now (nothing queued, or every
        # device backing off): what a shutdown waits for.
        self._quiet = {t.name: asyncio.Event() for t in self.targets}
        self._max_in_flight = retry.max_in_flight
        self._tasks: list[asyncio.Task[None]] = []
        self._flights: dict[str, set[asyncio.Task[None]]] = {t.name: set() for t in self.targets}
        self._dead_letters = DeadLetterFile(local, "notifications")
        # Cursors: file I/O off the event loop.
        self._file_thread = ThreadPoolExecutor(1, thread_name_prefix="notify-files")

    def queued(self) -> dict[str, int]:
        return {name: len(q) + len(q.overflow) for name, q in self._queues.items()}

    def start(self) -> None:
        """Queue again what the cursors say is unsettled, then start sending."""
        self._recover()
        senders = {f"notify-{t.name}": self._send(t) for t in self.targets}
        for name, coroutine in {**senders, "notify-cursors": self._keep_cursors()}.items():
            task = asyncio.create_task(coroutine, name=name)
            task.add_done_callback(exit_if_died("notification sender"))
            self._tasks.append(task)

    def _recover(self) -> None:
        files = self._journal.files()
        self._last_file_at_start = files[-1] if files else None
        saved = self._cursors.load()
        end: Position | None = None
        wall_now, now = time.time(), self._clock()
        for name, queue in self._queues.items():
            position = saved.get(name)
            entries = None if position is None else self._journal.after(position, files)
            if position is None or entries is None:
                if position is not None:
                    log.warning(
                        "notification cursor not in notifications/ (files removed?); "
                        "starting at the end",
                        target=name,
                        notification_id=position.id,
                        file=position.file,
                    )
                if end is None:
                    end = self._journal.end(files)
                position = end
                entries = []
            prefix = self._prefixes[name]
            prefix.position = position
            for entry in entries:
                arrived_at = now - age_s(entry.note, wall_now)  # ttl_s counts from the frame
                item = Outgoing(entry.note, entry.body, arrived_at, file=entry.file)
                queue.push(item)
                prefix.track(item)
            if entries:
                self.stats.targets[name].recovered += len(entries)
                log.info("unsettled notifications queued again", target=name, count=len(entries))
                self._quiet[name].clear()
                self._wake[name].set()
        # A first start's cursors at once: the next start begins there, not at its own end.
        self._save_cursors(self._positions())

    def _positions(self) -> dict[str, Position]:
        return {name: prefix.position for name, prefix in self._prefixes.items()}

    def _save_cursors(self, positions: dict[str, Position]) -> None:
        try:
            self._cursors.save(positions)
        except OSError as exc:  # the next move tries again
            log.error("cannot save notification cursors", error=exc.strerror or str(exc))

    async def _keep_cursors(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._cursor_moved.wait()
            self._cursor_moved.clear()
            await loop.run_in_executor(self._file_thread, self._save_cursors, self._positions())
            await asyncio.sleep(CURSOR_SAVE_S)

    def _settle(self, target: str, items: Sequence[Outgoing]) -> None:
        if self._prefixes[target].settle(items):
            self._cursor_moved.set()

    def submit(
        self,
        notes: Sequence[Notification],
        bodies: Sequence[bytes],
        arrived_at: float,
        frame_ticket: Ticket[Any] | None,
    ) -> Ticket[FrameNotes]:
        """Queue one frame's notifications on the targets; returns the ticket its
        ``notifications/`` records carry (done once all of them are written)."""
        stats = self.stats
        # At or before the file these will be written to: files only move on.
        current = self._current_file()
        file = self._last_file_at_start if current is None else current.name
        for note, body in zip(notes, bodies, strict=True):
            stats.count(note)
            if note.suppressed:
                continue
            for name, queue in self._queues.items():
                item = Outgoing(note, body, arrived_at, file=file)
                queue.push(item)
                self._prefixes[name].track(item)
                self._quiet[name].clear()
                self._wake[name].set()
        return Ticket(self, (len(bodies), arrived_at, frame_ticket), pending=len(bodies))

    def settled(self, note: FrameNotes, outcome: tickets.Outcome) -> None:
        """A frame's notifications are all in ``notifications/`` (its ticket's one part), or
        one was lost there: the frame is settled alike."""
        count, arrived_at, frame_ticket = note
        if outcome is tickets.Outcome.LOST:
            if frame_ticket is not None:
                frame_ticket.part_lost()
            return
        local = self.stats.targets["local"]
        local.delivered += count
        local.latency.observe(self._clock() - arrived_at)
        if frame_ticket is not None:
            frame_ticket.part_done()

    async def _send(self, target: Target) -> None:
        """Start deliveries while a slot is free and a device's head may go; sleep until a
        delivery lands, a notification arrives or a backoff ends."""
        name = target.name
        queue = self._queues[name]
        wake, quiet = self._wake[name], self._quiet[name]
        flights = self._flights[name]
        loop = asyncio.get_running_loop()

        def landed(flight: asyncio.Task[None]) -> None:
            flights.discard(flight)
            wake.set()

        while True:
            now = self._clock()
            while queue.in_flight < self._max_in_flight:
                batch = queue.batch(target.max_batch, now)
                if not batch:
                    break
                flight = asyncio.create_task(self._deliver(target, batch), name=f"notify-{name}")
                flights.add(flight)
                flight.add_done_callback(exit_if_died("notification sender"))
                flight.add_done_callback(landed)
            dead = queue.take_dead()
            if dead:
                await self._dead_letter(name, dead)
            if flights or queue.overflow or queue.wait_s(self._clock()) == 0.0:
                quiet.clear()
            else:
                quiet.set()
            timer = None
            if queue.in_flight < self._max_in_flight:
                wait = queue.wait_s(self._clock())
                if wait is not None:
                    timer = loop.call_later(wait, wake.set)
            await wake.wait()
            wake.clear()
            if timer is not None:
                timer.cancel()

    async def _deliver(self, target: Target, batch: list[Outgoing]) -> None:
        """One delivery, settled: accepted, retried after a backoff, or dead-lettered."""
        name = target.name
        stats = self.stats.targets[name]
        try:
            verdicts = await target.deliver(batch)
        except Exception as exc:  # a target bug must not end deliveries: retry, loudly
            log.exception("notification target failed", target=name)
            verdicts = [Verdict(Outcome.RETRY, type(exc).__name__)] * len(batch)
        now = self._clock()
        settled = self._queues[name].settle(batch, verdicts, now)
        for item in settled.accepted:
            stats.latency.observe(now - item.arrived_at)
        stats.delivered += len(settled.accepted)
        self._settle(name, settled.accepted)
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
        letters = []
        for d in dead:
            stats.dead_letters[d.reason] += 1
            item = d.item
            # Lost ones are in the Kinesis sink's own dead-letter file already.
            if d.reason != "lost":
                letters.append(
                    DeadLetter(
                        at,
                        "notifications",
                        target,
                        d.reason,
                        d.detail,
                        item.attempts,
                        msgspec.Raw(item.body),
                    )
                )
            log.error(
                "notification dead-lettered",
                target=target,
                reason=d.reason,
                detail=d.detail,
                code=item.note.code,
                device_id=item.note.device_id,
                notification_id=item.note.id,
            )
        try:
            await self._dead_letters.write(letters)
        except SinkError as exc:
            # Unsettled, they hold their cursor back: a restart sends them again.
            log.error("cannot write notification dead letters", error=str(exc), lines=len(letters))
            return
        self._settle(target, [d.item for d in dead])

    async def close(self, deadline: float) -> None:
        """Shutdown: deliver what is queued until ``deadline`` (monotonic) or until what is left
        only waits for a retry, then stop and close the targets. What is left stays unsettled,
        its cursor before it: the next start queues it again, as after a crash (waiting out the
        backoffs of a target that is down would only hold the restart back)."""
        pending = [
            self._quiet[name].wait() for name, q in self._queues.items() if len(q) or q.overflow
        ]
        if pending:
            with contextlib.suppress(TimeoutError):  # what is left waits for the next start
                await asyncio.wait_for(asyncio.gather(*pending), max(0.0, deadline - self._clock()))
        tasks = [*self._tasks, *(f for flights in self._flights.values() for f in flights)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for name, queue in self._queues.items():
            left = len(queue) + len(queue.overflow)
            if left:
                log.warning("notifications left for the next start", target=name, count=left)
        if self._tasks:  # not started: the cursors were never read, saving would reset them
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._file_thread, self._save_cursors, self._positions())
        for target in self.targets:
            await target.close()
        self._file_thread.shutdown(wait=True)
        self._dead_letters.close()
