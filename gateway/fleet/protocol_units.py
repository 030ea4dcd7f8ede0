"""The units of the protocols: what EVB1, Teltonika, GT06 and AIS-140 devices write and expect.

Each subclass of :class:`DeviceUnit` says how its protocol logs in, frames a sample, a fault and
a heartbeat, reads the gateway's replies and bounds what it has in flight.
"""

from __future__ import annotations

import math

from gateway.fleet import encoders as enc
from gateway.fleet.model import Fault, VehicleState
from gateway.fleet.replies import Evb1AckReader, Gt06ReplyReader, TeltonikaAckReader
from gateway.fleet.unit import DeviceUnit, Pending


class Evb1Unit(DeviceUnit):
    """EVB1 over TCP: LOGIN, then TELEMETRY at the rate, HEARTBEAT, FAULT and CELLS frames,
    pipelined up to ``window_frames`` un-ACKed frames matched to their ACKs by seq."""

    codec = "evb1"

    def _init_protocol(self) -> None:
        self._seq = self._rng.randrange(0x10000)
        self._login_seq = -1
        self._tail = b""
        self._acks = Evb1AckReader()
        self._next_cells = math.inf

    def start(self, now: float) -> None:
        super().start(now)
        self._next_cells = now + self._rng.uniform(0.0, self.settings.cells_s)

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFF
        return seq

    def connected(self, now: float) -> list[bytes]:
        self._acks = Evb1AckReader()
        return super().connected(now)

    def _login(self) -> bytes:
        self._login_seq = self._next_seq()
        return enc.evb1_login(self._login_seq, self.device_id)

    def received(self, data: bytes, now: float) -> list[bytes]:
        for seq, acked_type in self._acks.feed(data):
            if self.logged_in:
                self._acked(seq, acked_type, now)
            elif seq == self._login_seq and acked_type == enc.Evb1Type.LOGIN:
                self._logged_in(now)
        return self.pump(now) if self.logged_in else []

    def _encode(self, state: VehicleState) -> None:
        self._tail = enc.evb1_telemetry_tail(state)

    def _record(self, now: float) -> None:
        wall = now + self._epoch_offset_s
        seq = self._next_seq()
        frame = enc.evb1_telemetry(seq, wall, self._tail)
        self._store(Pending(frame, seq, enc.Evb1Type.TELEMETRY))
        if now >= self._next_cells:
            self._next_cells = now + self.settings.cells_s
            seq = self._next_seq()
            frame = enc.evb1_cells(seq, wall, self.vehicle.cell_voltages_mv())
            self._store(Pending(frame, seq, enc.Evb1Type.CELLS))

    def _fault(self, state: VehicleState, fault: Fault) -> None:
        seq = self._next_seq()
        self._store(Pending(enc.evb1_fault(seq, fault), seq, enc.Evb1Type.FAULT), urgent=True)

    def _heartbeat(self, now: float) -> None:
        seq = self._next_seq()
        rssi = self.state.rssi_dbm if self.state is not None else -80
        uptime_s = now - self._started_at
        frame = enc.evb1_heartbeat(seq, now + self._epoch_offset_s, rssi, uptime_s)
        self._store(Pending(frame, seq, enc.Evb1Type.HEARTBEAT), urgent=True)

    def _send_queued(self, now: float, out: list[bytes]) -> None:
        flash, waiting, window = self.flash, self.waiting, self.settings.window_frames
        while flash and len(waiting) < window:
            pending = flash.popleft()
            self._first_send(pending, now, expects_ack=True)
            out.append(self._wire(pending, resend=False))


