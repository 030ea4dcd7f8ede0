"""Each device connection's own reading flags, beside the process-wide memory budget
(:class:`~gateway.pipeline.flow_control.FlowControl`) that pauses them all."""

from __future__ import annotations

import asyncio

import msgspec


class ReadFlow(msgspec.Struct, gc=False):
    """Why one connection's socket is not read, as idempotent flags (uvicorn's per-connection
    ``FlowControl``): ``paused`` by the memory budget above, ``held`` by the protocol while it
    waits (an MQTT password check), ``stopped`` at shutdown. Reading resumes once none holds.

    The connection passes its transport in rather than the flags holding it: plain flags need
    no cyclic GC tracking (40 bytes), made only once a connection is paused, held or stopped.
    """

    paused: bool = False
    held: bool = False
    stopped: bool = False

    def pause(self, transport: asyncio.Transport | None) -> None:
        if not self.paused and transport is not None:
            self.paused = True
            transport.pause_reading()

    def hold(self, transport: asyncio.Transport | None) -> None:
        self.held = True
        if transport is not None and not self.paused:
            transport.pause_reading()

    def stop(self, transport: asyncio.Transport | None) -> None:
        if not self.stopped and transport is not None:
            self.stopped = True
            if not self.paused:
                transport.pause_reading()

    def resume(self, transport: asyncio.Transport | None) -> None:
        """Read the socket again unless something still holds it."""
        if not (self.paused or self.held or self.stopped) and transport is not None:
            transport.resume_reading()
