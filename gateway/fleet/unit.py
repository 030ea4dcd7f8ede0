"""A telematics unit's core: recording, login, flash storage, ACK bookkeeping and resends. Pure.

A unit is a sans-I/O state machine driven by its connection (h11 style): every method takes the
monotonic time ``now`` and returns the bytes to write, and ``close_reason`` tells the connection
to hang up. Frames wait in ``flash`` (bounded, oldest dropped first, as a unit's storage does)
until a connection can take them, and stay held until the gateway ACKs them; a frame is resent
byte for byte after ``ack_timeout_s`` and on every new connection. ``protocol_units.py`` holds
what differs per protocol (framing, login, windows, heartbeats).
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

from gateway.fleet.model import Fault, Vehicle, VehicleState
from gateway.fleet.stats import CodecStats

# GNSS receivers and BMS summaries update about once a second; frames sent faster repeat the
# latest sample with a new timestamp and sequence number.
MODEL_STEP_S = 1.0


@dataclass(frozen=True, slots=True)
class UnitSettings:
    ack_timeout_s: float = 10.0  # EVB1 spec: resend after 10 s without an ACK
    window_frames: int = 64  # EVB1 frames in flight at once
    flash_frames: int = 1024  # frames (Teltonika: records) held before the oldest is dropped
    heartbeat_s: float = 30.0
    cells_s: float = 60.0  # EVB1 CELLS frame period
    packet_records: int = 20  # Teltonika records per AVL packet at most
    keepalive_s: float = 30.0  # Teltonika 0xFF after this long without a write
    missed_heartbeats: int = 3  # GT06: reconnect after this many unanswered heartbeats


class Pending:
    """A frame in flash or awaiting its ACK. ``key``: EVB1 seq, GT06 serial."""

    __slots__ = ("first_sent", "key", "kind", "last_sent", "payload", "records")

    def __init__(self, payload: bytes, key: int, kind: int, records: int = 1) -> None:
        self.payload = payload
        self.key = key
        self.kind = kind
        self.records = records
        self.first_sent = 0.0
        self.last_sent = 0.0


class DeviceUnit:
    """What the three protocols share: sampling, login, flash, ACK bookkeeping, counters.

    ``flash`` holds recorded frames (Teltonika: records) not yet written; ``waiting`` the written
    frames that await their ACK, keyed by seq/serial and ordered by their last write.
    """

    codec: ClassVar[str]

    def __init__(
        self,
        device_id: str,
        vehicle: Vehicle,
        stats: CodecStats,
        *,
        settings: UnitSettings,
        rng: random.Random,
        epoch_offset_s: float,
    ) -> None:
        self.device_id = device_id
        self.vehicle = vehicle
        self.stats = stats
        self.settings = settings
        self._rng = rng
        self._epoch_offset_s = epoch_offset_s  # wall clock = now + offset
        self.started = False
        self.producing = True
        self.logged_in = False
        self.close_reason: str | None = None
        self.state: VehicleState | None = None
        self.flash: deque[Pending] = deque()
        self.waiting: dict[int, Pending] = {}
        self._login_deadline = math.inf
        self._next_step = 0.0
        self._next_heartbeat = math.inf
        self._started_at = 0.0
        self._last_write = 0.0
        self._init_protocol()

    # -- driven by the fleet's clock --

    def start(self, now: float) -> None:
        """The unit powers on: it records from now on, connected or not."""
        self.started = True
        self._started_at = now
        self._step(now)

    def sample(self, now: float) -> None:
        """One period of ``--rate``: record a frame into flash (the connection pumps it)."""
        if not (self.producing and self.started):
            return
        if now >= self._next_step:
            self._step(now)
        self._record(now)

    def _step(self, now: float) -> None:
        self._next_step = now + MODEL_STEP_S
        state = self.state = self.vehicle.step(now + self._epoch_offset_s)
        self._encode(state)
        for fault in state.faults:
            self.stats.faults += 1
            self._fault(state, fault)

    # -- driven by the connection --

    def connected(self, now: float) -> list[bytes]:
        """A new connection: the login to write first."""
        self.close_reason = None
        self.logged_in = False
        self._login_deadline = now + self.settings.ack_timeout_s
        self._last_write = now
        return [self._login()]

    def received(self, data: bytes, now: float) -> list[bytes]:
        """Bytes from the gateway: match the ACKs; return what to write next."""
        raise NotImplementedError

    def pump(self, now: float) -> list[bytes]:
        """Timers and queued frames: what the connection should write now."""
        if not self.logged_in:
            if now >= self._login_deadline:
                self._fail("login not answered", refused=False)
            return []
        out: list[bytes] = []
        if self.producing and now >= self._next_heartbeat:
            self._next_heartbeat = now + self.settings.heartbeat_s
            self._heartbeat(now)
        if self.waiting:
            self._resend_expired(now, out)
        if self.close_reason is None and self.flash:
            self._send_queued(now, out)
        if out:
            self._last_write = now
        return out

    def disconnected(self) -> None:
        """The connection is gone: everything unACKed is resent first on the next one."""
        self.logged_in = False
        self._login_deadline = math.inf
        self._next_heartbeat = math.inf
        for pending in self.waiting.values():
            pending.last_sent = -math.inf

    def finish(self) -> None:
        """The run is over: count what never got its ACK and what never left flash."""
        self.stats.unacked += len(self.waiting)
        self.stats.unsent += len(self.flash)

    @property
    def idle(self) -> bool:
        """Nothing is waiting for an ACK or for a connection."""
        return not self.waiting and not self.flash

    # -- shared steps --

    def _logged_in(self, now: float) -> None:
        self.logged_in = True
        self._login_deadline = math.inf
        self._next_heartbeat = now + self._first_heartbeat_s()
        self.stats.logins += 1

    def _first_heartbeat_s(self) -> float:
        return self._rng.uniform(0.5, 1.0) * self.settings.heartbeat_s

    def _fail(self, reason: str, *, refused: bool) -> None:
        self.close_reason = reason
        self._login_deadline = math.inf
        self.stats.connect_errors += 1
        if refused:
            self.stats.login_refused += 1

    def _first_send(self, pending: Pending, now: float, expects_ack: bool) -> None:
        pending.first_sent = pending.last_sent = now
        stats = self.stats
        stats.sent += 1
        stats.records += pending.records
        if expects_ack:
            self.waiting[pending.key] = pending
        else:
            stats.no_ack += 1
        if stats.on_sent is not None:
            stats.on_sent(self.codec, self.device_id, pending.payload)

    def _acked(self, key: int, kind: int, now: float) -> bool:
        """Settle the frame this ACK names; ``False`` if none matches (a late or stray ACK)."""
        pending = self.waiting.get(key)
        stats = self.stats
        if pending is None or pending.kind != kind:
            stats.stray_acks += 1
            return False
        del self.waiting[key]
        stats.acked += 1
        stats.latency.add(now - pending.first_sent)
        if stats.on_acked is not None:
            stats.on_acked(self.codec, self.device_id, pending.payload)
        return True

    def _store(self, pending: Pending, *, urgent: bool = False) -> None:
        flash = self.flash
        if len(flash) >= self.settings.flash_frames:
            flash.popleft()
            self.stats.dropped += 1
        if urgent:  # faults and heartbeats go before the backlog
            flash.appendleft(pending)
        else:
            flash.append(pending)

    def _overdue(self, now: float) -> list[Pending]:
        """Frames whose ACK is overdue, moved to the end so ``waiting`` stays in send order."""
        deadline = now - self.settings.ack_timeout_s
        waiting = self.waiting
        expired: list[Pending] = []
        for pending in waiting.values():
            if pending.last_sent > deadline:
                break
            expired.append(pending)
        for pending in expired:
            del waiting[pending.key]
            waiting[pending.key] = pending
        return expired

    def _resend_expired(self, now: float, out: list[bytes]) -> None:
        self._resend(self._overdue(now), now, out)

    def _resend(self, expired: list[Pending], now: float, out: list[bytes]) -> None:
        for pending in expired:
            pending.last_sent = now
            self.stats.resent += 1
            out.append(self._wire(pending, resend=True))

    def _wire(self, pending: Pending, *, resend: bool) -> bytes:
        """The bytes that carry a frame: the frame itself, or an envelope (an MQTT PUBLISH)."""
        return pending.payload

    def _expects_ack(self, pending: Pending) -> bool:
        """Whether the protocol answers this frame (GT06 locations get no reply)."""
        return True

    def _send_queued(self, now: float, out: list[bytes]) -> None:
        """Write flash frames, oldest first (protocols bound how many)."""
        flash = self.flash
        while flash:
            pending = flash.popleft()
            self._first_send(pending, now, expects_ack=self._expects_ack(pending))
            out.append(self._wire(pending, resend=False))

    # -- per protocol --

    def _init_protocol(self) -> None:
        raise NotImplementedError

    def _login(self) -> bytes:
        raise NotImplementedError

    def _encode(self, state: VehicleState) -> None:
        """Pre-encode what the frames of this sample share."""
        raise NotImplementedError

    def _record(self, now: float) -> None:
        raise NotImplementedError

    def _fault(self, state: VehicleState, fault: Fault) -> None:
        raise NotImplementedError

    def _heartbeat(self, now: float) -> None:
        raise NotImplementedError
