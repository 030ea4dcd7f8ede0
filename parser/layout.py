"""Declarative frame layouts: TOML text compiled into ``struct``-based decoders.

A layout file (``codecs/*.toml``, documented in ``codecs/README.md``) describes a binary frame
format: magic, header fields, a length field, a CRC over a byte range, dispatch on a type field,
and per message type the body fields with their scale, unit, output name, flag bits, enumerations
and alarm mappings, plus the ACK to send. :func:`compile_layout` validates it (every error names the
file and the key) and generates one Python function per message — the same straight-line
``unpack_from`` + arithmetic a hand-written decoder would have, which is what makes a data-defined
codec as fast as a Python one. Generated source only ever embeds validated identifiers and numbers;
every string from the file reaches the code as a constant object, never as source text.
"""

from __future__ import annotations

import keyword
import math
import re
import string
import struct
import tomllib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from parser.crc import CRC16
from parser.errors import DecodeError, LayoutError
from parser.records import KINDS, Alarm, Position, Reading

_TYPES = {
    "u8": "B",
    "i8": "b",
    "u16": "H",
    "i16": "h",
    "u32": "I",
    "i32": "i",
    "u64": "Q",
    "i64": "q",
    "f32": "f",
    "f64": "d",
}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def _field_defaults(struct_type: type[msgspec.Struct]) -> dict[str, str]:
    """Field names of a record Struct in order, each with the source of its default (None,
    True: constants only; required fields, which a layout must set, get an empty string)."""
    return {
        f.name: "" if f.default is msgspec.NODEFAULT else repr(f.default)
        for f in msgspec.structs.fields(struct_type)
    }


_POSITION_DEFAULTS = _field_defaults(Position)
_ALARM_DEFAULTS = _field_defaults(Alarm)
_POSITION_KEYS = tuple(_POSITION_DEFAULTS)
_ALARM_KEYS = tuple(_ALARM_DEFAULTS)
_TARGET = re.compile(
    r"^(ts|device_id|position\.[a-z_]+|alarm\.[a-z]+|(metrics|attrs)\.[a-z][a-z0-9_]*)$"
)

# Decodes one message body: (frame bytes, body offset, body length) -> (device id, readings).
MessageDecoder = Callable[[bytes, int, int], tuple[str | None, tuple[Reading, ...]]]


@dataclass(frozen=True, slots=True)
class HeaderField:
    name: str
    fmt: str
    expect: int | None
    max: int | None


@dataclass(frozen=True, slots=True)
class AckSpec:
    """The reply frame: header values are constants or names of the acked frame's header fields."""

    header: tuple[int | str, ...]
    body_fmt: str
    body: tuple[int | str, ...]


@dataclass(frozen=True, slots=True)
class Message:
    type_id: int
    name: str
    decoder: MessageDecoder
    is_login: bool


@dataclass(frozen=True, slots=True)
class Layout:
    """A compiled layout: everything a :class:`parser.layout_codec.LayoutCodec` needs."""

    name: str
    description: str
    transports: frozenset[str]
    byte_order: str
    magic: bytes
    resync: bytes
    header: tuple[HeaderField, ...]
    length_index: int
    dispatch_index: int
    max_body_bytes: int
    crc: Callable[[bytes], int]
    crc_from: int
    reject_wrong_size: bool
    ack: AckSpec | None
    messages: Mapping[int, Message]
    header_fmt: str
    header_bytes: int  # magic included
    max_frame_bytes: int


