"""Teltonika TCP: IMEI login; Codec 8, 8 Extended and 16 AVL packets; Codec 7 (GH3000, in
``teltonika_gh3000``); Codec 12/13 command replies (sans-I/O).

Wire format per the Teltonika wiki, "Teltonika Data Sending Protocols" (all big-endian):

- login: 2-byte length N, then N ASCII digits (the IMEI); the server answers ``01`` or ``00``;
- AVL packet: 4 zero bytes, 4-byte data_field_length L, L data bytes (codec id, NoD1, records,
  NoD2), then a 4-byte CRC field whose low 2 bytes are CRC-16/ARC over the L data bytes;
  the server answers with the record count as a 4-byte integer;
- a lone ``0xFF`` between packets is a keep-alive (Traccar's ``TeltonikaFrameDecoder`` skips it).

The stream has no sync marker, so a framing error cannot be resynchronised: it closes the
connection. A CRC mismatch leaves the length framing intact, so only that packet is dropped.
"""

from __future__ import annotations

import enum
import struct

from parser.codec import CodecOptions
from parser.crc import crc16_arc
from parser.errors import DecodeError
from parser.events import Action, Event, Frame, Login, Reject
from parser.records import Alarm, AttrValue, MetricValue, Position, Reading
from parser.teltonika_gh3000 import decode_codec7

# Same bound as h11's DEFAULT_MAX_INCOMPLETE_EVENT_SIZE (16 KiB, h11/_connection.py, which cites
# IIS's 16 KiB among its precedents). The wiki's Codec page (2018 revision) puts a one-record
# Codec 8 packet at 783 bytes at most, so this holds batches of records and Codec 8E NX elements,
# yet caps what a hostile length can make a session hold.
DEFAULT_MAX_FRAME_BYTES = 16 * 1024
# An IMEI has 15 digits; 20 leaves room for the 16-17 digit ids some firmwares send, and rejects
# a stray AVL packet or random bytes read as a login long before they could be buffered.
MAX_IMEI_DIGITS = 20
# The longest login must fit in the frame bound, or a valid login could never be framed.
_MIN_FRAME_BYTES = 2 + MAX_IMEI_DIGITS
_HEADER_BYTES = 8
_CRC_BYTES = 4
# data_field_length must at least hold the codec id, NoD1 and NoD2.
_MIN_DATA_BYTES = 3
_KEEP_ALIVE = 0xFF


class CodecId(enum.IntEnum):
    """Codec ids of the AVL data field (first byte after the header)."""

    CODEC7 = 0x07  # GH3000 family: masks say which fields a record carries
    CODEC8 = 0x08
    CODEC8_EXTENDED = 0x8E
    CODEC12 = 0x0C  # GPRS commands and their replies: no record count, never ACKed
    CODEC13 = 0x0D
    CODEC16 = 0x10


# Listener variants: "io16" for firmwares whose records carry a group of 16-byte IO values.
VARIANTS = ("standard", "io16")
# Codecs whose byte after the codec id is a record count the device expects echoed back.
_COUNTED_CODECS = frozenset(
    {CodecId.CODEC7, CodecId.CODEC8, CodecId.CODEC8_EXTENDED, CodecId.CODEC16}
)
# Codec 12/13 message types (wiki, Codec 12 "Type"): 0x05 a command, 0x06 a response.
_COMMAND_TYPES = {0x05: "command", 0x06: "response"}
_ACKS = tuple(struct.pack(">I", n) for n in range(256))
_LOGIN_ACCEPTED = b"\x01"
_LOGIN_REFUSED = b"\x00"

_HEADER = struct.Struct(">II")  # preamble, data_field_length
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
# timestamp, priority, lon, lat, altitude, angle, satellites, speed, event io id, total io count
_RECORD8 = struct.Struct(">QBiihHBHBB")
_RECORD8E = struct.Struct(">QBiihHBHHH")
# Codec 16 (wiki): 2-byte event IO id, then a generation type byte and a 1-byte total count.
_RECORD16 = struct.Struct(">QBiihHBHHBB")
_NX_HEAD = struct.Struct(">HH")  # Codec 8E variable-length element: id, length
_PANIC_PRIORITY = 2
_NO_ALARMS: tuple[Alarm, ...] = ()

