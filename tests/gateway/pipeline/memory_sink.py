"""An in-memory sink for pipeline and protocol tests: records out, no files, and the test decides
when each stream's batches are written, lost or failed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.common.sink import SinkError

STREAMS = ("raw", "parsed", "errors")


class MemorySink:
    """Writes a stream's batch while its gate is open (all open unless ``gated``); records of a
    stream in ``lose`` are dead-lettered instead; ``fail`` raises ``SinkError`` that many times.
    ``writes`` counts the writes begun per stream (waiting at the gate included)."""

    def __init__(self, *, gated: bool = False) -> None:
        self.gates = {stream: asyncio.Event() for stream in STREAMS}
        if not gated:
            for gate in self.gates.values():
                gate.set()
        self.records: dict[str, list[bytes]] = {stream: [] for stream in STREAMS}
        self.keys: dict[str, list[str]] = {stream: [] for stream in STREAMS}
        self.lose: set[str] = set()
        self.fail = 0
        self.writes = dict.fromkeys(STREAMS, 0)

    async def write(self, stream: str, records: list[bytes], keys: list[str]) -> list[int]:
        self.writes[stream] += 1
        await self.gates[stream].wait()
        if self.fail:
            self.fail -= 1
            raise SinkError("injected failure")
        if stream in self.lose:
            return list(range(len(records)))
        self.records[stream] += records
        self.keys[stream] += keys
        return []


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Let the writer tasks run until ``condition`` holds (a bound, not a timed assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)
