"""The layout language: a second, made-up device format added with a TOML file alone."""

from __future__ import annotations

import binascii
import struct

import pytest

from parser.codec import CodecOptions
from parser.errors import DecodeError, LayoutError
from parser.events import Frame
from parser.layout import compile_layout
from parser.layout_codec import LayoutCodec
from tests.parser.acme2 import ACME2, acme_frame, check_acme
from tests.parser.streams import layout_codec


def test_made_up_format_decodes() -> None:
    codec = LayoutCodec(compile_layout(ACME2, "acme2.toml"), CodecOptions())
    check_acme(codec)


def test_wrong_size_policy_frame_keeps_the_raw_frame() -> None:
    codec = LayoutCodec(compile_layout(ACME2, "acme2.toml"), CodecOptions())
    short = acme_frame(1, b"\x00" * 5)
    (event,) = codec.session().feed(short)
    assert isinstance(event, Frame)
    assert (event.error_code, event.readings, event.payload) == ("bad_size", (), short)


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (('name = "acme2"', 'name = "Acme 2"'), "codec.name"),
        (('magic = "aa"', 'magic = "zz"'), "framing.magic"),
        (('resync = "aa02"', 'resync = "bb"'), "framing.resync"),
        (("max = 200", "min = 200"), "framing.header"),
        (('length = "size"', 'length = "nope"'), "framing.length"),
        (('"crc16-x25"', '"crc32"'), "framing.crc.kind"),
        (('to = "metrics.coolant_c"', 'to = "metrics.Coolant"'), "message[1].fields[1].to"),
        (('to = "attrs.mode"', 'to = "position.altitude"'), "message[1].fields[2].to"),
        (('count = "count"', 'count = "missing"'), "message[1].fields[5].count"),
        (('kind = "telemetry"', 'kind = "gps"'), "message[1].kind"),
        (("id = 1\n", "id = 7\n"), "message[1].id"),
        (('value = "kind"', 'value = "knd"'), "ack.body[0].value"),
        (("scale = 0.01", "scale = 0"), "message[1].fields[5].scale"),
    ],
)
def test_layout_errors_name_the_file_and_key(edit: tuple[str, str], where: str) -> None:
    text = ACME2.replace(*edit)
    assert text != ACME2
    with pytest.raises(LayoutError) as info:
        compile_layout(text, "acme2.toml")
    assert str(info.value).startswith(f"acme2.toml: {where}")


def test_not_toml_is_a_layout_error() -> None:
    with pytest.raises(LayoutError, match=r"^x\.toml: not valid TOML"):
        compile_layout("[codec\n", "x.toml")


def test_strings_from_the_file_never_become_code() -> None:
    text = ACME2.replace('unknown = "mode{}"', "unknown = \"')+__import__('os').getpid()#{}\"")
    layout = compile_layout(text, "acme2.toml")
    body = struct.pack("<QhBBB3HB", 1, 0, 9, 0, 0, 0, 0, 0, 0)[: 8 + 2 + 3 + 1]
    _, (reading,) = layout.messages[1].decoder(body, 0, len(body))
    assert reading.attrs["mode"] == "')+__import__('os').getpid()#9"


@pytest.mark.parametrize(
    ("body_bytes", "detail"),
    [
        (37, "body of 37 bytes is too short"),
        (0, "body of 0 bytes is too short"),
        (39, "body is 39 bytes, not 38"),
    ],
)
def test_fixed_size_message_of_another_size_names_both_sizes(body_bytes: int, detail: str) -> None:
    # EVB1 telemetry (type 2) has a 38-byte body and no array: one size check says which way.
    codec = layout_codec("evb1")
    body = bytes(body_bytes)
    header = bytes([1, 2]) + struct.pack(">HH", 7, len(body))
    frame = b"EV" + header + body + struct.pack(">H", binascii.crc_hqx(header + body, 0xFFFF))
    with pytest.raises(DecodeError) as info:
        codec.decode(frame)
    assert info.value.code == "bad_size"
    assert info.value.detail == detail
