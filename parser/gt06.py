"""Concox GT06 over TCP: framing, login and replies; packet contents are in ``gt06_packets``.

References are to the Concox "GPS Tracker Communication Protocol (GT06)" document ("doc"). A frame
is ``7878`` + 1-byte length (or ``7979`` + 2-byte length), protocol number, content, 2-byte serial,
2-byte CRC-ITU (CRC-16/X-25 over the length field through the serial) and ``0d0a``; the length
counts protocol number through CRC.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from parser.codec import CodecOptions
from parser.crc import crc16_x25
from parser.errors import DecodeError
from parser.events import Action, Event, Frame, Login, Reject
from parser.gt06_packets import LONG_REPLY, SHORT_REPLY, Gt06Protocol, PacketDecoder
from parser.records import AttrValue, Reading
from parser.resync import find_sync, garbage

# 7878 frames are at most 5 + 255 = 260 bytes; 7979 "information transmission" packets are
# longer but still small, so 1 KiB bounds any real frame with room to spare while capping what a
# hostile peer can make us buffer (and the tolerant end scan below) per connection.
DEFAULT_MAX_FRAME_BYTES = 1024
# The smallest frame: marker 2 + length 1 + protocol 1 + serial 2 + CRC 2 + 0d0a 2 (a reply).
_MIN_FRAME_BYTES = 10
# Protocol number + serial + CRC: the fewest bytes the length field can cover.
_MIN_BODY_BYTES = 5
# 0d0a pairs tried as the end of one frame before its start is given up. A real body holds the
# pair about once in 65536 / length frames, never several times, while a hostile stream dense in
# markers and 0d0a would otherwise cost a CRC per pair per start: ~150 us of CPU per byte
# uncapped, under 8 us with this cap (about 3 us is the floor: one bad_frame reject per byte).
_MAX_END_CANDIDATES = 4

_SHORT = b"\x78\x78"
_LONG = b"\x79\x79"
_MARKERS = (_SHORT, _LONG)
_STOP = b"\r\n"

_U16 = struct.Struct(">H")
# Compared with every frame's protocol number: reading an Enum member off its class runs Python
# code in 3.11 (~65 ns), a module constant does not.
_LOGIN = Gt06Protocol.LOGIN
_TIME_REQUEST = Gt06Protocol.TIME_REQUEST
_LOGIN_BYTES = 8  # terminal id, BCD (doc 5.1)
_LOGIN_EXTENDED_BYTES = 12  # + type id 2 + timezone/language 2 (GT06N / Jimi firmwares)


def reply_for(protocol: int, serial: bytes, content: bytes = b"", *, long: bool = False) -> bytes:
    """The server response to a packet, echoing protocol and serial: the short 7878 form unless
    ``long`` (AZ735 answers 7979 packets in kind); ``content`` sits between the two."""
    size = 5 + len(content)
    head = _U16.pack(size) if long else bytes((size,))
    body = head + bytes((protocol,)) + content + serial
    return (_LONG if long else _SHORT) + body + _U16.pack(crc16_x25(body)) + _STOP


def _header_bytes(frame: bytes) -> int:
    """Marker plus length field: 3 for 7878, 4 for 7979."""
    return 3 if frame[1] == 0x78 else 4


def _zone(name: str) -> tzinfo:
    # "UTC" needs no tz database; everything else must resolve now, not on the first frame.
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}") from exc


def _utc_datetime(ms: int) -> bytes:
    """YY MM DD hh mm ss in UTC, the content of the 0x8A time reply (JM-VL01 sheet 5.8)."""
    t = datetime.fromtimestamp(ms / 1000, UTC)
    return bytes((t.year - 2000, t.month, t.day, t.hour, t.minute, t.second))


class Gt06Codec:
    """Makes GT06 sessions and decodes GT06 frames; ``decode`` is pure."""

    name = "gt06"
    transports = frozenset({"tcp"})

    def __init__(self, options: CodecOptions) -> None:
        max_frame = options.max_frame_bytes or DEFAULT_MAX_FRAME_BYTES
        if max_frame < _MIN_FRAME_BYTES:
            raise ValueError(f"max_frame_bytes must be at least {_MIN_FRAME_BYTES}")
        self.max_frame_bytes = max_frame
        self.allowed_devices = options.allowed_devices
        # Only the 0x8A time reply reads it; without one that request goes unanswered.
        self.clock_ms = options.clock_ms
        # The device clock's zone (doc: GMT command); date-times are local to it.
        self._packets = PacketDecoder(_zone(options.timezone), options.variant)

    def session(self) -> Gt06Session:
        return Gt06Session(self)

    def decode(self, payload: bytes) -> tuple[Reading, ...]:
        """Readings of one whole, CRC-checked frame (start marker through 0d0a)."""
        if len(payload) < _MIN_FRAME_BYTES or payload[:2] not in _MARKERS:
            raise DecodeError("bad_body", f"not a GT06 frame ({len(payload)} bytes)")
        header = _header_bytes(payload)
        protocol = payload[header]
        content = payload[header + 1 : -6]
        if protocol == _LOGIN:
            return (_login(content)[1],)
        return self._packets.decode(protocol, content)

    def reply(self, frame: bytes, header: int) -> bytes:
        """What the terminal expects back for one framed packet (empty: nothing)."""
        protocol = frame[header]
        serial = frame[-6:-4]
        if protocol in SHORT_REPLY:
            return reply_for(protocol, serial)
        if protocol in LONG_REPLY:
            return reply_for(protocol, serial, long=True)
        if protocol == _TIME_REQUEST and self.clock_ms is not None:
            return reply_for(protocol, serial, _utc_datetime(self.clock_ms()))
        return b""


def _login(content: bytes) -> tuple[str, Reading]:
    """IMEI and reading of a login packet 0x01 (doc 5.1)."""
    size = len(content)
    if size < _LOGIN_BYTES:
        raise DecodeError("bad_body", f"login content is {size} bytes, not 8 or more")
    # The 15-digit IMEI is BCD-packed into 8 bytes behind a leading 0 nibble (doc 5.1.3).
    imei = content[:_LOGIN_BYTES].hex()[1:]
    attrs: dict[str, AttrValue] = {}
    if size >= _LOGIN_EXTENDED_BYTES:
        # Type id and timezone/language: kept raw, their encoding differs between firmwares.
        attrs = {"type_id": content[8:10].hex(), "tz_language": content[10:12].hex()}
    known = _LOGIN_EXTENDED_BYTES if size >= _LOGIN_EXTENDED_BYTES else _LOGIN_BYTES
    if size > known:
        attrs["extra"] = content[known:].hex()  # e.g. a type id without the timezone
    return imei, Reading(kind="login", ts_ms=None, attrs=attrs)


class Gt06Session:
    """One connection: frames the stream, checks CRCs, tracks the login, builds events.

    Framing tolerates a wrong length field (a real device quirk; Traccar scans for ``0d0a``): the
    frame ends at the first ``0d0a`` within ``max_frame_bytes`` of the start whose two preceding
    bytes are the CRC of what precedes them. The declared end is normally that first ``0d0a``; if it
    carries a bad CRC the declared frame is dropped (doc 4.6). A start with no such end within the
    bound, or after ``_MAX_END_CANDIDATES`` failed ones, is given up one byte at a time. Every
    decision depends only on bytes already seen, so any chunking of a stream yields the same events.
    """

    __slots__ = (
        "_closed",
        "_codec",
        "_device_id",
        "_max_frame",
        "_rest",
        "_scan_from",
        "_skipped",
        "_tried",
    )

    def __init__(self, codec: Gt06Codec) -> None:
        self._codec = codec
        self._max_frame = codec.max_frame_bytes
        self._device_id: str | None = None
        self._rest = b""  # an incomplete frame from its marker, or a partial marker
        self._skipped = 0  # length of the current run of non-frame bytes, not yet reported
        self._scan_from = 0  # offset in _rest of the first 0d0a not yet tried as a frame end
        self._tried = 0  # 0d0a pairs already tried (and failed) as its end
        self._closed = False

    @property
    def device_id(self) -> str | None:
        return self._device_id

    @property
    def buffered_bytes(self) -> int:
        return len(self._rest)

    def feed(self, data: bytes) -> list[Event]:
        if self._closed:
            return []
        buf = self._rest + data if self._rest else data
        end = len(buf)
        max_frame = self._max_frame
        # Progress of the end scan for a frame start held over from the previous feed.
        scan_from, tried_before = self._scan_from, self._tried
        self._scan_from = self._tried = 0
        events: list[Event] = []
        pos = 0
        while pos < end:
            marker = buf[pos : pos + 2]
            if marker not in _MARKERS:
                start, found = find_sync(buf, pos, _MARKERS)
                self._skipped += start - pos
                pos = start
                if not found:
                    break  # at most a partial marker is left
                marker = buf[pos : pos + 2]
            if self._skipped:
                events.append(garbage(self._skipped))
                self._skipped = 0
            header = 3 if marker == _SHORT else 4
            if end - pos < header:
                break
            length = buf[pos + 2] if header == 3 else _U16.unpack_from(buf, pos + 2)[0]
            declared = pos + header + length  # where the 0d0a should be
            limit = min(end, pos + max_frame)
            stop = buf.find(_STOP, max(pos + header + _MIN_BODY_BYTES, pos + scan_from), limit)
            scan_from = 0
            tried, tried_before = tried_before, 0
            crc = stored = -1
            while stop >= 0:
                crc = crc16_x25(buf[pos + 2 : stop - 2])
                stored = _U16.unpack_from(buf, stop - 2)[0]
                if crc == stored or stop == declared:
                    break
                tried += 1
                if tried == _MAX_END_CANDIDATES:
                    break
                stop = buf.find(_STOP, stop + 1, limit)
            if stop < 0 and limit - pos < max_frame:
                # Every 0d0a seen so far was tried; the next candidate may end at end - 1.
                self._scan_from = end - 1 - pos
                self._tried = tried
                break
            if stop < 0 or tried == _MAX_END_CANDIDATES:
                events.append(
                    Reject(
                        "bad_frame",
                        f"no 0d0a with a valid crc within {max_frame} bytes of {marker.hex()}",
                        Action.RESYNC,
                        skipped_bytes=1,
                    )
                )
                pos += 1
            elif crc != stored:  # the declared end, with a bad CRC
                # Doc 4.6: on a CRC error the receiver discards the packet and sends nothing.
                events.append(
                    Reject(
                        "crc_mismatch",
                        f"frame crc {buf[stop - 2 : stop].hex()}, computed {crc:04x}",
                        Action.RESYNC,
                        skipped_bytes=stop + 2 - pos,
                    )
                )
                pos = stop + 2
            else:
                frame = buf[pos : stop + 2]
                pos = stop + 2
                event = self._event(frame, header)
                events.append(event)
                if isinstance(event, Reject):  # a refused login ends the session
                    self._close()
                    return events
        self._rest = buf[pos:]
        return events

    def eof(self) -> list[Event]:
        if self._closed:
            return []
        events: list[Event] = []
        rest = self._rest
        if rest[:2] in _MARKERS:
            events.append(
                Reject(
                    "truncated",
                    f"stream ended inside a frame ({len(rest)} bytes)",
                    Action.CLOSE,
                    skipped_bytes=len(rest),
                )
            )
        else:
            self._skipped += len(rest)  # a partial marker is garbage once nothing can follow
        if self._skipped:
            events.insert(0, garbage(self._skipped))
        self._rest = b""
        self._skipped = 0
        self._scan_from = self._tried = 0
        return events

    def _close(self) -> None:
        self._closed = True
        self._rest = b""
        self._skipped = 0

    def _event(self, frame: bytes, header: int) -> Event:
        """The event for one framed, CRC-checked frame."""
        protocol = frame[header]
        reply = self._codec.reply(frame, header)
        if protocol == _LOGIN:
            try:
                imei, reading = _login(frame[header + 1 : -6])
            except DecodeError as exc:
                # No identity to acknowledge: keep the raw frame, answer nothing.
                return Frame(self._device_id, frame, b"", (), exc.code, exc.detail)
            allowed = self._codec.allowed_devices
            if allowed is not None and imei not in allowed:
                return Reject(
                    "device_refused",
                    f"device {imei} is not allowed",
                    Action.CLOSE,
                    skipped_bytes=len(frame),
                )
            self._device_id = imei
            return Login(device_id=imei, reply=reply, payload=frame, readings=(reading,))
        try:
            readings = self._codec.decode(frame)
        except DecodeError as exc:
            # The frame passed its CRC, so it is still a raw record; the reply (heartbeat and
            # alarm) still acknowledges receipt so the terminal does not reconnect.
            return Frame(self._device_id, frame, reply, (), exc.code, exc.detail)
        return Frame(self._device_id, frame, reply, readings)
