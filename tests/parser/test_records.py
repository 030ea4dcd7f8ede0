"""Record helpers: the fast timestamp check agrees with the published pattern; timestamps
round-trip."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from parser.records import TIMESTAMP_PATTERN, all_timestamps, iso_ms, parse_iso_ms

PATTERN = re.compile(TIMESTAMP_PATTERN)
ASCII_STAMPS = st.from_regex(
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z\Z"
)
# Near misses as well as arbitrary text: the shape with characters swapped, cut or added.
STAMPS = st.one_of(
    ASCII_STAMPS,
    st.from_regex(TIMESTAMP_PATTERN),
    ASCII_STAMPS.flatmap(
        lambda s: st.tuples(
            st.integers(0, len(s)), st.integers(0, len(s)), st.text(max_size=3)
        ).map(lambda t: s[: t[0]] + t[2] + s[t[1] :])
    ),
    st.text(max_size=30),
)


@given(st.lists(STAMPS, max_size=8))
def test_all_timestamps_is_true_only_for_values_the_pattern_takes(values: list[str]) -> None:
    verdict = all_timestamps(values)
    assert verdict == all(all_timestamps([v]) for v in values)  # no value shifts another
    if verdict:
        assert all(PATTERN.search(v) for v in values)


@given(st.lists(ASCII_STAMPS, max_size=8))
def test_all_timestamps_takes_every_ascii_timestamp(values: list[str]) -> None:
    assert all_timestamps(values)


def test_what_all_timestamps_leaves_to_the_pattern() -> None:
    # The pattern's \d takes other decimal digits and its $ a final newline: no verdict here.
    for value in ("٢٠١٩-06-10T10:04:46.000Z", "2019-06-10T10:04:46.000Z\n"):
        assert PATTERN.search(value) and not all_timestamps([value])
    assert all_timestamps([])


@given(st.integers(min_value=0, max_value=253_402_300_799_999))  # up to 9999-12-31
def test_parse_iso_ms_reads_back_what_iso_ms_writes(ms: int) -> None:
    # Replay and parse run the rules on this round trip, live on the ms itself: they must agree.
    assert parse_iso_ms(iso_ms(ms)) == ms
