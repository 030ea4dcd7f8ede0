"""End-to-end acknowledgement of one frame: the device's reply waits for every record of it.

A frame's records go to up to three streams (raw, parsed, errors). Its ticket counts the records
still to be written; when the last one is written the callback sends the reply. A record that is
given up on (dead-lettered) fails the ticket: that frame is never ACKed and the device resends it
(Vector's end-to-end acknowledgements; aiokafka's separate "accepted" and "delivered" futures).
A callback that keeps state about the frame (MQTT QoS 2: "this packet id is being stored") is
told of the failure too, through its ``on_fail`` method, so that the resend is taken afresh.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec


class Ticket(msgspec.Struct, gc=False):
    """``on_done(*args)`` runs once all ``pending`` parts are done, unless one failed.

    Not tracked by the cyclic GC, and called with ``args`` rather than through a ``partial``:
    one ticket lives per frame in flight (tens of thousands under load), and a tracked ticket
    and partial per frame made the full collections cost ~15 % of the gateway's CPU. Safe as
    long as a ticket is freed by its reference count: it is dropped with its batch once written,
    and ``on_done`` must not refer back to the ticket (a cycle through it would never be freed).
    """

    pending: int
    on_done: Callable[..., object]
    args: tuple[Any, ...] = ()
    failed: bool = False

    def part_done(self) -> None:
        self.pending -= 1
        if self.pending == 0 and not self.failed:
            self.on_done(*self.args)

    def fail(self) -> None:
        """One record of the frame is lost to the sink: the device must not be ACKed.

        The first failure calls ``on_done.on_fail(*args)`` if ``on_done`` has that method. Looked
        up here, on the rare failure, rather than kept in a field: the pipeline builds a ticket
        per frame from ``on_done`` alone, and the success path stays as it is.
        """
        if not self.failed:
            self.failed = True
            on_fail = getattr(self.on_done, "on_fail", None)
            if on_fail is not None:
                on_fail(*self.args)
