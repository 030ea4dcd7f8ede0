"""The accumulator with a fake clock: linger, count, bytes and ticket placement."""

from __future__ import annotations

from gateway.accumulator import Accumulator
from gateway.tickets import Ticket


def test_linger_makes_a_batch_due() -> None:
    acc = Accumulator(linger_s=0.05, max_records=10, max_bytes=10_000)
    assert acc.next_deadline() is None
    assert acc.add(b"a", now=1.0) is True  # opened: the sender must arm its timer
    assert acc.add(b"b", now=1.01) is False
    assert acc.next_deadline() == 1.05
    assert acc.take(now=1.04) is None
    batch = acc.take(now=1.05)
    assert batch is not None and batch.records == [b"a", b"b"] and batch.size_bytes == 4
    assert acc.take(now=9.0) is None and acc.next_deadline() is None


def test_count_and_bytes_limits_close_batches() -> None:
    acc = Accumulator(linger_s=10, max_records=3, max_bytes=100)
    for i in range(3):
        acc.add(bytes([i]), now=0.0)
    assert acc.next_deadline() == 0.0  # full: ready at once
    full = acc.take(now=0.0)
    assert full is not None and len(full.records) == 3
    acc.add(b"x" * 60, now=0.0)
    acc.add(b"y" * 60, now=0.0)  # would pass 100 bytes: starts a new batch
    first = acc.take(now=0.0)
    assert first is not None and first.records == [b"x" * 60]
    assert acc.take(now=0.0) is None
    assert acc.take(now=0.0, flush=True) is not None


def test_oversize_record_still_gets_a_batch_of_its_own() -> None:
    acc = Accumulator(linger_s=10, max_records=10, max_bytes=100)
    acc.add(b"z" * 500, now=0.0)
    batch = acc.take(now=0.0)
    assert batch is not None and batch.records == [b"z" * 500]


def test_ticket_rides_on_the_batch_with_the_frames_last_record() -> None:
    acc = Accumulator(linger_s=10, max_records=2, max_bytes=10_000)
    done: list[str] = []
    ticket = Ticket(1, lambda: done.append("acked"))
    for record in (b"r1", b"r2", b"r3"):  # spans two batches
        acc.add(record, now=0.0)
    acc.attach(ticket)
    first = acc.take(now=0.0)
    assert first is not None and first.tickets == []
    second = acc.take(now=0.0, flush=True)
    assert second is not None and second.tickets == [ticket]
    for t in second.tickets:
        t.part_done()
    assert done == ["acked"]


def test_ticket_fires_only_after_every_part() -> None:
    done: list[int] = []
    ticket = Ticket(3, lambda: done.append(1))
    ticket.part_done()
    ticket.part_done()
    assert done == []
    ticket.part_done()
    assert done == [1]
