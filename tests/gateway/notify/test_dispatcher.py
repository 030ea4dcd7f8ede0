"""The dispatcher: ticket join, suppression, retries, dead letters and shutdown, with a scripted
target (the real targets have their own tests against real endpoints)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.common import tickets
from gateway.common.tickets import Ticket
from gateway.journal.settings import LocalSinkSettings
from gateway.notify.dispatcher import Dispatcher
from gateway.notify.queue import ACCEPTED, Outcome, Verdict
from gateway.notify.settings import RetrySettings
from tests.gateway.notify.notes import notification
from tests.gateway.notify.scripted import (
    FAST,
    ScriptedTarget,
    dead_letters,
    dispatcher,
    submit,
    until,
)


@pytest.mark.asyncio
async def test_the_frames_ticket_waits_for_every_notification_write(tmp_path: Path) -> None:
    now = [100.0]
    d = dispatcher(tmp_path, ScriptedTarget([ACCEPTED]), lambda: now[0])
    acked = Outcomes()
    frame = Ticket(acked, "ack", pending=3)  # raw record, parsed record, notifications
    notes = [notification(raw_id="r"), notification(raw_id="r", code="EVB1-0x0102")]
    written = d.submit(notes, [msgspec.json.encode(n) for n in notes], 99.997, frame)
    frame.part_done()  # raw record written
    written.part_done()
    assert acked == []  # one notification is not on disk yet
    written.part_done()
    assert acked == []  # ...and the frame's parsed record still counts
    local = d.stats.targets["local"]
    assert local.delivered == 2 and local.latency.sum == pytest.approx(0.003)
    frame.part_done()
    assert acked == [("ack", tickets.Outcome.WRITTEN)]


@pytest.mark.asyncio
async def test_a_notification_lost_to_the_sink_settles_its_frame_as_lost(tmp_path: Path) -> None:
    d = dispatcher(tmp_path, ScriptedTarget([ACCEPTED]))
    settled = Outcomes()
    frame = Ticket(settled, "frame", pending=2)  # raw record, notifications
    written = submit_for(d, frame)
    frame.part_done()
    written.part_lost()
    written.part_done()
    assert settled == [("frame", tickets.Outcome.LOST)]
    assert d.stats.targets["local"].delivered == 0


def submit_for(d: Dispatcher, frame: Ticket[Any]) -> Ticket[Any]:
    notes = [notification(raw_id="r")]
    return d.submit(notes, [msgspec.json.encode(n) for n in notes], time.monotonic(), frame)


class Outcomes(list[tuple[str, tickets.Outcome]]):
    """A frame's finalizer that keeps what it is told."""

    def settled(self, note: str, outcome: tickets.Outcome) -> None:
        self.append((note, outcome))


@pytest.mark.asyncio
async def test_suppressed_notifications_are_counted_and_not_sent(tmp_path: Path) -> None:
    target = ScriptedTarget([ACCEPTED])
    d = dispatcher(tmp_path, target)
    d.start()
    quiet = msgspec.structs.replace(notification(raw_id="quiet"), suppressed=True)
    loud = notification(raw_id="loud")
    bodies = [msgspec.json.encode(quiet), msgspec.json.encode(loud)]
    d.submit([quiet, loud], bodies, time.monotonic(), None)
    await until(lambda: d.stats.targets["scripted"].delivered == 1)
    assert target.batches == [["loud"]]
    assert d.stats.suppressed == {"EVB1-0x0101": 1}
    assert d.stats.notifications == {("EVB1-0x0101", "critical", "open"): 2}
    await d.close(0.0)


@pytest.mark.asyncio
async def test_retries_until_accepted_and_times_from_arrival(tmp_path: Path) -> None:
    retry = Verdict(Outcome.RETRY, "HTTP 503")
    target = ScriptedTarget([retry, RuntimeError("bug"), ACCEPTED])
    d = dispatcher(tmp_path, target)
    d.start()
    submit(d, "a")
    stats = d.stats.targets["scripted"]
    await until(lambda: stats.delivered == 1)
    assert target.batches == [["a"], ["a"], ["a"]]  # a target that raises is retried too
    assert stats.retries == 2 and not stats.dead_letters
    assert sum(stats.latency.counts) == 1
    await d.close(0.0)
    assert dead_letters(tmp_path) == []


@pytest.mark.asyncio
async def test_what_cannot_be_delivered_is_dead_lettered_with_the_reason(tmp_path: Path) -> None:
    target = ScriptedTarget([Verdict(Outcome.RETRY, "HTTP 500")])
    d = dispatcher(tmp_path, target)
    d.start()
    submit(d, "a")
    stats = d.stats.targets["scripted"]
    await until(lambda: stats.dead_letters["expired"] == 1)
    assert len(target.batches) == FAST.max_attempts
    await d.close(0.0)  # waits for the dead-letter write
    [line] = dead_letters(tmp_path)
    assert line["class"] == "notifications" and line["target"] == "scripted"
    assert (line["reason"], line["attempts"]) == ("expired", 3)
    assert line["detail"] == "out of attempts after 3 attempts; last error: HTTP 500"
    assert line["record"] == msgspec.to_builtins(notification(raw_id="a"))


@pytest.mark.asyncio
async def test_shutdown_leaves_what_the_deadline_leaves_for_the_next_start(tmp_path: Path) -> None:
    """Dead-lettered with reason ``shutdown``, a restart during a target's outage dropped them;
    left unsettled, the cursor stays before them and the next start queues them again."""
    target = ScriptedTarget([ACCEPTED])
    target.hold = asyncio.Event()  # the target never answers
    d = dispatcher(tmp_path, target)
    d.start()
    cursors = tmp_path / "notification-cursors.json"
    before = cursors.read_bytes()
    submit(d, "a", "b")
    await until(lambda: bool(target.batches))
    await d.close(time.monotonic() + 0.05)
    assert dead_letters(tmp_path) == [] and not d.stats.targets["scripted"].dead_letters
    assert cursors.read_bytes() == before
    assert target.closed


@pytest.mark.asyncio
async def test_shutdown_does_not_wait_out_the_backoff_of_a_failing_target(tmp_path: Path) -> None:
    """What only waits for a retry is left for the next start at once: waiting out the backoff
    of a target that is down, up to the deadline, only held the restart back."""
    target = ScriptedTarget([Verdict(Outcome.RETRY, "HTTP 503")])
    slow = RetrySettings(first_s=600.0, max_s=600.0)
    d = Dispatcher([target], slow, LocalSinkSettings(data_dir=tmp_path))
    d.start()
    submit(d, "a")
    await until(lambda: d.stats.targets["scripted"].retries == 1)
    async with asyncio.timeout(10):  # far below the deadline and the backoff
        await d.close(time.monotonic() + 3600)
    assert target.batches == [["a"]] and dead_letters(tmp_path) == []
