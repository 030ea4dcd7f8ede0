"""Settings of the journal: where it lives and how its segments rotate (``[sink.local]``, the
local output it has always been), and its disk budget and retention (``[journal]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from gateway.common.settings_base import Section


class LocalSinkSettings(Section):
    """Segments of JSON lines under ``data_dir``: raw/, parsed/, errors/, notifications/."""

    data_dir: Path = Path("data")
    rotate_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    rotate_age_s: float = Field(default=300.0, gt=0)
    # batch: fsync every batch before its frames count as journaled (what `journaled` promises
    # across power loss); never: leave it to the OS (survives a crash of the process only).
    fsync: Literal["batch", "never"] = "batch"
    # Test and chaos hook: while this file exists the journal stalls before each write, as a
    # slow or hung disk would (the backpressure test uses it; never set in production).
    stall_while_exists: Path | None = None


class JournalSettings(Section):
    """The disk budget of what is journaled and not yet shipped, and how long shipped
    segments stay (for ``gateway replay`` and ``gateway lake``)."""

    # Unshipped bytes (behind the slowest target of their stream) above which every reader
    # pauses, as the memory budget pauses them; they resume below 90 % of it.
    max_bytes: int = Field(default=8 * 1024**3, ge=1024 * 1024)
    # Free space on the data directory's filesystem to keep: below it shipped segments are
    # deleted, oldest first, however young; if that cannot make room, readers pause (a full
    # disk fails every journal write).
    min_free_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    # A segment is deleted once every shipper of its stream has passed it and it is older than
    # this. None: shipped segments stay until space runs short; a stream with no shipper
    # (local-only) is deleted only by this: its segments are the output.
    retain_s: float | None = Field(default=None, gt=0)
