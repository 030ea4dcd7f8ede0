"""End-to-end acknowledgement of one frame: the device's reply waits for every part of it.

A frame's records go to up to three streams (raw, parsed, errors). Its ticket counts the writes
still owed; when the last one succeeds the callback sends the reply. A write that fails is
retried and its tickets simply stay open: no ACK for data that is not safe (Vector's end-to-end
acknowledgements; aiokafka's separate "accepted" and "delivered" futures).
"""

from __future__ import annotations

from collections.abc import Callable


class Ticket:
    __slots__ = ("_on_done", "pending")

    def __init__(self, parts: int, on_done: Callable[[], None]) -> None:
        self.pending = parts
        self._on_done = on_done

    def part_done(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self._on_done()
