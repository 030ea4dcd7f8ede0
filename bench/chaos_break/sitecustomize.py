"""Deliberately broken gateways for the chaos run (``bench/chaos.py --break NAME``), which must
fail it: Python imports this module at start-up when this directory is on PYTHONPATH, and it
patches the journal or the shipper in that process only. No production code path knows of it.

- ``ack-before-fsync``: ``Journal.write`` returns at once (the frames' ACKs go out) and writes
  the batch ``DELAY_S`` later, in order: a SIGKILL meanwhile loses records devices saw ACKed.
- ``cursor-before-confirm``: the Kinesis shipper saves its cursor past a batch as soon as it has
  read it, before Kinesis confirmed it: a SIGKILL while Kinesis is down loses those records
  from the stream (the restarted shipper resumes past them).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

DELAY_S = 1.0


def _ack_before_fsync() -> None:
    from gateway.journal.store import Journal  # noqa: PLC0415

    write = Journal.write
    pending: dict[tuple[int, str], asyncio.Task[Any]] = {}

    async def later(
        previous: asyncio.Task[Any] | None,
        journal: Journal,
        stream: str,
        records: list[bytes],
        keys: list[str],
    ) -> None:
        await asyncio.sleep(DELAY_S)
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        await write(journal, stream, records, keys)

    async def early(
        journal: Journal, stream: str, records: list[bytes], keys: list[str]
    ) -> list[int]:
        key = (id(journal), stream)
        pending[key] = asyncio.get_running_loop().create_task(
            later(pending.get(key), journal, stream, records, keys)
        )
        return []

    Journal.write = early  # type: ignore[method-assign,assignment]


def _cursor_before_confirm() -> None:
    from gateway.sinks.shipper import Shipper  # noqa: PLC0415

    read = Shipper._read

    def read_and_save(shipper: Shipper, end: int) -> tuple[list[bytes], list[str], int]:
        records, keys, after = read(shipper, end)
        shipper._cursor.keep(after)  # as Shipper._save: a full disk must not end the process
        return records, keys, after

    Shipper._read = read_and_save  # type: ignore[method-assign,assignment]


_BREAKS = {"ack-before-fsync": _ack_before_fsync, "cursor-before-confirm": _cursor_before_confirm}
_broken = os.environ.get("CHAOS_BREAK")
if _broken in _BREAKS:
    _BREAKS[_broken]()