class TeltonikaUnit(DeviceUnit):
    """Teltonika FMB-style: IMEI login, then one Codec 8 packet in flight at a time; records
    made meanwhile wait in flash and leave together (up to ``packet_records``) in the next one.
    A count ACK that differs from the packet's records, or none in time, resends the packet."""

    codec = "teltonika"
    _PACKET = 0  # the one key of ``waiting``

    def _init_protocol(self) -> None:
        self._tail = b""
        self._reader = TeltonikaAckReader()

    def connected(self, now: float) -> list[bytes]:
        self._reader.reset()
        return super().connected(now)

    def _login(self) -> bytes:
        return enc.teltonika_login(self.device_id)

    def received(self, data: bytes, now: float) -> list[bytes]:
        login, counts = self._reader.feed(data)
        if login is False:
            self._fail("login refused (00)", refused=True)
            return []
        if login:
            self._logged_in(now)
        out: list[bytes] = []
        for count in counts:
            packet = self.waiting.get(self._PACKET)
            if packet is not None and count != packet.records:
                packet.last_sent = now
                self.stats.resent += 1
                out.append(packet.payload)
            else:
                self._acked(self._PACKET, enc.TELTONIKA_CODEC8, now)
        if self.logged_in:
            out += self.pump(now)
        return out

    def _first_heartbeat_s(self) -> float:
        return math.inf  # Codec 8 has no heartbeat frame; a lone 0xFF keeps an idle link up

    def _encode(self, state: VehicleState) -> None:
        self._tail = enc.teltonika_record_tail(state)

    def _record(self, now: float) -> None:
        record = enc.teltonika_record(now + self._epoch_offset_s, enc.PRIORITY_LOW, self._tail)
        self._store(Pending(record, 0, enc.PRIORITY_LOW))

    def _fault(self, state: VehicleState, fault: Fault) -> None:
        tail = enc.teltonika_record_tail(state, enc.FAULT_EVENT_IO[fault.kind])
        record = enc.teltonika_record(fault.ts, enc.PRIORITY_PANIC, tail)
        self._store(Pending(record, 0, enc.PRIORITY_PANIC), urgent=True)

    def _heartbeat(self, now: float) -> None:
        """Never due (see ``_first_heartbeat_s``)."""

    def pump(self, now: float) -> list[bytes]:
        out = super().pump(now)
        idle_s = now - self._last_write
        if self.logged_in and not out and self.idle and idle_s >= self.settings.keepalive_s:
            self._last_write = now
            out.append(enc.TELTONIKA_KEEPALIVE)
        return out

    def _send_queued(self, now: float, out: list[bytes]) -> None:
        if self.waiting:
            return
        flash = self.flash
        batch = [
            flash.popleft().payload for _ in range(min(len(flash), self.settings.packet_records))
        ]
        packet = Pending(
            enc.teltonika_packet(batch), self._PACKET, enc.TELTONIKA_CODEC8, len(batch)
        )
        self._first_send(packet, now, expects_ack=True)
        out.append(packet.payload)


