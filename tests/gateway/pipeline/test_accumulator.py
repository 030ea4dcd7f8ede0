"""The accumulator with a fake clock: linger, count, bytes and ticket placement."""

from __future__ import annotations

from gateway.common.tickets import Outcome, Ticket
from gateway.pipeline.accumulator import Accumulator


def test_linger_makes_a_batch_due() -> None:
    acc = Accumulator(linger_s=0.05, max_records=10, max_bytes=10_000)
    assert acc.next_deadline() is None
    assert acc.add(b"a", "k", None, now=1.0) is True  # opened: the sender must arm its timer
    assert acc.add(b"b", "k", None, now=1.01) is False
    assert acc.next_deadline() == 1.05
    assert acc.take(now=1.04) is None
    batch = acc.take(now=1.05)
    assert batch is not None and batch.records == [b"a", b"b"] and batch.size_bytes == 4
    assert acc.take(now=9.0) is None and acc.next_deadline() is None


def test_group_commit_writes_at_once_what_arrived_during_the_last_write() -> None:
    """Linger 0, as the pipeline runs the local journal: a batch is due as soon as it opens, and
    what arrives while the writer is busy is the next batch, still bounded by max_records."""
    acc = Accumulator(linger_s=0.0, max_records=3, max_bytes=10_000)
    assert acc.add(b"a", "k", None, now=1.0) is True
    assert acc.next_deadline() == 1.0
    first = acc.take(now=1.0)
    assert first is not None and first.records == [b"a"]
    for record in (b"b", b"c", b"d", b"e"):  # while ``first`` is being written
        acc.add(record, "k", None, now=1.001)
    second, third = acc.take(now=1.002), acc.take(now=1.002)
    assert second is not None and second.records == [b"b", b"c", b"d"]
    assert third is not None and third.records == [b"e"]
    assert acc.take(now=1.002) is None and acc.next_deadline() is None


def test_count_and_bytes_limits_close_batches() -> None:
    acc = Accumulator(linger_s=10, max_records=3, max_bytes=100)
    for i in range(3):
        acc.add(bytes([i]), "k", None, now=0.0)
    assert acc.next_deadline() == 0.0  # full: ready at once
    full = acc.take(now=0.0)
    assert full is not None and len(full.records) == 3
    acc.add(b"x" * 60, "k", None, now=0.0)
    acc.add(b"y" * 60, "k", None, now=0.0)  # would pass 100 bytes: starts a new batch
    first = acc.take(now=0.0)
    assert first is not None and first.records == [b"x" * 60]
    assert acc.take(now=0.0) is None
    assert acc.take(now=0.0, flush=True) is not None


def test_oversize_record_still_gets_a_batch_of_its_own() -> None:
    acc = Accumulator(linger_s=10, max_records=10, max_bytes=100)
    acc.add(b"z" * 500, "k", None, now=0.0)
    batch = acc.take(now=0.0)
    assert batch is not None and batch.records == [b"z" * 500]


def test_keys_and_tickets_run_parallel_to_records() -> None:
    acc = Accumulator(linger_s=10, max_records=2, max_bytes=10_000)
    done = Outcomes()
    ticket = Ticket(done, "acked", pending=3)
    for record in (b"r1", b"r2", b"r3"):  # one frame's records spanning two batches
        acc.add(record, "dev-1", ticket, now=0.0)
    first = acc.take(now=0.0)
    second = acc.take(now=0.0, flush=True)
    assert first is not None and second is not None
    assert first.keys == ["dev-1", "dev-1"] and second.tickets == [ticket]
    for batch in (first, second):
        for t in batch.tickets:
            assert t is not None
            t.part_done()
    assert done == [("acked", Outcome.WRITTEN)]


class Outcomes(list[tuple[str, Outcome]]):
    """A finalizer that keeps what it is told."""

    def settled(self, note: str, outcome: Outcome) -> None:
        self.append((note, outcome))
