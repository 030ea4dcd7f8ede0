"""A destination shipper's position, without brokers: it moves only past messages the
destination confirmed, in journal order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

import gateway.bridge.shipper as shipper_module
from gateway.bridge.outbox import JournaledMessage, Outbox, encode_message
from gateway.bridge.publisher import Outgoing
from gateway.bridge.settings import DestinationSettings
from gateway.bridge.shipper import BridgeShipper, InOrder
from gateway.journal.cursor import Cursor, cursor_path
from gateway.journal.settings import LocalSinkSettings
from gateway.pipeline.flow_control import FlowControl


def out(offset: int, size: int) -> Outgoing:
    return Outgoing("t", b"x", 1, None, offset, offset + size)


def test_the_offset_moves_only_past_messages_confirmed_in_order() -> None:
    position = InOrder(100)
    a, b, c, d = out(100, 10), out(110, 20), out(130, 5), out(135, 7)
    for message in (a, b, c, d):
        position.add(message)
    assert not position.confirmed(c)  # a and b are still out: c's confirmation waits
    assert position.offset == 100
    assert not position.confirmed(b)
    assert position.offset == 100
    assert position.confirmed(a)  # a, then b and c confirmed before it
    assert (position.offset, len(position)) == (135, 1)
    assert position.oldest() is d
    assert position.confirmed(d)
    assert (position.offset, len(position), position.oldest()) == (142, 0, None)


def test_a_restart_resumes_at_the_offset_with_nothing_out() -> None:
    position = InOrder(0)
    first = out(0, 10)
    position.add(first)
    position.add(out(10, 10))
    position.confirmed(first)
    # What a restart sees: the saved offset; the unconfirmed second message is read again.
    again = InOrder(position.offset)
    assert (again.offset, len(again)) == (10, 0)


class StandInPool:
    """Takes the place of the connection pool: records what it is handed; the test confirms."""

    def __init__(
        self,
        settings: DestinationSettings,
        tls: object,
        backoff_s: tuple[float, float],
        confirmed: Callable[[Outgoing], None],
    ) -> None:
        self.v5 = True
        self.stats: list[object] = []
        self.confirm = confirmed
        self.submitted: list[Outgoing] = []

    def start(self) -> list[asyncio.Task[None]]:
        return []

    def submit(self, message: Outgoing) -> None:
        self.submitted.append(message)

    async def close(self) -> None:
        pass


def line(seq: int) -> bytes:
    return encode_message(
        JournaledMessage(f"id-{seq}", "telemetry", f"aws/in/d/{seq}", 1, False, 0, b"%d" % seq)
    )


async def journaled(box: Outbox, lines: list[bytes]) -> None:
    end = box.end + sum(len(x) + 1 for x in lines)
    for x in lines:
        box.append(x, None, None)
    while box.end < end:
        await box.written.wait()
        box.written.clear()


def shipper_for(data_dir: Path) -> BridgeShipper:
    settings = DestinationSettings(
        name="aws", host="127.0.0.1", client_id_prefix="out", in_flight_per_connection=4
    )
    box = Outbox(
        data_dir / "bridge",
        "aws",
        LocalSinkSettings(data_dir=data_dir),
        FlowControl(1 << 20, 1 << 19, lambda: 0.0),
    )
    return BridgeShipper(settings, None, (0.1, 1.0), box, data_dir, "bridge-1")


async def submitted(pool: StandInPool, count: int) -> list[Outgoing]:
    while len(pool.submitted) < count:
        await asyncio.sleep(0.005)
    return pool.submitted


@pytest.mark.asyncio
async def test_a_restart_resumes_after_the_messages_confirmed_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shipper_module, "DestinationPool", StandInPool)
    shipper = shipper_for(tmp_path)
    shipper.open()
    shipper.outbox.start()
    shipper.start()
    pool = cast(StandInPool, shipper.pool)
    lines = [line(i) for i in range(5)]
    await journaled(shipper.outbox, lines)
    out = await submitted(pool, 5)
    assert [m.topic for m in out] == [f"aws/in/d/{i}" for i in range(5)]
    for i in (0, 1, 3):  # 2 is still out: 3's confirmation cannot move the offset past it
        pool.confirm(out[i])
    assert shipper.offset == out[2].offset
    assert shipper.unshipped_bytes() == shipper.outbox.end - out[2].offset
    await shipper.outbox.close(5.0)
    await shipper.close(5.0)

    again = shipper_for(tmp_path)
    again.open()
    again.outbox.start()
    again.start()
    pool = cast(StandInPool, again.pool)
    resent = await submitted(pool, 3)
    assert [m.payload for m in resent] == [b"2", b"3", b"4"]  # 3 again: never saved past
    # A line that is not a message (never written by the outbox) is passed in its turn.
    await journaled(again.outbox, [b'{"not": "a message"}', line(6)])
    out = await submitted(pool, 4)
    assert out[3].payload == b"6"
    for message in out:
        pool.confirm(message)
    assert (again.offset, again.unshipped_bytes()) == (again.outbox.end, 0)
    await again.outbox.close(5.0)
    await again.close(5.0)


@pytest.mark.asyncio
async def test_a_cursor_past_the_journal_end_ships_from_the_end_not_past_new_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What fsync = "never" and a machine crash can leave: the cursor survived, lines did not.
    monkeypatch.setattr(shipper_module, "DestinationPool", StandInPool)
    Cursor(cursor_path(tmp_path, "bridge-aws", "mqtt")).save(1_000_000)
    shipper = shipper_for(tmp_path)
    shipper.open()
    assert shipper.offset == shipper.outbox.end == 0
    shipper.outbox.start()
    shipper.start()
    await journaled(shipper.outbox, [line(1)])
    [message] = await submitted(cast(StandInPool, shipper.pool), 1)
    assert message.payload == b"1"
    await shipper.outbox.close(5.0)
    await shipper.close(5.0)