class Gt06Unit(DeviceUnit):
    """Concox GT06: login 0x01, locations at the rate (never answered), status 0x13 as the
    heartbeat and alarms 0x16 (answered, matched by serial). Unanswered heartbeats and alarms are
    resent; after ``missed_heartbeats`` unanswered heartbeats the unit reconnects (doc 5.4).
    Units whose IMEI ends in an odd digit are newer models that send 0x22 locations (with ACC
    and mileage), the others the original 0x12: a fleet mixes both, as real ones do."""

    codec = "gt06"

    def _init_protocol(self) -> None:
        self._serial = self._rng.randrange(1, 0x10000)
        self._login_serial = -1
        self._tail = b""
        self._replies = Gt06ReplyReader()
        self._missed = 0
        newer = self.device_id[-1:].isdigit() and int(self.device_id[-1]) % 2 == 1
        self.location = enc.Gt06Protocol.LOCATION_2 if newer else enc.Gt06Protocol.LOCATION

    def _next_serial(self) -> int:
        serial = self._serial
        self._serial = (serial + 1) & 0xFFFF
        return serial

    def connected(self, now: float) -> list[bytes]:
        self._replies = Gt06ReplyReader()
        self._missed = 0
        return super().connected(now)

    def _login(self) -> bytes:
        self._login_serial = self._next_serial()
        return enc.gt06_login(self.device_id, self._login_serial)

    def _first_heartbeat_s(self) -> float:
        return 0.0  # the terminal reports its status right after the login

    def received(self, data: bytes, now: float) -> list[bytes]:
        for protocol, serial in self._replies.feed(data):
            if not self.logged_in:
                if protocol == enc.Gt06Protocol.LOGIN and serial == self._login_serial:
                    self._logged_in(now)
            elif self._acked(serial, protocol, now) and protocol == enc.Gt06Protocol.STATUS:
                self._missed = 0
        return self.pump(now) if self.logged_in else []

    def _encode(self, state: VehicleState) -> None:
        newer = self.location == enc.Gt06Protocol.LOCATION_2
        self._tail = enc.gt06_tail_2(state) if newer else enc.gt06_tail(state)

    def _record(self, now: float) -> None:
        serial = self._next_serial()
        frame = enc.gt06_location(now + self._epoch_offset_s, self._tail, serial, self.location)
        self._store(Pending(frame, serial, self.location))

    def _fault(self, state: VehicleState, fault: Fault) -> None:
        serial = self._next_serial()
        frame = enc.gt06_alarm(state, fault, serial)
        self._store(Pending(frame, serial, enc.Gt06Protocol.ALARM), urgent=True)

    def _heartbeat(self, now: float) -> None:
        if self.state is None:
            return
        serial = self._next_serial()
        frame = enc.gt06_status(self.state, serial)
        self._store(Pending(frame, serial, enc.Gt06Protocol.STATUS), urgent=True)

    def _resend_expired(self, now: float, out: list[bytes]) -> None:
        expired = self._overdue(now)
        # A heartbeat not answered on this connection (not one carried over from the last).
        self._missed += sum(
            1 for p in expired if p.kind == enc.Gt06Protocol.STATUS and p.last_sent > -math.inf
        )
        if self._missed >= self.settings.missed_heartbeats:
            self.close_reason = f"{self._missed} heartbeat replies missing"
            return
        self._resend(expired, now, out)

    def _expects_ack(self, pending: Pending) -> bool:
        return pending.kind != self.location


class Ais140Unit(DeviceUnit):
    """AIS-140 (ARAI): a login, then tracking packets (NR) at the rate, health packets (HP) as
    the heartbeat and EV faults as emergency (EA) or alert packets, each ``$...*hh`` and CR LF.
    The standard defines no reply, so nothing is awaited or resent: a packet is sent once."""

    codec = "ais140"

    def _init_protocol(self) -> None:
        self._tail = ""
        self._frame_number = 0

    def connected(self, now: float) -> list[bytes]:
        out = super().connected(now)
        self._logged_in(now)  # no answer comes: the unit carries on after its login
        return out

    def _login(self) -> bytes:
        return enc.ais140_login(self.device_id, self.state) + b"\r\n"

    def received(self, data: bytes, now: float) -> list[bytes]:
        return self.pump(now)  # the gateway sends nothing; commands are not simulated

    def _encode(self, state: VehicleState) -> None:
        self._tail = enc.ais140_tail(state)

    def _next_frame_number(self) -> int:
        self._frame_number += 1
        return self._frame_number

    def _record(self, now: float) -> None:
        number = self._next_frame_number()
        frame = enc.ais140_tracking(self.device_id, now + self._epoch_offset_s, self._tail, number)
        self._store(Pending(frame, number, 0))

    def _fault(self, state: VehicleState, fault: Fault) -> None:
        kind = enc.AIS140_FAULTS[fault.kind]
        tail = enc.ais140_tail(state, emergency=kind[0] == "EA")
        number = self._next_frame_number()
        frame = enc.ais140_tracking(self.device_id, fault.ts, tail, number, kind)
        self._store(Pending(frame, number, 0), urgent=True)

    def _heartbeat(self, now: float) -> None:
        if self.state is None:
            return
        number = self._next_frame_number()
        self._store(Pending(enc.ais140_health(self.device_id, self.state), number, 0), urgent=True)

    def _wire(self, pending: Pending, *, resend: bool) -> bytes:
        return pending.payload + b"\r\n"

    def _expects_ack(self, pending: Pending) -> bool:
        return False


UNITS: dict[str, type[DeviceUnit]] = {
    u.codec: u for u in (Evb1Unit, TeltonikaUnit, Gt06Unit, Ais140Unit)
}
