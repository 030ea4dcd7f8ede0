"""GT06 block readers: the shortcuts taken for speed read exactly what the general way reads."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from parser.errors import DecodeError
from parser.gt06_blocks import (
    ContentReader,
    Parts,
    gps_block,
    gps_lbs_blocks,
    local_ms,
    position_of,
    read_lbs,
)

BYTE = st.integers(0, 255)


def outcome(read: Callable[[ContentReader, Parts], None], content: bytes) -> object:
    """What reading ``content`` left behind: the parts and the offset reached, or the error."""
    reader = ContentReader(content, 0x12)
    parts = Parts()
    try:
        read(reader, parts)
    except (DecodeError, ValueError) as exc:
        return type(exc), str(exc)
    return parts, list(parts.metrics.items()), list(parts.attrs.items()), reader.at


def apart(reader: ContentReader, parts: Parts) -> None:
    gps_block(reader, parts, UTC)
    read_lbs(reader, parts, lac_bytes=2, cell_bytes=3)


# Dates valid and not (month 13, day 0, hour 24 …), a two-byte MNC flag or not, content cut
# anywhere, and bytes appended.
@given(
    date_time=st.tuples(BYTE, st.integers(0, 14), st.integers(0, 32), *[st.integers(0, 61)] * 3),
    rest=st.binary(min_size=0, max_size=24),
)
def test_gps_and_lbs_read_as_one_equal_the_two_blocks(
    date_time: tuple[int, ...], rest: bytes
) -> None:
    content = bytes(date_time) + rest
    fused = outcome(lambda reader, parts: gps_lbs_blocks(reader, parts, UTC), content)
    assert fused == outcome(apart, content)


def test_gps_and_lbs_with_a_two_byte_mnc_read_as_the_two_blocks() -> None:
    content = bytes.fromhex("0b081d112e10cf027ac7eb0c46584900148f" + "81cc0001287d001fb8" + "ff")
    parts = Parts()
    reader = ContentReader(content, 0x12)
    gps_lbs_blocks(reader, parts, UTC)
    assert (parts.attrs["mcc"], parts.attrs["mnc"], parts.attrs["lac"]) == (460, 1, 10365)
    assert outcome(lambda r, p: gps_lbs_blocks(r, p, UTC), content) == outcome(apart, content)


def via_datetime(yy: int, mo: int, dd: int, hh: int, mi: int, ss: int) -> object:
    try:
        when = datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=UTC)
    except ValueError as exc:
        return str(exc)
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


@given(st.tuples(*[BYTE] * 6))
def test_utc_time_by_arithmetic_equals_datetime(fields: tuple[int, ...]) -> None:
    try:
        got: object = local_ms(UTC, *fields)
    except ValueError as exc:
        got = str(exc)
    assert got == via_datetime(*fields)


def test_other_zones_keep_their_offset() -> None:
    # 2011-08-29 17:46:16 in Shanghai (UTC+8) is 09:46:16 UTC.
    assert local_ms(ZoneInfo("Asia/Shanghai"), 11, 8, 29, 17, 46, 16) == 1_314_611_176_000


@given(lat_raw=st.integers(0, 2**32 - 1), lon_raw=st.integers(0, 2**32 - 1), cs=BYTE)
def test_degrees_are_the_raw_value_rounded_to_7_places(lat_raw: int, lon_raw: int, cs: int) -> None:
    position = position_of(8, lat_raw, lon_raw, 0, cs << 8)
    assert abs(position.lat) == round(lat_raw / 1_800_000, 7)
    assert abs(position.lon) == round(lon_raw / 1_800_000, 7)
