"""End-to-end acknowledgement of one frame: the device's reply waits for every record of it.

A frame's records go to up to three streams (raw, parsed, errors). Its ticket counts the records
still to be written; when the last one is written the callback sends the reply. A record that is
given up on (dead-lettered) fails the ticket: that frame is never ACKed and the device resends it
(Vector's end-to-end acknowledgements; aiokafka's separate "accepted" and "delivered" futures).
"""

from __future__ import annotations

from collections.abc import Callable


class Ticket:
    __slots__ = ("_on_done", "failed", "pending")

    def __init__(self, parts: int, on_done: Callable[[], None]) -> None:
        self.pending = parts
        self.failed = False
        self._on_done = on_done

    def part_done(self) -> None:
        self.pending -= 1
        if self.pending == 0 and not self.failed:
            self._on_done()

    def fail(self) -> None:
        """One record of the frame is lost to the sink: the device must not be ACKed."""
        self.failed = True