# How a well-known IO value becomes a metric: as a bool, unchanged, or divided by a scale.
_AS_BOOL = 0
_AS_INT = 1
# AVL ids from Teltonika's FMB "AVL ID" parameter table (wiki: FMB_Teltonika_Data_Sending_
# Parameters_ID); other models reuse these ids. Everything else stays in ``io`` only.
WELL_KNOWN_IO: dict[str, tuple[str, int]] = {
    "239": ("ignition", _AS_BOOL),
    "240": ("movement", _AS_BOOL),
    "21": ("gsm_signal", _AS_INT),
    "66": ("external_voltage_v", 1000),  # mV
    "67": ("battery_voltage_v", 1000),  # mV
    "68": ("battery_current_a", 1000),  # mA
    "16": ("odometer_km", 1000),  # total odometer, m
    "113": ("battery_level_pct", _AS_INT),
}
# The same table as flat rows: the per-record loop over it is about 20% cheaper.
_WELL_KNOWN_ROWS = tuple((key, metric, scale) for key, (metric, scale) in WELL_KNOWN_IO.items())


class _IoNames(dict[int, str]):
    """IO ids as the strings used for ``io`` keys, made once per id seen (str() per element is a
    measurable share of decode time). Ids are u8/u16, so it holds at most 65,536 entries; a
    fleet uses a few hundred."""

    def __missing__(self, io_id: int) -> str:
        name = self[io_id] = str(io_id)
        return name


_IO_NAMES = _IoNames()

# One IO group: the struct code of one (id, value) pair, its size, and its layouts by count.
_Group = tuple[str, int, dict[int, struct.Struct]]
# Only small counts are kept, so a hostile count cannot grow the caches.
_CACHED_COUNTS = 64


def _groups(id_code: str) -> tuple[_Group, ...]:
    # The 1-, 2-, 4- and 8-byte groups, in wire order.
    return tuple((id_code + v, struct.calcsize(">" + id_code + v), {}) for v in "BHIQ")


_GROUPS8 = _groups("B")
_GROUPS8E = _groups("H")
# Per AVL codec: record head, IO groups, whether counts and ids take 2 bytes with an NX group
# (8E), whether a generation type follows the event id (16). One dict lookup per packet, where
# comparing with CodecId members cost ~65 ns each (reading an Enum member off its class runs
# Python code in 3.11).
_RECORD_SHAPES: dict[int, tuple[struct.Struct, tuple[_Group, ...], bool, bool]] = {
    CodecId.CODEC8: (_RECORD8, _GROUPS8, False, False),
    CodecId.CODEC8_EXTENDED: (_RECORD8E, _GROUPS8E, True, False),
    # 2-byte IO ids like 8E, but 1-byte counts and no NX group.
    CodecId.CODEC16: (_RECORD16, _GROUPS8E, False, True),
}
_CODEC7 = CodecId.CODEC7
_COMMAND_CODECS = frozenset({CodecId.CODEC12, CodecId.CODEC13})


def _layout(group: _Group, count: int) -> struct.Struct:
    pair, _, layouts = group
    layout = struct.Struct(">" + pair * count)
    if count <= _CACHED_COUNTS:
        layouts[count] = layout
    return layout


class TeltonikaCodec:
    """Teltonika Codec 8/8E over TCP; ``decode`` takes one whole AVL packet, CRC field included."""

    name: str = "teltonika"
    transports: frozenset[str] = frozenset({"tcp"})

    def __init__(self, options: CodecOptions) -> None:
        limit = options.max_frame_bytes or DEFAULT_MAX_FRAME_BYTES
        if limit < _MIN_FRAME_BYTES:
            raise ValueError(f"teltonika max_frame_bytes must be at least {_MIN_FRAME_BYTES}")
        self.options = options
        if options.variant not in VARIANTS:
            known = ", ".join(VARIANTS)
            raise ValueError(f"unknown teltonika variant {options.variant!r}; known: {known}")
        self._io16 = options.variant == "io16"
        self.max_frame_bytes: int = limit

    def session(self) -> TeltonikaSession:
        return TeltonikaSession(self)

    def decode(self, payload: bytes) -> tuple[Reading, ...]:
        """One reading per AVL record; raises ``DecodeError`` (unsupported_codec, bad_body)."""
        try:
            return _decode_avl(payload, self._io16)
        except (struct.error, IndexError) as exc:
            raise DecodeError("bad_body", f"AVL data ends inside a record: {exc}") from None


