"""A shipper's position in its stream's journal: one offset, saved whole (write, fsync, rename).

Everything before the offset was confirmed by the target; a restart resumes there. A crash loses
at most the moves since the last save: those records are shipped again, with the same ids.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import structlog

from gateway.common.disk import fsync_dir, make_dirs

log = structlog.get_logger("gateway.journal")


class Position(msgspec.Struct, frozen=True):
    offset: int


def cursor_path(data_dir: Path, prefix: str, target: str) -> Path:
    """Where the cursor of ``target`` over the series ``prefix`` is kept."""
    return data_dir / "cursors" / f"{prefix}.{target}.json"


class Cursor:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.saved: int | None = None  # the offset on disk, as far as this process knows
        self._decode = msgspec.json.Decoder(Position).decode

    def load(self) -> int | None:
        """The saved offset; None when there is none yet. Raises ``OSError`` or
        ``msgspec.DecodeError`` for one that cannot be read (the caller ships from the oldest
        segment then: sending again, never skipping)."""
        try:
            self.saved = self._decode(self.path.read_bytes()).offset
        except FileNotFoundError:
            return None
        return self.saved

    def save(self, offset: int) -> None:
        """Raises OSError."""
        make_dirs(self.path.parent, durable=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as file:
            file.write(msgspec.json.encode(Position(offset)))
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self.path)
        # The rename must be durable too, or a crash could bring back an older position.
        fsync_dir(self.path.parent)
        self.saved = offset

    def keep(self, offset: int) -> bool:
        """Save ``offset`` if it moved; True when it was saved now. A failed save is logged and
        tried again at the next call: it costs sending again what it did not record, no more."""
        if offset == self.saved:
            return False
        try:
            self.save(offset)
        except OSError as exc:
            log.warning("cannot save a cursor", file=str(self.path), error=str(exc))
            return False
        return True
