"""Every shipper of the process, the journal's disk budget and its retention.

Budget (Fluent Bit's ``storage.total_limit_size``): the bytes journaled and not yet shipped, behind
the slowest shipper of each stream, and the free space left on the data directory's filesystem.
Above ``journal.max_bytes`` every reader pauses, as the memory budget pauses them; they resume
once shipping brought it under 90 %. Below ``journal.min_free_bytes`` free, shipped segments are
deleted first (oldest first, however young: a copy is in the target), and readers pause only if
that cannot make room. Retention: a segment goes once every shipper of its stream passed it and it
is older than ``journal.retain_s``; the segment being written never goes, nor anything unshipped,
nor (but by ``retain_s``) a stream no shipper reads — its segments are the only copy.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import structlog

from gateway.common.tasks import exit_if_died
from gateway.journal.segments import Segment, passed_segments
from gateway.journal.settings import JournalSettings
from gateway.journal.store import STREAMS, Journal
from gateway.sinks.shipper import Shipper

log = structlog.get_logger("gateway.sinks.shipping")

BUDGET_CHECK_S = 0.25
RETENTION_CHECK_S = 10.0
RESUME_FRACTION = 0.9


class Shipping:
    def __init__(
        self,
        settings: JournalSettings,
        journal: Journal,
        shippers: list[Shipper],
        on_full: Callable[[bool], None],
    ) -> None:
        """``on_full(True)`` when the budget is full (readers pause), ``on_full(False)`` once it
        has room again."""
        self.settings = settings
        self.journal = journal
        self.shippers = shippers
        self._on_full = on_full
        self.full_reason = ""  # why the budget is full; empty while it has room
        self.segments_deleted = 0
        self.free_bytes = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._also: list[Callable[[], int]] = []

    def open(self) -> None:
        """Each shipper's cursor (raises ``OSError``); the budget as it stands."""
        for shipper in self.shippers:
            shipper.open()
        self.check_budget()

    def start(self) -> None:
        coroutines = {f"ship-{s.name}": s.run() for s in self.shippers}
        coroutines["journal-budget"] = self._keep_budget()
        coroutines["journal-retention"] = self._keep_retention()
        for name, coroutine in coroutines.items():
            task = asyncio.create_task(coroutine, name=name)
            task.add_done_callback(exit_if_died(name))
            self._tasks.append(task)

    def unshipped_bytes(self) -> int:
        """What the budget counts: every stream's, and what ``count_also`` added."""
        own = sum(self.behind(stream) for stream in STREAMS)
        return own + sum(other() for other in self._also)

    def count_also(self, unshipped_bytes: Callable[[], int]) -> None:
        """Count another journal's unshipped bytes in the budget (the bridge's series)."""
        self._also.append(unshipped_bytes)

    def behind(self, stream: str) -> int:
        """The unshipped bytes of ``stream``: the lag of its slowest shipper (0 with none)."""
        return max((s.lag_bytes() for s in self.shippers if s.stream == stream), default=0)

    def passed(self, stream: str) -> int:
        """The offset every shipper of ``stream`` has passed (the end when it has none)."""
        return min(
            (s.offset for s in self.shippers if s.stream == stream),
            default=self.journal.end(stream),
        )

    @property
    def full(self) -> bool:
        return bool(self.full_reason)

    def _read_free(self) -> int:
        try:
            stat = os.statvfs(self.journal.data_dir)
            self.free_bytes = stat.f_bavail * stat.f_frsize
        except OSError as exc:
            log.warning("cannot read the data directory's free space", error=str(exc))
        return self.free_bytes

    def check_budget(self) -> None:
        settings = self.settings
        self._read_free()
        unshipped = self.unshipped_bytes()
        if not self.full:
            if unshipped >= settings.max_bytes:
                self._set_full(f"journal holds {unshipped} unshipped bytes (max_bytes)")
            elif self.free_bytes < settings.min_free_bytes:
                self._set_full(f"{self.free_bytes} bytes free on the data directory")
        elif (
            unshipped <= settings.max_bytes * RESUME_FRACTION
            and self.free_bytes >= settings.min_free_bytes
        ):
            self.full_reason = ""
            log.info("journal budget has room again; resuming readers", unshipped_bytes=unshipped)
            self._on_full(False)

    def _set_full(self, reason: str) -> None:
        self.full_reason = reason
        log.warning("journal budget full; pausing readers", reason=reason)
        self._on_full(True)

    async def _keep_budget(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(BUDGET_CHECK_S)
            if self._read_free() < self.settings.min_free_bytes:  # room first: no pause
                passed = self._shipped_offsets()
                self.segments_deleted += await loop.run_in_executor(None, self.make_room, passed)
            self.check_budget()
            for stream in STREAMS:
                self.journal.forget_before(stream, self.passed(stream))

    async def _keep_retention(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(RETENTION_CHECK_S)
            if self.settings.retain_s is None:
                continue
            passed = {stream: self.passed(stream) for stream in STREAMS}
            self.segments_deleted += await loop.run_in_executor(None, self.remove_passed, passed)

    def _shipped_offsets(self) -> dict[str, int]:
        """What every shipper passed, for the streams that have shippers: a copy is elsewhere."""
        return {s.stream: self.passed(s.stream) for s in self.shippers}

    def remove_passed(self, passed: dict[str, int]) -> int:
        """Delete the segments every shipper passed and older than retention; how many."""
        retain_s = self.settings.retain_s
        assert retain_s is not None
        oldest = time.time() - retain_s
        removed = 0
        for segment, mtime in self._removable(passed):
            if mtime > oldest:
                continue  # this stream's later segments are younger still
            removed += self._remove(segment)
        return removed

    def make_room(self, passed: dict[str, int]) -> int:
        """Free space is under ``min_free_bytes``: delete shipped segments, oldest first, however
        young, until it is back (unshipped data and streams with no shipper are never touched:
        no other copy exists). How many went."""
        removed = 0
        for segment, _ in sorted(self._removable(passed), key=lambda found: found[1]):
            try:
                stat = os.statvfs(self.journal.data_dir)
            except OSError:
                break
            if stat.f_bavail * stat.f_frsize >= self.settings.min_free_bytes:
                break
            removed += self._remove(segment)
        if removed:
            log.warning(
                "disk short: deleted shipped segments before their retention", segments=removed
            )
        return removed

    def _removable(self, passed: dict[str, int]) -> list[tuple[Segment, float]]:
        """Segments before ``passed[stream]``, with their mtimes, in order per stream; never
        the last one of a series (it may still be written)."""
        found = []
        for stream, offset in passed.items():
            journal = self.journal
            try:
                for segment in passed_segments(
                    journal.directory(stream),
                    journal.prefix(stream),
                    offset,
                    journal.current_file(stream),
                ):
                    found.append((segment, segment.path.stat().st_mtime))
            except FileNotFoundError:
                continue  # removed meanwhile
            except OSError as exc:  # a failing disk: the next round tries again
                log.warning("cannot list the journal's segments", stream=stream, error=str(exc))
        return found

    def _remove(self, segment: Segment) -> int:
        try:
            segment.path.unlink()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.warning("cannot remove a shipped segment", file=str(segment.path), error=str(exc))
            return 0
        return 1

    async def close(self) -> None:
        """Stop shipping (what is unshipped stays for the next start) and save the cursors."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for shipper in self.shippers:
            await shipper.close()
