"""End-to-end acknowledgement of one frame: whoever waits for it is told its outcome, once.

A frame's records go to up to four streams (raw, parsed, errors, notifications). Whoever owes
the device a reply (a connection's :class:`~gateway.transport.reply_order.ReplyOrder`, an MQTT
session's QoS 2 exchange, a bridge delivery) hands ``Pipeline.accept`` a :class:`Ticket`: its
:class:`Finalizer` and the note it needs to act (which reply, in which place). The pipeline counts
the frame's records on the ticket and settles one per record written; the finalizer is told
exactly once: :attr:`Outcome.WRITTEN` when the last one is written, or :attr:`Outcome.LOST` as soon
as one is given up on (dead-lettered) — that frame is never ACKed and the device resends it
(Vector's finalizers and their always-reported status; aiokafka's separate "accepted" and
"delivered" futures). After a batch's tickets are settled the pipeline tells its
:class:`BatchSettled` observers, so that the replies released leave in one write per connection.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Generic, Protocol, TypeVar

import msgspec

N = TypeVar("N")
N_contra = TypeVar("N_contra", contravariant=True)


class Outcome(IntEnum):
    """How a frame ended (Vector's ``EventStatus``: delivered or rejected)."""

    WRITTEN = 0  # every record is written under the listener's ACK policy: reply
    LOST = 1  # a record was given up on (dead-lettered): never reply, the device resends


class Finalizer(Protocol[N_contra]):
    """Whoever waits for frames: told each one's outcome once, with the note it left."""

    def settled(self, note: N_contra, outcome: Outcome) -> None: ...


class BatchSettled(Protocol):
    """Told after the pipeline settled the tickets of one written batch."""

    def batch_settled(self) -> None: ...


class Ticket(msgspec.Struct, Generic[N], gc=False):
    """One frame's acknowledgement: ``finalizer.settled(note, outcome)`` once, when settled.

    ``pending`` is set by the pipeline (the frame's record count) and counted down as they are
    written. Not tracked by the cyclic GC, and the note is plain data rather than a bound
    method or ``partial``: one ticket lives per frame in flight (tens of thousands under load),
    and a tracked ticket and partial per frame made the full collections cost ~15 % of the
    gateway's CPU. Safe as long as a ticket is freed by its reference count: it is dropped with
    its batch once written, and neither the finalizer nor the note may refer back to the ticket
    (a cycle through it would never be freed).
    """

    finalizer: Finalizer[N]
    note: N
    pending: int = 0
    settled: bool = False
    # Set by the pipeline under the ``delivered`` policy: a record is done once every remote
    # target of its stream confirmed it, not once journaled.
    remote: bool = False

    def part_done(self) -> None:
        """One record of the frame is written (or given up on, after :meth:`part_lost`)."""
        self.pending -= 1
        if self.pending == 0 and not self.settled:
            self.settled = True
            self.finalizer.settled(self.note, Outcome.WRITTEN)

    def part_lost(self) -> None:
        """One record of the frame is lost to the sink: the frame is settled as lost at once,
        so a connection stops waiting for its reply (the records still count down)."""
        if not self.settled:
            self.settled = True
            self.finalizer.settled(self.note, Outcome.LOST)
