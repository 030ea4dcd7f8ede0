"""Each target's cursor in ``notifications/``: the last notification of its contiguous settled
prefix (delivered or dead-lettered, in submission order), kept in the data directory so that a
restart re-queues what a crash left unsettled.

The prefix, not the last settled one: a partly failed SNS batch settles later notifications
before earlier ones, and a cursor past an unsettled notification would lose it in a crash.
Everything after the cursor is sent again after a crash, some of it a second time: delivery is
at least once, and receivers and SNS FIFO deduplicate on the notification ``id``.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable
from pathlib import Path

import msgspec
import structlog

from gateway.common.disk import fsync_dir
from gateway.notify.journal import Position
from gateway.notify.queue import Outgoing

log = structlog.get_logger("gateway.notify")


class SettledPrefix:
    """One target's notifications in submission order, until they and all before them settle."""

    __slots__ = ("_pending", "position")

    def __init__(self, position: Position) -> None:
        self.position = position
        self._pending: deque[Outgoing] = deque()

    def track(self, item: Outgoing) -> None:
        self._pending.append(item)

    def settle(self, items: Iterable[Outgoing]) -> bool:
        """Mark ``items`` settled; True when the position moved."""
        for item in items:
            item.settled = True
        pending = self._pending
        moved = False
        while pending and pending[0].settled:
            item = pending.popleft()
            self.position = Position(item.file, item.note.id)
            moved = True
        return moved


class CursorFile:
    """``{target: {"file": …, "id": …}}`` as JSON, replaced whole (write, fsync, rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._decoder = msgspec.json.Decoder(dict[str, Position])

    def load(self) -> dict[str, Position]:
        """The saved positions; none when there is no file yet or it cannot be read."""
        try:
            return self._decoder.decode(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("notification cursors unreadable; starting at the end", error=str(exc))
            return {}

    def save(self, positions: dict[str, Position]) -> None:
        """Raises OSError."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as file:
            file.write(msgspec.json.encode(positions))
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self.path)
        # The rename must be durable too: a first cursor lost in a crash would make the next
        # start begin at the end, past what this run left unsettled.
        fsync_dir(self.path.parent)
