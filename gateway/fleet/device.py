"""One simulated device on the network: its TCP connection, reconnects and flow control.

The protocol logic is the unit's (``unit.py``, ``protocol_units.py``: sans-I/O); this module
only moves its bytes. Callbacks are synchronous (``asyncio.Protocol``); the only coroutine is
the connect attempt. Units get ``time.monotonic()``, read per event: uvloop's ``loop.time()``
is cached per loop iteration at millisecond resolution, too coarse for loopback ACK latencies.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import cast

from gateway.common.backoff import Backoff
from gateway.fleet.unit import DeviceUnit

# Reconnect backoff (gateway/common/backoff.py: doubling, jittered to 50-100 %, so that a fleet
# dropped at once does not come back in lockstep), reset by a login.
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
# Bytes the kernel may not take before the protocol is paused and frames wait in flash.
WRITE_HIGH_WATER_BYTES = 64 * 1024


class DeviceConnection(asyncio.Protocol):
    """The asyncio side of one connection; everything is forwarded to its device."""

    def __init__(self, device: SimulatedDevice) -> None:
        self._device = device

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._device.connection_made(cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        self._device.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._device.connection_lost()

    def pause_writing(self) -> None:
        self._device.writable = False

    def resume_writing(self) -> None:
        self._device.resume_writing()


class SimulatedDevice:
    """A unit plus its socket: connects, feeds the unit, writes what it returns, reconnects."""

    __slots__ = (
        "_address",
        "_backoff",
        "_connect_timeout_s",
        "_handle",
        "_loop",
        "_stopped",
        "_task",
        "_transport",
        "unit",
        "writable",
    )

    def __init__(
        self,
        unit: DeviceUnit,
        address: tuple[str, int],
        loop: asyncio.AbstractEventLoop,
        rng: random.Random,
        *,
        connect_timeout_s: float,
    ) -> None:
        self.unit = unit
        self._address = address
        self._loop = loop
        self._connect_timeout_s = connect_timeout_s
        self._backoff = Backoff(BACKOFF_BASE_S, BACKOFF_MAX_S, rng)
        self._transport: asyncio.Transport | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self.writable = False

    @property
    def connected(self) -> bool:
        return self._transport is not None

    def start(self, delay_s: float) -> None:
        """Power on after ``delay_s``: start recording and connect."""
        self._handle = self._loop.call_later(delay_s, self._power_on)

    def stop(self) -> asyncio.Task[None] | None:
        """Hang up for good (end of the run); returns a connect attempt it cancelled."""
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
        task = self._task
        if task is not None:
            task.cancel()
        if self._transport is not None:
            self._transport.close()
        return task

    def tick(self) -> None:
        """One period of the rate: record, then write what the connection can take."""
        now = time.monotonic()
        unit = self.unit
        unit.sample(now)
        if self.writable:
            out = unit.pump(now)
            if out or unit.close_reason is not None:
                self._write(out)

    def housekeep(self) -> None:
        """Timers only (resends, heartbeats, login timeout), also when the rate is slow."""
        if self.writable:
            out = self.unit.pump(time.monotonic())
            if out or self.unit.close_reason is not None:
                self._write(out)

    def _power_on(self) -> None:
        self._handle = None
        self.unit.start(time.monotonic())
        self._connect()

    def _connect(self) -> None:
        self._handle = None
        if not self._stopped:
            self._task = self._loop.create_task(self._open())

    async def _open(self) -> None:
        host, port = self._address
        try:
            await asyncio.wait_for(
                self._loop.create_connection(lambda: DeviceConnection(self), host, port),
                self._connect_timeout_s,
            )
        except (OSError, TimeoutError):
            self.unit.stats.connect_errors += 1
            self._retry()
        finally:
            self._task = None

    def _retry(self) -> None:
        if self._stopped:
            return
        self._handle = self._loop.call_later(self._backoff.next_delay_s(), self._connect)

    # -- from DeviceConnection --

    def connection_made(self, transport: asyncio.Transport) -> None:
        if self._stopped:
            transport.close()
            return
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER_BYTES)
        self._transport = transport
        self.writable = True
        self._write(self.unit.connected(time.monotonic()))

    def data_received(self, data: bytes) -> None:
        unit = self.unit
        was_logged_in = unit.logged_in
        self._write(unit.received(data, time.monotonic()))
        if unit.logged_in and not was_logged_in:
            self._backoff.reset()

    def connection_lost(self) -> None:
        self._transport = None
        self.writable = False
        self.unit.disconnected()
        if not self._stopped:
            self.unit.stats.disconnects += 1
            self._retry()

    def resume_writing(self) -> None:
        self.writable = True
        self._write(self.unit.pump(time.monotonic()))

    def _write(self, out: list[bytes]) -> None:
        transport = self._transport
        # Once closing, nothing more is written (asyncio would warn): what a unit still meant to
        # send is unACKed and goes out again on the next connection.
        if transport is None or transport.is_closing():
            return
        if out:
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self.unit.close_reason is not None:
            self.writable = False
            transport.close()
