"""The codec and per-connection session of a compiled :class:`parser.layout.Layout`."""

from __future__ import annotations

import struct
from collections.abc import Callable
from operator import itemgetter

from parser.codec import CodecOptions
from parser.errors import DecodeError
from parser.events import Action, Event, Frame, Login, Reject
from parser.layout import Layout
from parser.records import Reading
from parser.resync import find_sync, garbage


class LayoutCodec:
    """A codec defined by a layout file; one instance serves every connection of a listener."""

    def __init__(self, layout: Layout, options: CodecOptions) -> None:
        self.layout = layout
        self.name = layout.name
        self.transports = layout.transports
        # A layout's own length bound is part of its spec; options may only tighten it.
        self.max_frame_bytes = min(layout.max_frame_bytes, options.max_frame_bytes or 1 << 30)
        self._allowed = options.allowed_devices
        # Everything the per-frame path needs, resolved once (the hot path reads attributes only).
        order = layout.byte_order
        names = [f.name for f in layout.header]
        self.header_struct = struct.Struct(order + layout.header_fmt)
        self.crc_struct = struct.Struct(order + "H")
        self.header_bytes = layout.header_bytes
        self.expected = tuple(
            (i, f.expect) for i, f in enumerate(layout.header) if f.expect is not None
        )
        # itemgetter compares every expected header field in one C call: the common case is a
        # single version byte, checked on every frame.
        self.expect_getter: Callable[[tuple[int, ...]], object] | None = None
        self.expect_values: object = None
        if self.expected:
            indexes, values = zip(*self.expected, strict=True)
            self.expect_getter = itemgetter(*indexes)
            self.expect_values = values if len(values) > 1 else values[0]
        self._decoders = {type_id: m.decoder for type_id, m in layout.messages.items()}
        self._magic_bytes = len(layout.magic)
        self._length_index = layout.length_index
        self._dispatch_index = layout.dispatch_index
        # The ACK frame the layout owes for a frame with a given header tuple (b"" if none):
        # the generated builder itself, a Python call less per frame than a method around it.
        self.reply: Callable[[tuple[int, ...]], bytes] = _reply_builder(layout, names)

    def session(self) -> LayoutSession:
        return LayoutSession(self)

    def decode(self, payload: bytes) -> tuple[Reading, ...]:
        # Attributes of the codec itself, not of its layout: every attribute hop is ~2 % of an
        # EVB1 decode.
        try:
            header = self.header_struct.unpack_from(payload, self._magic_bytes)
        except struct.error:
            raise DecodeError("bad_size", f"{len(payload)} bytes cannot hold a header") from None
        body_len = header[self._length_index]
        if self.header_bytes + body_len + 2 != len(payload):
            raise DecodeError("bad_size", f"length field {body_len} disagrees with the frame size")
        # decode_frame's dispatch, inlined: one Python call less per frame (~6 % of an EVB1
        # decode); an unknown type takes the long way for its error.
        decoder = self._decoders.get(header[self._dispatch_index])
        if decoder is None:
            return self.decode_frame(payload, header)[1]
        return decoder(payload, self.header_bytes, body_len)[1]

    def decode_frame(
        self, payload: bytes, header: tuple[int, ...]
    ) -> tuple[str | None, tuple[Reading, ...]]:
        """Device id (for login messages) and readings of a whole frame and its header. Pure."""
        decoder = self._decoders.get(header[self._dispatch_index])
        if decoder is None:
            type_id = header[self._dispatch_index]
            raise DecodeError("unknown_type", f"{self.name} has no message type 0x{type_id:02x}")
        return decoder(payload, self.header_bytes, header[self._length_index])

    def frame_event(
        self, payload: bytes, header: tuple[int, ...], device_id: str | None, reply: bytes
    ) -> Frame | Login | Reject:
        """The event of a whole frame that passed its CRC; ``device_id``: the session's so far,
        ``reply``: what acknowledges it.

        A ``Reject`` here is always a resync (the candidate's first byte is dropped).
        """
        try:
            decoder = self._decoders.get(header[self._dispatch_index])
            if decoder is None:  # decode_frame words the error
                login_id, readings = self.decode_frame(payload, header)
            else:  # decode_frame inlined: a Python call less per frame
                login_id, readings = decoder(payload, self.header_bytes, header[self._length_index])
        except DecodeError as exc:
            if exc.code == "bad_size" and self.layout.reject_wrong_size:
                # The spec treats a known type with the wrong body size like a bad CRC.
                return Reject("bad_size", exc.detail, Action.RESYNC, 1)
            return Frame(device_id, payload, reply, (), exc.code, exc.detail)
        if login_id is None:
            return Frame(device_id, payload, reply, readings)
        if not self.allows(login_id):
            return Reject("device_refused", f"device {login_id} is not allowed", Action.CLOSE)
        return Login(login_id, reply, payload, readings)

    def whole_frame(self, payload: bytes, device_id: str | None) -> Frame | Login | Reject | None:
        """The event of ``payload`` when it is exactly one frame with a good CRC, else None.

        The message transports' fast path: no session, no resync search, and no reply (the
        transport acknowledges itself); a frame is ``device_id``'s. None sends the caller to a
        session, which names what is wrong.
        """
        layout = self.layout
        if len(payload) < self.header_bytes + 2 or not payload.startswith(layout.magic):
            return None
        header = self.header_struct.unpack_from(payload, len(layout.magic))
        if self.expect_getter is not None and self.expect_getter(header) != self.expect_values:
            return None
        body = header[layout.length_index]
        if body > layout.max_body_bytes or self.header_bytes + body + 2 != len(payload):
            return None
        (got,) = self.crc_struct.unpack_from(payload, len(payload) - 2)
        if layout.crc(payload[layout.crc_from : -2]) != got:
            return None
        return self.frame_event(payload, header, device_id, b"")

    def allows(self, device_id: str) -> bool:
        return self._allowed is None or device_id in self._allowed


