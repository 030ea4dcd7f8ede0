"""A dispatcher with a scripted target, and what the dispatcher, target and local-sink tests need
around it: polling until a condition holds, submitting notifications, reading notification dead
letters."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from gateway.common.tickets import Ticket
from gateway.journal.settings import LocalSinkSettings
from gateway.notify.dispatcher import Dispatcher
from gateway.notify.queue import Outgoing, Verdict
from gateway.notify.settings import RetrySettings
from tests.gateway.notify.notes import notification

FAST = RetrySettings(first_s=0.001, max_s=0.002, max_attempts=3)


class ScriptedTarget:
    """Answers each delivery with the next scripted verdict (the last one repeats); ``hold``
    makes deliveries wait until it is set."""

    name = "scripted"
    max_batch = 10

    def __init__(self, script: Sequence[Verdict | Exception]) -> None:
        self.script = list(script)
        self.batches: list[list[str]] = []
        self.hold: asyncio.Event | None = None
        self.closed = False

    async def open(self) -> None:
        pass

    async def deliver(self, batch: Sequence[Outgoing]) -> list[Verdict]:
        self.batches.append([item.note.raw_id for item in batch])
        if self.hold is not None:
            await self.hold.wait()
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        return [step] * len(batch)

    async def close(self) -> None:
        self.closed = True


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.002)


def dispatcher(
    tmp_path: Path, target: ScriptedTarget, clock: Callable[[], float] | None = None
) -> Dispatcher:
    local = LocalSinkSettings(data_dir=tmp_path)
    if clock is None:
        return Dispatcher([target], FAST, local)
    return Dispatcher([target], FAST, local, clock)


def submit(d: Dispatcher, *raw_ids: str) -> Ticket[Any]:
    notes = [notification(raw_id=r) for r in raw_ids]
    return d.submit(notes, [msgspec.json.encode(n) for n in notes], time.monotonic(), None)


def dead_letters(tmp_path: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted((tmp_path / "dead-letters").glob("notifications-*.jsonl"))
        for line in path.read_text().splitlines()
    ]