class TeltonikaSession:
    """One connection's framer: login, keep-alives and AVL packets. Never raises.

    After a ``CLOSE`` reject the session is finished: it drops what it holds and ignores further
    bytes. A reject's ``skipped_bytes`` counts the bytes of the unit it rejects (the 8-byte header,
    the login, the whole packet), so the events do not depend on how the stream was chunked.
    """

    __slots__ = ("_closed", "_codec", "_device_id", "_need", "_rest")

    def __init__(self, codec: TeltonikaCodec) -> None:
        self._codec = codec
        self._device_id: str | None = None
        # An incomplete frame, and how many bytes it must reach before parsing can progress:
        # small reads are appended in amortised O(1) instead of re-joining and re-parsing. Made
        # with the first frame split across reads (an idle connection has none: 56 bytes less).
        self._rest: bytearray | None = None
        self._need = 0
        self._closed = False

    @property
    def device_id(self) -> str | None:
        return self._device_id

    @property
    def buffered_bytes(self) -> int:
        return len(self._rest) if self._rest is not None else 0

    def feed(self, data: bytes) -> list[Event]:
        """Take the next bytes of the stream; return the events they complete, in order."""
        if self._closed:
            return []
        rest = self._rest
        if rest:
            rest += data
            if len(rest) < self._need:
                return []
            buf = bytes(rest)
            rest.clear()
        else:
            buf = data
        events: list[Event] = []
        end_of_buf = len(buf)
        limit = self._codec.max_frame_bytes
        pos = 0
        need = 0
        while pos < end_of_buf:
            first = buf[pos]
            if first == _KEEP_ALIVE:
                pos += 1
                continue
            if end_of_buf - pos < 2:
                need = 2
                break
            if first or buf[pos + 1]:
                # A non-zero 2-byte prefix cannot start an AVL packet: it is an IMEI login.
                digits = (first << 8) | buf[pos + 1]
                if digits > MAX_IMEI_DIGITS:
                    detail = f"login length {digits} is over {MAX_IMEI_DIGITS} digits"
                    return self._close(events, "bad_login", detail, 2)
                end = pos + 2 + digits
                if end > end_of_buf:
                    need = 2 + digits
                    break
                events.append(self._login(buf[pos:end]))
                if self._closed:
                    return events
                pos = end
                continue
            if end_of_buf - pos < _HEADER_BYTES:
                need = _HEADER_BYTES
                break
            preamble, data_bytes = _HEADER.unpack_from(buf, pos)
            if preamble:
                detail = f"preamble {preamble:08x} is not zero"
                return self._close(events, "bad_preamble", detail, _HEADER_BYTES)
            if data_bytes < _MIN_DATA_BYTES:
                detail = f"data_field_length {data_bytes} cannot hold a codec id and two counts"
                return self._close(events, "data_field_length_mismatch", detail, _HEADER_BYTES)
            size = _HEADER_BYTES + data_bytes + _CRC_BYTES
            if size > limit:
                detail = f"AVL packet of {size} bytes exceeds {limit}"
                return self._close(events, "oversize", detail, _HEADER_BYTES)
            end = pos + size
            if end > end_of_buf:
                need = size
                break
            crc_end = end - _CRC_BYTES
            (stated,) = _U32.unpack_from(buf, crc_end)
            computed = crc16_arc(buf[pos + _HEADER_BYTES : crc_end])
            if stated != computed:
                detail = f"CRC field {stated:08x}, computed {computed:04x}"
                events.append(Reject("crc_mismatch", detail, Action.RESYNC, size))
            else:
                events.append(self._frame(buf[pos:end]))
            pos = end
        if pos < end_of_buf:
            if rest is None:
                rest = self._rest = bytearray()
            rest += buf[pos:] if pos else buf
            self._need = need
        return events

    def eof(self) -> list[Event]:
        """The stream ended: an incomplete frame left over is reported as ``truncated``."""
        held = self.buffered_bytes
        if not held:
            return []
        self._rest = None
        detail = f"stream ended inside a frame: {held} bytes of an incomplete frame"
        return [Reject("truncated", detail, Action.CLOSE, held)]

    def _close(self, events: list[Event], reason: str, detail: str, skipped: int) -> list[Event]:
        self._finish()
        events.append(Reject(reason, detail, Action.CLOSE, skipped))
        return events

    def _finish(self) -> None:
        # The connection is closing: nothing after this point is framed or reported.
        self._closed = True
        self._rest = None

    def _login(self, payload: bytes) -> Event:
        imei_bytes = payload[2:]
        # bytes.isdigit is ASCII-only, unlike str.isdigit, which accepts other Unicode digits.
        if not imei_bytes.isdigit():
            self._finish()
            detail = f"login of {len(imei_bytes)} bytes is not ASCII digits"
            return Reject("bad_login", detail, Action.CLOSE, len(payload))
        imei = imei_bytes.decode("ascii")
        allowed = self._codec.options.allowed_devices
        if allowed is not None and imei not in allowed:
            self._finish()
            detail = f"device {imei} is not in the allowed devices"
            return Reject("device_refused", detail, Action.CLOSE, len(payload), _LOGIN_REFUSED)
        self._device_id = imei
        return Login(imei, _LOGIN_ACCEPTED, payload)

    def _frame(self, payload: bytes) -> Frame:
        codec_id = payload[_HEADER_BYTES]
        # Codec 8/8E/16 are ACKed with their count even when decoding fails: the raw packet is
        # kept and can be re-parsed, while withholding the ACK makes the device resend the same
        # batch forever (traccar/traccar#5574). Other codecs carry no count to echo.
        reply = _ACKS[payload[_HEADER_BYTES + 1]] if codec_id in _COUNTED_CODECS else b""
        try:
            readings = self._codec.decode(payload)
        except DecodeError as exc:
            return Frame(self._device_id, payload, reply, (), exc.code, exc.detail)
        return Frame(self._device_id, payload, reply, readings)