def _reply_builder(layout: Layout, names: list[str]) -> Callable[[tuple[int, ...]], bytes]:
    """A function building the ACK frame from the acked frame's header tuple.

    The ACK has a fixed size, so the whole frame but its CRC is one ``struct.pack`` whose
    arguments are constants or items of the header: generated as one expression (integers and
    indexes only) to keep it well under a microsecond per frame.
    """
    ack = layout.ack
    if ack is None:
        return lambda header: b""
    order = layout.byte_order
    body_size = struct.calcsize(order + ack.body_fmt)
    frame = struct.Struct(f"{order}{len(layout.magic)}s{layout.header_fmt}{ack.body_fmt}")
    header_values = list(ack.header)
    header_values[layout.length_index] = body_size
    args = ", ".join(
        f"h[{names.index(v)}]" if isinstance(v, str) else str(int(v))
        for v in (*header_values, *ack.body)
    )
    namespace: dict[str, object] = {
        "pack": frame.pack,
        "magic": layout.magic,
        "crc": layout.crc,
        "crc_pack": struct.Struct(order + "H").pack,
    }
    source = (
        "def reply(h):\n"
        f"    f = pack(magic, {args})\n"
        f"    return f + crc_pack(crc(f[{layout.crc_from}:]))\n"
    )
    exec(compile(source, f"<ack of {layout.name}>", "exec"), namespace)
    builder: Callable[[tuple[int, ...]], bytes] = namespace["reply"]  # type: ignore[assignment]
    return builder


