"""A frame's ticket alone: its finalizer is told the outcome once, lost as soon as a record is."""

from __future__ import annotations

from gateway.common.tickets import Outcome, Ticket


def test_a_lost_record_settles_the_frame_as_lost_at_once_and_only_once() -> None:
    done = Outcomes()
    ticket = Ticket(done, "frame", pending=3)
    ticket.part_done()
    ticket.part_lost()
    assert done == [("frame", Outcome.LOST)]  # not after the other records: nobody waits
    ticket.part_lost()
    ticket.part_done()
    ticket.part_done()
    assert done == [("frame", Outcome.LOST)]


def test_ticket_fires_only_after_every_part() -> None:
    done = Outcomes()
    ticket = Ticket(done, "frame", pending=3)
    ticket.part_done()
    ticket.part_done()
    assert done == []
    ticket.part_done()
    assert done == [("frame", Outcome.WRITTEN)]


class Outcomes(list[tuple[str, Outcome]]):
    """A finalizer that keeps what it is told."""

    def settled(self, note: str, outcome: Outcome) -> None:
        self.append((note, outcome))