def _decode_avl(payload: bytes, io16: bool = False) -> tuple[Reading, ...]:
    size = len(payload)
    if size < _HEADER_BYTES + _MIN_DATA_BYTES + _CRC_BYTES:
        raise DecodeError("bad_body", f"{size} bytes cannot hold an AVL packet")
    preamble, data_bytes = _HEADER.unpack_from(payload, 0)
    if preamble or _HEADER_BYTES + data_bytes + _CRC_BYTES != size:
        raise DecodeError("bad_body", f"{size} bytes are not one AVL packet of length {data_bytes}")
    codec_id = payload[_HEADER_BYTES]
    records = payload[_HEADER_BYTES + 1]
    nod2_at = size - _CRC_BYTES - 1
    if payload[nod2_at] != records:
        raise DecodeError("bad_body", f"NoD1 {records} != NoD2 {payload[nod2_at]}")
    shape = _RECORD_SHAPES.get(codec_id)
    if shape is None:
        if codec_id == _CODEC7:
            return decode_codec7(payload[_HEADER_BYTES + 2 : nod2_at], records)
        if codec_id in _COMMAND_CODECS:
            return (_command(codec_id, payload[_HEADER_BYTES + 2 : nod2_at], records),)
        raise DecodeError("unsupported_codec", f"codec id 0x{codec_id:02x} is not decoded")
    head, groups, extended, generation = shape
    head_size = head.size
    names = _IO_NAMES
    readings: list[Reading] = []
    pos = _HEADER_BYTES + 2
    for _ in range(records):
        if generation:
            ts_ms, priority, lon, lat, alt, angle, sats, speed, event_id, gen_type, total = (
                _RECORD16.unpack_from(payload, pos)
            )
        else:
            ts_ms, priority, lon, lat, alt, angle, sats, speed, event_id, total = head.unpack_from(
                payload, pos
            )
        pos += head_size
        io: dict[str, int | str] = {}
        seen = 0
        for group in groups:
            if extended:
                count = payload[pos] << 8 | payload[pos + 1]
                pos += 2
            else:
                count = payload[pos]
                pos += 1
            if not count:
                continue
            end = pos + count * group[1]
            # Checked before a layout is built for the count: a hostile count must not cost more.
            if end > nod2_at:
                raise DecodeError("bad_body", f"IO group of {count} elements overruns the data")
            layout = group[2].get(count) or _layout(group, count)
            pairs = iter(layout.unpack_from(payload, pos))
            for io_id in pairs:
                io[names[io_id]] = next(pairs)
            pos = end
            seen += count
        if io16:
            # A group of 16-byte values after the 8-byte one (FM firmwares with 16-byte IO
            # elements; Traccar's "extended" setting): its count and ids sized as the codec's.
            count = payload[pos] << 8 | payload[pos + 1] if extended else payload[pos]
            pos += 2 if extended else 1
            id_bytes = 2 if extended or generation else 1
            for _ in range(count):
                io_id = int.from_bytes(payload[pos : pos + id_bytes], "big")
                end = pos + id_bytes + 16
                if end > nod2_at:
                    raise DecodeError("bad_body", f"16-byte element {io_id} overruns the data")
                io[names[io_id]] = payload[pos + id_bytes : end].hex()
                pos = end
            seen += count
        if extended:
            count = payload[pos] << 8 | payload[pos + 1]
            pos += 2
            for _ in range(count):
                io_id, length = _NX_HEAD.unpack_from(payload, pos)
                pos += 4
                end = pos + length
                if end > nod2_at:
                    raise DecodeError("bad_body", f"NX element {io_id} overruns the data")
                io[names[io_id]] = payload[pos:end].hex()
                pos = end
            seen += count
        if seen != total:
            raise DecodeError("bad_body", f"IO groups hold {seen} elements, total says {total}")
        metrics: dict[str, MetricValue] = {"speed_kmh": speed}
        for key, metric, scale in _WELL_KNOWN_ROWS:
            if key in io:
                value = io[key]
                if isinstance(value, str):  # an NX element reusing a well-known id
                    continue
                if scale == _AS_BOOL:
                    metrics[metric] = value != 0
                elif scale == _AS_INT:
                    metrics[metric] = value
                else:
                    metrics[metric] = value / scale
        # Without a fix the device repeats the last valid coordinates with 0 satellites (wiki).
        position = Position(lat / 10_000_000, lon / 10_000_000, alt, speed, angle, sats, sats > 0)
        attrs: dict[str, AttrValue] = {"priority": priority, "event_io_id": event_id}
        if generation:
            # Codec 16 generation type (wiki): 0 on exit, 1 on entrance, 2 on both, 3 reserved,
            # 4 hysteresis, 5 on change, 6 eventual, 7 periodical.
            attrs["generation_type"] = gen_type
        if priority == _PANIC_PRIORITY:
            panic = Alarm("teltonika_panic", "critical", "tcu", event_id)
            readings.append(Reading("alarm", ts_ms, position, metrics, io, (panic,), attrs))
        else:
            readings.append(Reading("telemetry", ts_ms, position, metrics, io, _NO_ALARMS, attrs))
    if pos != nod2_at:
        raise DecodeError("bad_body", f"records end at byte {pos}, NoD2 is at byte {nod2_at}")
    return tuple(readings)