class LayoutSession:
    """Frames a byte stream of a layout codec, resynchronising on the layout's sync pattern.

    Decisions are taken only on bytes that are present, so the events are the same however the
    stream is chunked. After any rejected candidate or garbage the session hunts for the full
    ``resync`` pattern (EVB1: ``45 56 01``) one byte after the candidate's start.
    """

    __slots__ = ("_codec", "_device_id", "_hunting", "_rest", "_skipped")

    def __init__(self, codec: LayoutCodec) -> None:
        self._codec = codec
        self._rest = b""
        self._hunting = False
        self._skipped = 0
        self._device_id: str | None = None

    @property
    def device_id(self) -> str | None:
        return self._device_id

    @property
    def buffered_bytes(self) -> int:
        return len(self._rest)

    def feed(self, data: bytes) -> list[Event]:
        codec = self._codec
        layout = codec.layout
        magic, resync = layout.magic, (layout.resync,)
        header_struct, header_bytes = codec.header_struct, codec.header_bytes
        expect_getter, expect_values = codec.expect_getter, codec.expect_values
        magic_len, max_body = len(magic), layout.max_body_bytes
        length_index, crc_from, crc = layout.length_index, layout.crc_from, layout.crc
        crc_struct = codec.crc_struct
        buf = self._rest + data if self._rest else data
        end = len(buf)
        off = 0
        events: list[Event] = []
        while off < end:
            if self._hunting or not buf.startswith(magic, off):
                found_at, found = find_sync(buf, off, resync)
                self._skipped += found_at - off
                off = found_at
                if not found:
                    break
                self._hunting = False
            if self._skipped:
                events.append(garbage(self._skipped))
                self._skipped = 0
            if end - off < header_bytes:
                break
            header = header_struct.unpack_from(buf, off + magic_len)
            if expect_getter is not None and expect_getter(header) != expect_values:
                events.append(self._reject("bad_header", self._header_problem(header)))
                off += 1
                continue
            size = header_bytes + header[length_index] + 2
            if header[length_index] > max_body:
                events.append(self._reject("oversize", f"body length {header[length_index]}"))
                off += 1
                continue
            if end - off < size:
                break
            payload = buf[off : off + size]
            computed = crc(payload[crc_from:-2])
            (got,) = crc_struct.unpack_from(payload, size - 2)
            if computed != got:
                events.append(
                    self._reject("crc_mismatch", f"crc 0x{got:04x}, computed 0x{computed:04x}")
                )
                off += 1
                continue
            events.append(self._frame(payload, header))
            # A rejected candidate (wrong body size) is searched past byte by byte like a bad CRC.
            off += 1 if self._hunting else size
        self._rest = buf[off:] if off < end else b""
        return events

    def _header_problem(self, header: tuple[int, ...]) -> str:
        fields = self._codec.layout.header
        return "; ".join(
            f"{fields[i].name} is {header[i]}, expected {value}"
            for i, value in self._codec.expected
            if header[i] != value
        )

    def _reject(self, reason: str, detail: str) -> Reject:
        # The candidate's first byte is dropped; the search resumes one byte later.
        self._hunting = True
        return Reject(reason, detail, Action.RESYNC, 1)

    def _frame(self, payload: bytes, header: tuple[int, ...]) -> Event:
        """The event of a frame that passed its CRC."""
        codec = self._codec
        event = codec.frame_event(payload, header, self._device_id, codec.reply(header))
        if isinstance(event, Frame):  # nearly every frame: one type check
            return event
        if isinstance(event, Login):
            self._device_id = event.device_id
        elif isinstance(event, Reject) and event.action is Action.RESYNC:
            self._hunting = True
        return event

    def eof(self) -> list[Event]:
        events: list[Event] = []
        pending = len(self._rest)
        if self._hunting or not self._rest.startswith(self._codec.layout.magic):
            self._skipped += pending
        elif pending:
            events.append(
                Reject(
                    "truncated", f"stream ended {pending} bytes into a frame", Action.CLOSE, pending
                )
            )
        if self._skipped:
            events.insert(0, garbage(self._skipped))
        self._rest = b""
        self._skipped = 0
        return events
