"""The accumulator: group commit, count and bytes limits, and ticket placement."""

from __future__ import annotations

from gateway.common.tickets import Outcome, Ticket
from gateway.pipeline.accumulator import Accumulator


def test_group_commit_writes_at_once_what_arrived_during_the_last_write() -> None:
    """A batch is due as soon as it opens, and what arrives while the writer is busy is the
    next batch, still bounded by max_records."""
    acc = Accumulator(max_records=3, max_bytes=10_000)
    assert acc.take() is None
    assert acc.add(b"a", "k", None) is True  # opened: the writer must look
    first = acc.take()
    assert first is not None and first.records == [b"a"] and first.size_bytes == 2
    wakes = [acc.add(record, "k", None) for record in (b"b", b"c", b"d", b"e")]
    assert wakes == [True, False, False, True]  # while ``first`` is being written
    second, third = acc.take(), acc.take()
    assert second is not None and second.records == [b"b", b"c", b"d"]
    assert third is not None and third.records == [b"e"]
    assert acc.take() is None


def test_count_and_bytes_limits_close_batches() -> None:
    acc = Accumulator(max_records=3, max_bytes=100)
    for i in range(3):
        acc.add(bytes([i]), "k", None)
    full = acc.take()
    assert full is not None and len(full.records) == 3
    acc.add(b"x" * 60, "k", None)
    acc.add(b"y" * 60, "k", None)  # would pass 100 bytes: starts a new batch
    first, second = acc.take(), acc.take()
    assert first is not None and first.records == [b"x" * 60]
    assert second is not None and second.records == [b"y" * 60]
    assert acc.take() is None


def test_oversize_record_still_gets_a_batch_of_its_own() -> None:
    acc = Accumulator(max_records=10, max_bytes=100)
    acc.add(b"z" * 500, "k", None)
    acc.add(b"a", "k", None)
    batch = acc.take()
    assert batch is not None and batch.records == [b"z" * 500]


def test_keys_and_tickets_run_parallel_to_records() -> None:
    acc = Accumulator(max_records=2, max_bytes=10_000)
    done = Outcomes()
    ticket = Ticket(done, "acked", pending=3)
    for record in (b"r1", b"r2", b"r3"):  # one frame's records spanning two batches
        acc.add(record, "dev-1", ticket)
    first = acc.take()
    second = acc.take()
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