def _command(codec_id: int, data: bytes, quantity: int) -> Reading:
    """A Codec 12/13 message (wiki, "Codec 12" / "Codec 13"): type, 4-byte size, then the text;
    Codec 13 puts a 4-byte timestamp (seconds) before the text. Devices send responses (0x06)
    to GPRS commands, and Codec 13 messages with their own time."""
    if quantity != 1 or len(data) < 5:
        raise DecodeError("bad_body", f"codec 0x{codec_id:02x} message of {len(data)} bytes")
    kind, size = data[0], _U32.unpack_from(data, 1)[0]
    body = data[5:]
    ts_ms = None
    if codec_id == CodecId.CODEC13:
        # The wiki's layout has a 4-byte timestamp in seconds outside the size; captures from
        # newer firmwares count an 8-byte timestamp in milliseconds inside it.
        if size + 4 == len(body):
            ts_ms, body = _U32.unpack_from(body)[0] * 1000, body[4:]
        elif size == len(body) and size >= 8:
            ts_ms, body = int.from_bytes(body[:8], "big"), body[8:]
        else:
            raise DecodeError("bad_body", f"codec 0x0d size {size}, {len(body)} bytes follow")
    elif size != len(body):
        raise DecodeError("bad_body", f"command size {size}, {len(body)} bytes follow")
    attrs: dict[str, AttrValue] = {
        "codec": codec_id,
        "type": _COMMAND_TYPES.get(kind, f"0x{kind:02x}"),
        "text": body.decode("ascii", "replace"),
    }
    return Reading("command_reply", ts_ms, attrs=attrs)