def compile_layout(text: str, source: str) -> Layout:
    """Parse and compile a layout file; a :class:`LayoutError` names ``source`` and the key."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LayoutError(f"{source}: not valid TOML: {exc}") from None
    return _Compiler(source).layout(doc)


class _Compiler:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> LayoutError:
        return LayoutError(f"{self.source}: {where}: {problem}")

    def table(self, doc: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
        value = doc.get(key)
        if not isinstance(value, dict):
            raise self.fail(f"{where}{key}", "missing table")
        return value

    def integer(self, value: Any, where: str, low: int = 0, high: int = 2**64) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value < high:
            raise self.fail(where, f"expected an integer in [{low}, {high}), got {value!r}")
        return value

    def name(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not _NAME.match(value) or keyword.iskeyword(value):
            raise self.fail(where, f"expected a lowercase identifier, got {value!r}")
        return value

    def hexbytes(self, value: Any, where: str) -> bytes:
        try:
            data = bytes.fromhex(value)
        except (TypeError, ValueError):
            raise self.fail(where, f"expected hex bytes, got {value!r}") from None
        if not data:
            raise self.fail(where, "must not be empty")
        return data

    def layout(self, doc: dict[str, Any]) -> Layout:
        codec = self.table(doc, "codec", "")
        framing = self.table(doc, "framing", "")
        name = self.name(codec.get("name"), "codec.name")
        transports = codec.get("transports", ["tcp"])
        if not isinstance(transports, list) or not set(transports) <= {"tcp", "mqtt"}:
            raise self.fail("codec.transports", "a list of 'tcp' and/or 'mqtt'")
        order = {"big": ">", "little": "<"}.get(framing.get("byte_order", "big"))
        if order is None:
            raise self.fail("framing.byte_order", "'big' or 'little'")
        magic = self.hexbytes(framing.get("magic"), "framing.magic")
        resync = self.hexbytes(framing.get("resync", framing.get("magic")), "framing.resync")
        if not resync.startswith(magic):
            raise self.fail("framing.resync", "must begin with the magic")
        header = self.header(framing.get("header"))
        names = [f.name for f in header]
        length_index = self.field_index(names, framing.get("length"), "framing.length")
        dispatch_index = self.field_index(names, framing.get("dispatch"), "framing.dispatch")
        max_body = header[length_index].max
        if max_body is None:
            raise self.fail("framing.header", f"length field {names[length_index]!r} needs a max")
        crc_spec = self.table(framing, "crc", "framing.")
        crc = CRC16.get(crc_spec.get("kind", ""))
        if crc is None:
            raise self.fail("framing.crc.kind", f"one of {sorted(CRC16)}")
        crc_from = self.integer(crc_spec.get("from", 0), "framing.crc.from", 0, 64)
        wrong_size = framing.get("wrong_size", "reject")
        if wrong_size not in ("reject", "frame"):
            raise self.fail("framing.wrong_size", "'reject' or 'frame'")
        header_fmt = "".join(f.fmt for f in header)
        header_bytes = len(magic) + struct.calcsize(order + header_fmt)
        messages: dict[int, Message] = {}
        raw_messages = doc.get("message", [])
        if not isinstance(raw_messages, list) or not raw_messages:
            raise self.fail("message", "at least one [[message]] table")
        for i, raw in enumerate(raw_messages):
            message = _MessageCompiler(self, f"message[{i}]", order, raw).compile()
            if message.type_id in messages:
                raise self.fail(f"message[{i}].id", f"duplicate id {message.type_id}")
            messages[message.type_id] = message
        return Layout(
            name=name,
            description=str(codec.get("description", "")),
            transports=frozenset(transports),
            byte_order=order,
            magic=magic,
            resync=resync,
            header=header,
            length_index=length_index,
            dispatch_index=dispatch_index,
            max_body_bytes=max_body,
            crc=crc,
            crc_from=crc_from,
            reject_wrong_size=wrong_size == "reject",
            ack=self.ack(doc.get("ack"), names, order),
            messages=messages,
            header_fmt=header_fmt,
            header_bytes=header_bytes,
            max_frame_bytes=header_bytes + max_body + 2,
        )

    def header(self, raw: Any) -> tuple[HeaderField, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.fail("framing.header", "a non-empty list of fields")
        fields = []
        for i, item in enumerate(raw):
            where = f"framing.header[{i}]"
            if not isinstance(item, dict):
                raise self.fail(where, "expected a table")
            fmt = _TYPES.get(item.get("type", ""))
            if fmt is None or fmt in "fd":
                raise self.fail(f"{where}.type", f"an integer type, one of {sorted(_TYPES)[:8]}")
            expect = item.get("expect")
            maximum = item.get("max")
            fields.append(
                HeaderField(
                    self.name(item.get("name"), f"{where}.name"),
                    fmt,
                    None if expect is None else self.integer(expect, f"{where}.expect"),
                    None if maximum is None else self.integer(maximum, f"{where}.max", 0, 2**20),
                )
            )
        return tuple(fields)

    def field_index(self, names: list[str], value: Any, where: str) -> int:
        if value not in names:
            raise self.fail(where, f"must name a header field, one of {names}")
        return names.index(value)

    def ack(self, raw: Any, names: list[str], order: str) -> AckSpec | None:
        if raw is None:
            return None
        if not isinstance(raw, dict) or not isinstance(raw.get("header"), dict):
            raise self.fail("ack", "a table with a header table and a body list")
        header: list[int | str] = []
        for name in names:
            if name not in raw["header"]:
                raise self.fail(f"ack.header.{name}", "missing (length fields too: use 0)")
            header.append(self.ack_value(raw["header"][name], names, f"ack.header.{name}"))
        body_fmt = ""
        body: list[int | str] = []
        for i, item in enumerate(raw.get("body", [])):
            fmt = _TYPES.get(item.get("type", "")) if isinstance(item, dict) else None
            if fmt is None or fmt in "fd":
                raise self.fail(f"ack.body[{i}].type", "an integer type")
            body_fmt += fmt
            body.append(self.ack_value(item.get("value"), names, f"ack.body[{i}].value"))
        struct.calcsize(order + body_fmt)
        return AckSpec(tuple(header), body_fmt, tuple(body))

    def ack_value(self, value: Any, names: list[str], where: str) -> int | str:
        if isinstance(value, str):
            if value not in names:
                raise self.fail(where, f"a constant or a header field name, one of {names}")
            return value
        return self.integer(value, where)


class _MessageCompiler:
    """Generates the decoder of one ``[[message]]``: a sequence of fixed runs and arrays."""

    def __init__(self, parent: _Compiler, where: str, order: str, raw: Any) -> None:
        if not isinstance(raw, dict):
            raise parent.fail(where, "expected a table")
        self.p = parent
        self.where = where
        self.order = order
        self.raw = raw
        self.consts: dict[str, object] = {}
        self.values: dict[str, str] = {}  # field name -> Python expression of its output value
        self.targets: dict[str, str] = {}  # target path -> expression
        self.bit_alarms: list[tuple[str, int, Alarm]] = []

    def const(self, value: object) -> str:
        key = f"_k{len(self.consts)}"
        self.consts[key] = value
        return key

    def compile(self) -> Message:
        raw, where = self.raw, self.where
        type_id = self.p.integer(raw.get("id"), f"{where}.id")
        name = self.p.name(raw.get("name", f"type_{type_id}"), f"{where}.name")
        kind = raw.get("kind")
        if kind not in KINDS:
            raise self.p.fail(f"{where}.kind", f"one of {list(KINDS)}")
        fields = raw.get("fields", [])
        if not isinstance(fields, list):
            raise self.p.fail(f"{where}.fields", "a list of field tables")
        body = self.fields(fields)
        texts = raw.get("text", {})
        if not isinstance(texts, dict):
            raise self.p.fail(f"{where}.text", "a table of target = format string")
        for target, template in texts.items():
            self.text(target, template, f"{where}.text.{target}")
        body += self.result(kind)
        source = f"def decode(buf, off, n):\n{body}"
        namespace: dict[str, Any] = {
            **self.consts,
            "DecodeError": DecodeError,
            "Reading": Reading,
            "Position": Position,
            "Alarm": Alarm,
        }
        exec(compile(source, f"<layout {self.p.source} {where}>", "exec"), namespace)
        return Message(type_id, name, namespace["decode"], "device_id" in self.targets)

    def fields(self, fields: list[Any]) -> str:
        lines: list[str] = []
        run: list[tuple[str, str]] = []  # (local name, struct code) of the fixed run being built
        for i, item in enumerate(fields):
            where = f"{self.where}.fields[{i}]"
            if not isinstance(item, dict):
                raise self.p.fail(where, "expected a table")
            fname = self.p.name(item.get("name"), f"{where}.name")
            if fname in self.values:
                raise self.p.fail(f"{where}.name", f"duplicate field {fname!r}")
            ftype = item.get("type")
            if ftype in ("ascii", "hex"):
                size = self.p.integer(item.get("size"), f"{where}.size", 1, 4096)
                run.append((f"b_{fname}", f"{size}s"))
                conv = "decode('ascii', 'replace')" if ftype == "ascii" else "hex()"
                self.values[fname] = f"b_{fname}.{conv}"
            elif ftype in _TYPES:
                if "count" in item:
                    lines += self.flush(run)
                    lines += self.array(fname, _TYPES[ftype], item, where)
                else:
                    run.append((f"f_{fname}", _TYPES[ftype]))
                    self.values[fname] = self.scaled(f"f_{fname}", item, where)
            else:
                choices = [*sorted(_TYPES), "ascii", "hex"]
                raise self.p.fail(f"{where}.type", f"{ftype!r} is not one of {choices}")
            self.outputs(fname, item, where)
        if not lines:  # no array: one size fits, checked once
            return "".join(f"{line}\n" for line in self.fixed(run))
        lines += self.flush(run)
        lines.append("    if off != end:")
        lines.append(
            "        raise DecodeError('bad_size', f'body is {n} bytes, not {n - end + off}')"
        )
        return "".join(f"{line}\n" for line in ["    end = off + n", *lines])

    def fixed(self, run: list[tuple[str, str]]) -> list[str]:
        """A body of fixed size: one comparison instead of the running offset's bounds checks
        (the same errors), then one unpack."""
        s = struct.Struct(self.order + "".join(code for _, code in run))
        lines = [
            f"    if n != {s.size}:",
            f"        raise DecodeError('bad_size', f'body of {{n}} bytes is too short' "
            f"if n < {s.size} else f'body is {{n}} bytes, not {s.size}')",
        ]
        if run:
            names = ", ".join(local for local, _ in run) + ","
            lines.append(f"    {names} = {self.const(s)}.unpack_from(buf, off)")
        return lines

    def flush(self, run: list[tuple[str, str]]) -> list[str]:
        if not run:
            return []
        s = struct.Struct(self.order + "".join(code for _, code in run))
        key = self.const(s)
        names = ", ".join(local for local, _ in run) + ","
        run.clear()
        return [
            f"    if off + {s.size} > end:",
            "        raise DecodeError('bad_size', f'body of {n} bytes is too short')",
            f"    {names} = {key}.unpack_from(buf, off)",
            f"    off += {s.size}",
        ]

    def array(self, fname: str, code: str, item: dict[str, Any], where: str) -> list[str]:
        count = item["count"]
        if count not in self.values or not self.values[count].startswith("f_"):
            raise self.p.fail(f"{where}.count", "must name an earlier integer field")
        size = struct.calcsize(code)
        elem = self.scaled("x", item, where)
        self.values[fname] = f"[{elem} for x in a_{fname}]" if elem != "x" else f"list(a_{fname})"
        return [
            f"    if off + {size} * f_{count} > end:",
            f"        raise DecodeError('bad_size', f'{{n}} bytes: short of {{f_{count}}} items')",
            f"    a_{fname} = struct_unpack_from(f'{self.order}{{f_{count}}}{code}', buf, off)",
            f"    off += {size} * f_{count}",
        ]

    def scaled(self, local: str, item: dict[str, Any], where: str) -> str:
        """Expression of a numeric field after enum/format or scale/offset, and unit conversion."""
        if "enum" in item:
            table = item["enum"]
            if not isinstance(table, dict):
                raise self.p.fail(f"{where}.enum", "a table of value = name")
            mapping = {
                self.p.integer(int(k), f"{where}.enum.{k}"): str(v) for k, v in table.items()
            }
            unknown = self.const(str(item.get("unknown", "unknown-{}")).format)
            return f"{self.const(mapping)}.get({local}) or {unknown}({local})"
        if "format" in item:
            return f"{self.const(str(item['format']).format)}({local})"
        expr = local
        scale = item.get("scale", 1)
        if isinstance(scale, bool) or not isinstance(scale, int | float) or scale == 0:
            raise self.p.fail(f"{where}.scale", "a non-zero number")
        if scale != 1:
            # x / 10**k is the double nearest the exact decimal, so it prints as the device meant.
            exponent = -math.log10(scale)
            if exponent > 0 and exponent == round(exponent):
                expr = f"{expr} / {10 ** round(exponent)}"
            else:
                expr = f"{expr} * {float(scale)!r}"
        offset = item.get("offset", 0)
        if offset:
            expr = f"({expr} + {float(offset)!r})"
        unit = item.get("unit")
        if unit == "s":
            expr = f"{expr} * 1000"
        elif unit not in (None, "ms"):
            raise self.p.fail(f"{where}.unit", "'s' or 'ms' (time fields); put units in names")
        return expr

    def outputs(self, fname: str, item: dict[str, Any], where: str) -> None:
        for target in self.target_list(item.get("to"), f"{where}.to"):
            self.bind(target, self.values[fname], f"{where}.to")
        for j, bit in enumerate(item.get("bits", [])):
            bwhere = f"{where}.bits[{j}]"
            if not isinstance(bit, dict) or f"f_{fname}" not in self.values[fname]:
                raise self.p.fail(bwhere, "bits need an integer field and a table per bit")
            mask = 1 << self.p.integer(bit.get("bit"), f"{bwhere}.bit", 0, 64)
            expr = f"(f_{fname} & {mask} != 0)"
            for target in self.target_list(bit.get("to"), f"{bwhere}.to"):
                self.bind(target, expr, f"{bwhere}.to")
            if "alarm" in bit:
                spec = bit["alarm"]
                if not isinstance(spec, dict) or spec.get("severity") not in (
                    "info",
                    "warning",
                    "critical",
                ):
                    raise self.p.fail(f"{bwhere}.alarm", "a table with code and severity")
                alarm = Alarm(str(spec.get("code")), spec["severity"], spec.get("subsystem"))
                self.bit_alarms.append((f"f_{fname}", mask, alarm))

    def target_list(self, value: Any, where: str) -> list[str]:
        targets = [] if value is None else [value] if isinstance(value, str) else value
        for t in targets:
            if not isinstance(t, str) or not _TARGET.match(t):
                raise self.p.fail(
                    where,
                    f"bad target {t!r}: ts, device_id, position.<key>, "
                    "alarm.<key>, metrics.<name> or attrs.<name>",
                )
            group, _, key = t.partition(".")
            if (group == "position" and key not in _POSITION_KEYS) or (
                group == "alarm" and key not in _ALARM_KEYS
            ):
                raise self.p.fail(where, f"unknown key in {t!r}")
        return targets

    def bind(self, target: str, expr: str, where: str) -> None:
        if target in self.targets:
            raise self.p.fail(where, f"{target!r} is set twice")
        self.targets[target] = expr

    def text(self, target: str, template: Any, where: str) -> None:
        self.target_list(target, where)
        if not isinstance(template, str):
            raise self.p.fail(where, "a format string such as '{major}.{minor}'")
        used = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        if not all(f in self.values for f in used):
            raise self.p.fail(where, f"names fields the message does not have: {used}")
        args = ", ".join(f"{f}={self.values[f]}" for f in dict.fromkeys(used))
        self.bind(target, f"{self.const(template.format)}({args})", where)

    def result(self, kind: str) -> str:
        t = self.targets
        # A value sent to several targets (EVB1's speed: position and metrics) is computed once.
        shared = [v for v, uses in Counter(t.values()).items() if uses > 1 and not v.isidentifier()]
        lines = [f"    v_{i} = {v}" for i, v in enumerate(shared)]
        computed = {v: f"v_{i}" for i, v in enumerate(shared)}
        group = {
            g: {
                k.partition(".")[2]: computed.get(v, v)
                for k, v in t.items()
                if k.startswith(g + ".")
            }
            for g in ("position", "alarm", "metrics", "attrs")
        }
        # Structs are built with positional arguments (their field order, defaults filled in):
        # keywords cost ~40 % more per Struct, and a frame builds up to three.
        position = "None"
        if group["position"]:
            if not {"lat", "lon"} <= group["position"].keys():
                raise self.p.fail(self.where, "position needs both position.lat and position.lon")
            position = _positional("Position", _POSITION_DEFAULTS, group["position"])
        alarms: list[str] = []
        if group["alarm"]:
            if not {"code", "severity"} <= group["alarm"].keys():
                raise self.p.fail(self.where, "an alarm needs alarm.code and alarm.severity")
            alarms.append(_positional("Alarm", _ALARM_DEFAULTS, group["alarm"]))
        dicts = {
            g: "{" + ", ".join(f"{k!r}: {v}" for k, v in group[g].items()) + "}"
            for g in ("metrics", "attrs")
        }
        alarms_expr = f"({''.join(a + ', ' for a in alarms)})"
        if self.bit_alarms:
            lines.append(f"    alarms = {alarms_expr}")
            alarms_expr = "alarms"
        for local, mask, alarm in self.bit_alarms:
            lines.append(f"    if {local} & {mask}:")
            lines.append(f"        alarms += ({self.const(alarm)},)")
        ts = t.get("ts", "None")
        if "/" in ts or "." in ts:  # scaled: make it an integer number of milliseconds
            ts = f"int({ts})"
        # Reading(kind, ts_ms, position, metrics, io, alarms, attrs)
        lines.append(
            f"    return {t.get('device_id', 'None')}, (Reading({kind!r}, {ts}, {position}, "
            f"{dicts['metrics']}, {{}}, {alarms_expr}, {dicts['attrs']}),)"
        )
        self.consts["struct_unpack_from"] = struct.unpack_from
        return "".join(f"{line}\n" for line in lines)


def _positional(struct_name: str, defaults: dict[str, str], given: dict[str, str]) -> str:
    """Source of a call building ``struct_name`` from its fields in order, defaults filled in."""
    return (
        f"{struct_name}({', '.join(given.get(key, default) for key, default in defaults.items())})"
    )
