"""PROXY protocol v2: bytes in, results out; headers built by hand from the spec (HAProxy's
"The PROXY protocol", section 2.2) and checked whole, byte by byte and with trailing bytes."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parser.errors import ProtocolError
from parser.proxy_protocol import (
    MAX_HEADER_BYTES,
    SIGNATURE,
    AllowList,
    ProxyHeaderParser,
    ProxyMode,
    ProxyProtocolError,
    ProxyResult,
    TlvType,
    build_v2,
    build_v2_local,
    trusted_proxies,
)

SIG_HEX = "0d0a0d0a000d0a515549540a"
VPCE = "vpce-0123456789abcdef0"

# PROXY, TCP over IPv4, 192.0.2.1:12345 -> 198.51.100.2:443, then an ALPN TLV ("h2") and the AWS
# TLV: type 0xEA, length 23, subtype 0x01 (VPC endpoint id), 22 ASCII bytes. 12 + 5 + 26 = 43.
TCP4_AWS = bytes.fromhex(
    SIG_HEX
    + "21"
    + "11"
    + "002b"
    + "c0000201"
    + "c6336402"
    + "3039"
    + "01bb"
    + "010002"
    + "6832"
    + "ea0017"
    + "01"
    + VPCE.encode().hex()
)
# PROXY, TCP over IPv6, [2001:db8::1]:1000 -> [2001:db8::2]:2000, no TLV.
TCP6 = bytes.fromhex(
    SIG_HEX
    + "2121"
    + "0024"
    + "20010db8000000000000000000000001"
    + "20010db8000000000000000000000002"
    + "03e8"
    + "07d0"
)
# PROXY, TCP over IPv6 with an AUTHORITY TLV ("example.com").
TCP6_AUTHORITY = (
    TCP6[:14] + (36 + 14).to_bytes(2, "big") + TCP6[16:] + bytes.fromhex("02000b") + b"example.com"
)
LOCAL = bytes.fromhex(SIG_HEX + "20" + "00" + "0000")
# LOCAL still carrying an address block: the receiver must skip it (spec: "must not assume zero").
LOCAL_WITH_BLOCK = bytes.fromhex(SIG_HEX + "20" + "11" + "000c") + bytes(12)
UNSPEC = bytes.fromhex(SIG_HEX + "21" + "00" + "0000")
# UNSPEC with a block of unknown layout: skipped whole.
UNSPEC_WITH_BLOCK = bytes.fromhex(SIG_HEX + "21" + "00" + "0005") + b"\xff" * 5

DEVICE = bytes.fromhex("78780d01012345678901234500018cdd0d0a")  # a GT06 login, say


def feed_whole(data: bytes, mode: ProxyMode = ProxyMode.REQUIRED) -> ProxyResult:
    result = ProxyHeaderParser(mode).feed(data)
    assert result is not None
    return result


def feed_bytewise(data: bytes, mode: ProxyMode = ProxyMode.REQUIRED) -> ProxyResult:
    """Feed one byte at a time; the result must come with the last byte, not before."""
    parser = ProxyHeaderParser(mode)
    for i in range(len(data) - 1):
        assert parser.feed(data[i : i + 1]) is None
        assert parser.buffered_bytes == i + 1
    result = parser.feed(data[-1:])
    assert result is not None
    return result


def feed_three_ways(header: bytes) -> ProxyResult:
    """The result for ``header``; whole, byte by byte and with device bytes after it agree."""
    whole = feed_whole(header)
    assert whole.rest == b""
    assert feed_bytewise(header) == whole
    with_device = feed_whole(header + DEVICE)
    assert with_device.rest == DEVICE
    split = ProxyHeaderParser()
    assert split.feed(header[:-1]) is None
    assert split.feed(header[-1:] + DEVICE) == with_device
    assert feed_whole(header, ProxyMode.OPTIONAL) == whole
    return whole


def error_reason(data: bytes, mode: ProxyMode = ProxyMode.REQUIRED) -> str:
    with pytest.raises(ProxyProtocolError) as info:
        ProxyHeaderParser(mode).feed(data)
    return info.value.reason


def bytewise_error_at(data: bytes) -> tuple[int, str]:
    """Index of the byte whose arrival raised, and the reason."""
    parser = ProxyHeaderParser()
    for i in range(len(data)):
        try:
            assert parser.feed(data[i : i + 1]) is None
        except ProxyProtocolError as exc:
            return i, exc.reason
    raise AssertionError("no error")


# -- valid headers ------------------------------------------------------------------------------


def test_tcp4_with_aws_vpce_tlv() -> None:
    result = feed_three_ways(TCP4_AWS)
    assert result.command == "proxy"
    assert result.family == "tcp4"
    assert result.source == ("192.0.2.1", 12345)
    assert result.destination == ("198.51.100.2", 443)
    assert result.tlvs == {TlvType.ALPN: b"h2", TlvType.AWS: b"\x01" + VPCE.encode()}
    assert result.aws_vpce_id == VPCE


def test_tcp6() -> None:
    result = feed_three_ways(TCP6)
    assert result.command == "proxy"
    assert result.family == "tcp6"
    assert result.source == ("2001:db8::1", 1000)
    assert result.destination == ("2001:db8::2", 2000)
    assert result.tlvs == {}
    assert result.aws_vpce_id is None


def test_tcp6_with_authority_tlv() -> None:
    result = feed_three_ways(TCP6_AUTHORITY)
    assert result.source == ("2001:db8::1", 1000)
    assert result.tlvs == {TlvType.AUTHORITY: b"example.com"}


@pytest.mark.parametrize("header", [LOCAL, LOCAL_WITH_BLOCK], ids=["empty", "with_block"])
def test_local_uses_the_real_endpoints(header: bytes) -> None:
    result = feed_three_ways(header)
    assert result == ProxyResult(None, None, "local", "unspec", {}, None, b"")


def test_local_ignores_the_family_byte() -> None:
    # Spec 2.2: for LOCAL "the protocol block including the family ... is ignored".
    header = bytes.fromhex(SIG_HEX + "20" + "ff" + "0003") + b"abc"
    assert feed_three_ways(header).command == "local"


@pytest.mark.parametrize("header", [UNSPEC, UNSPEC_WITH_BLOCK], ids=["empty", "with_block"])
def test_proxy_unspec_has_no_addresses(header: bytes) -> None:
    result = feed_three_ways(header)
    assert result == ProxyResult(None, None, "proxy", "unspec", {}, None, b"")


def test_aws_tlv_with_another_subtype_is_kept_without_an_id() -> None:
    header = build_v2(("10.0.0.1", 1), ("10.0.0.2", 2), {0xEA: b"\x02xyz"})
    result = feed_three_ways(header)
    assert result.tlvs == {0xEA: b"\x02xyz"}
    assert result.aws_vpce_id is None


def test_repeated_tlv_keeps_the_first_value() -> None:
    body = bytes(12) + bytes.fromhex("040001aa" + "040002bbbb")
    header = bytes.fromhex(SIG_HEX + "2111") + len(body).to_bytes(2, "big") + body
    assert feed_three_ways(header).tlvs == {TlvType.NOOP: b"\xaa"}


def test_the_bytes_after_a_header_are_left_untouched() -> None:
    # A device that happens to send the signature again is the codec's business, not ours.
    result = feed_whole(TCP6 + TCP4_AWS + DEVICE)
    assert result.source == ("2001:db8::1", 1000)
    assert result.rest == TCP4_AWS + DEVICE


def test_build_v2_matches_the_hand_built_headers() -> None:
    tlvs: dict[int, bytes] = {TlvType.ALPN: b"h2", TlvType.AWS: b"\x01" + VPCE.encode()}
    assert build_v2(("192.0.2.1", 12345), ("198.51.100.2", 443), tlvs) == TCP4_AWS
    assert build_v2(("2001:db8::1", 1000), ("2001:db8::2", 2000)) == TCP6
    assert build_v2_local() == LOCAL


@pytest.mark.parametrize(
    ("source", "destination", "tlvs"),
    [
        (("10.0.0.1", 1), ("2001:db8::1", 2), None),
        (("10.0.0.1", -1), ("10.0.0.2", 2), None),
        (("10.0.0.1", 1), ("10.0.0.2", 65536), None),
        (("10.0.0.1", 1), ("10.0.0.2", 2), {256: b""}),
        (("10.0.0.1", 1), ("10.0.0.2", 2), {1: bytes(65536)}),
        (("10.0.0.1", 1), ("10.0.0.2", 2), {1: bytes(65520), 2: b""}),
        (("nowhere", 1), ("10.0.0.2", 2), None),
    ],
)
def test_build_v2_refuses_what_does_not_fit(
    source: tuple[str, int], destination: tuple[str, int], tlvs: dict[int, bytes] | None
) -> None:
    with pytest.raises(ValueError):
        build_v2(source, destination, tlvs)


def test_the_largest_header_is_accepted_and_bounds_the_buffer() -> None:
    header = build_v2(("10.0.0.1", 1), ("10.0.0.2", 2), {TlvType.NOOP: bytes(0xFFFF - 12 - 3)})
    assert len(header) == MAX_HEADER_BYTES
    parser = ProxyHeaderParser()
    for start in range(0, len(header) - 1000, 1000):
        assert parser.feed(header[start : start + 1000]) is None
        assert parser.buffered_bytes < MAX_HEADER_BYTES
    result = parser.feed(header[len(header) // 1000 * 1000 :] + DEVICE)
    assert result is not None
    assert result.rest == DEVICE


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason", "at"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "bad_signature", 0),
        (DEVICE, "bad_signature", 0),
        (b"PROXY TCP4 192.0.2.1 198.51.100.2 12345 443\r\n", "bad_signature", 0),  # v1
        (SIGNATURE[:5] + b"x" + SIGNATURE[6:] + TCP6[12:], "bad_signature", 5),
        (SIGNATURE[:11] + b"\x0b" + TCP6[12:], "bad_signature", 11),
        (SIGNATURE + b"\x11" + TCP6[13:], "bad_version", 12),
        (SIGNATURE + b"\x31" + TCP6[13:], "bad_version", 12),
        (SIGNATURE + b"\x22" + TCP6[13:], "bad_command", 12),
        (SIGNATURE + b"\x2f" + TCP6[13:], "bad_command", 12),
        (SIGNATURE + b"\x21\x31" + bytes.fromhex("00d8") + bytes(216), "bad_family", 13),  # UNIX
        (SIGNATURE + b"\x21\x32" + bytes.fromhex("00d8") + bytes(216), "bad_family", 13),
        (SIGNATURE + b"\x21\x12" + TCP4_AWS[14:], "bad_family", 13),  # UDP over IPv4
        (SIGNATURE + b"\x21\x22" + TCP6[14:], "bad_family", 13),  # UDP over IPv6
        (SIGNATURE + b"\x21\x10" + TCP4_AWS[14:], "bad_family", 13),
        (SIGNATURE + b"\x21\xff" + TCP4_AWS[14:], "bad_family", 13),
        (SIGNATURE + b"\x21\x11\x00\x08" + bytes(8), "truncated_addresses", 15),
        (SIGNATURE + b"\x21\x21\x00\x0c" + bytes(12), "truncated_addresses", 15),
        (SIGNATURE + b"\x21\x21\x00\x23" + bytes(35), "truncated_addresses", 15),
    ],
)
def test_bad_headers_are_refused_as_soon_as_the_bad_byte_arrives(
    data: bytes, reason: str, at: int
) -> None:
    assert error_reason(data) == reason
    assert bytewise_error_at(data) == (at, reason)


@pytest.mark.parametrize(
    "tail",
    [
        "01",  # one stray byte
        "0100",  # a TLV head cut short
        "010003" + "6832",  # value shorter than its length
        "01ffff",  # a length far past the end
        "010002" + "6832" + "02",  # a good TLV, then a stray byte
        "ea0000",  # AWS TLV without a subtype
        "ea0001" + "01",  # AWS VPCE id empty
        "ea0004" + "01" + "76c3a9",  # not ASCII
        "ea0004" + "01" + "760a31",  # a control character
    ],
)
def test_bad_tlvs(tail: str) -> None:
    body = bytes(12) + bytes.fromhex(tail)
    header = SIGNATURE + b"\x21\x11" + len(body).to_bytes(2, "big") + body
    assert error_reason(header) == "bad_tlv"
    assert bytewise_error_at(header) == (len(header) - 1, "bad_tlv")


def test_a_header_over_the_configured_bound_is_refused_at_its_length_field() -> None:
    header = build_v2(("10.0.0.1", 1), ("10.0.0.2", 2), {TlvType.NOOP: bytes(100)})
    parser = ProxyHeaderParser(max_header_bytes=64)
    with pytest.raises(ProxyProtocolError) as info:
        parser.feed(header[:16])
    assert info.value.reason == "header_too_long"
    assert ProxyHeaderParser(max_header_bytes=len(header)).feed(header) is not None


@pytest.mark.parametrize("bound", [15, MAX_HEADER_BYTES + 1])
def test_the_bound_cannot_be_set_outside_the_spec(bound: int) -> None:
    with pytest.raises(ValueError):
        ProxyHeaderParser(max_header_bytes=bound)


def test_the_error_is_a_protocol_error_with_a_reason() -> None:
    with pytest.raises(ProtocolError) as info:
        ProxyHeaderParser().feed(b"\x00")
    assert isinstance(info.value, ProxyProtocolError)
    assert info.value.reason == "bad_signature"
    assert str(info.value).startswith("bad_signature")


@pytest.mark.parametrize("first", [TCP6, b"nope"])
def test_the_parser_is_single_use(first: bytes) -> None:
    parser = ProxyHeaderParser()
    with contextlib.suppress(ProxyProtocolError):
        parser.feed(first)
    assert parser.buffered_bytes == 0
    with pytest.raises(RuntimeError):
        parser.feed(DEVICE)


# -- optional mode ------------------------------------------------------------------------------


def test_optional_passes_through_a_stream_whose_first_byte_differs() -> None:
    parser = ProxyHeaderParser(ProxyMode.OPTIONAL)
    assert parser.feed(b"") is None
    result = parser.feed(DEVICE)
    assert result == ProxyResult(None, None, "none", "unspec", {}, None, DEVICE)
    first = ProxyHeaderParser(ProxyMode.OPTIONAL).feed(DEVICE[:1])
    assert first is not None
    assert first.rest == DEVICE[:1]


def test_optional_decides_at_the_first_byte_that_leaves_the_signature() -> None:
    stream = SIGNATURE[:5] + b"\x78\x78" + DEVICE
    parser = ProxyHeaderParser(ProxyMode.OPTIONAL)
    for i in range(5):
        assert parser.feed(stream[i : i + 1]) is None
    result = parser.feed(stream[5:6])
    assert result is not None
    assert result.command == "none"
    assert result.rest == stream[:6]
    assert feed_whole(stream, ProxyMode.OPTIONAL).rest == stream


def test_optional_mode_still_refuses_a_bad_header_after_the_whole_signature() -> None:
    assert error_reason(SIGNATURE + b"\x11", ProxyMode.OPTIONAL) == "bad_version"
    assert error_reason(SIGNATURE + b"\x21\x31", ProxyMode.OPTIONAL) == "bad_family"


def test_optional_mode_parses_headers() -> None:
    result = feed_bytewise(TCP4_AWS, ProxyMode.OPTIONAL)
    assert result.aws_vpce_id == VPCE
    assert ProxyMode("optional") is ProxyMode.OPTIONAL


# -- properties ---------------------------------------------------------------------------------


def hostile() -> st.SearchStrategy[bytes]:
    """Random bytes, and random bytes behind ever longer valid prefixes (to reach deep states)."""
    deeper = (b"", b"\x20", b"\x21", b"\x21\x11", b"\x21\x21", b"\x21\x00")
    prefixes = st.sampled_from([b"", SIGNATURE[:5], *(SIGNATURE + tail for tail in deeper)])
    tails = st.one_of(
        st.binary(max_size=300),
        st.builds(lambda n, b: n.to_bytes(2, "big") + b, st.integers(0, 300), st.binary()),
    )
    return st.builds(lambda p, t: p + t, prefixes, tails)


@settings(max_examples=500, deadline=None)
@given(
    data=hostile(),
    cuts=st.lists(st.integers(0, 400), max_size=8),
    optional=st.booleans(),
    bound=st.sampled_from([16, 40, 64, MAX_HEADER_BYTES]),
)
def test_hostile_bytes_give_a_result_or_a_proxy_protocol_error_within_the_bound(
    data: bytes, cuts: list[int], optional: bool, bound: int
) -> None:
    mode = ProxyMode.OPTIONAL if optional else ProxyMode.REQUIRED
    parser = ProxyHeaderParser(mode, max_header_bytes=bound)
    edges = [0, *sorted(c for c in cuts if c < len(data)), len(data)]
    fed = b""
    for start, end in itertools.pairwise(edges):
        fed += data[start:end]
        try:
            result = parser.feed(data[start:end])
        except ProxyProtocolError:
            assert parser.buffered_bytes == 0
            return
        if result is None:
            assert parser.buffered_bytes == len(fed) < bound
            continue
        assert fed.endswith(result.rest)
        if result.command == "none":
            assert optional
            assert result.rest == fed
        else:
            assert 16 <= len(fed) - len(result.rest) <= bound
        return


ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
ipv6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
ports = st.integers(0, 65535)
tlv_maps = st.dictionaries(
    st.integers(0, 255).filter(lambda t: t != TlvType.AWS), st.binary(max_size=40), max_size=5
)


@settings(max_examples=300, deadline=None)
@given(
    pair=st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6)),
    sport=ports,
    dport=ports,
    tlvs=tlv_maps,
    trailing=st.binary(max_size=40),
    cut=st.integers(0, 400),
)
def test_any_built_header_parses_back_three_ways(
    pair: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...],
    sport: int,
    dport: int,
    tlvs: dict[int, bytes],
    trailing: bytes,
    cut: int,
) -> None:
    source, destination = (str(pair[0]), sport), (str(pair[1]), dport)
    header = build_v2(source, destination, tlvs)
    result = feed_three_ways(header)
    assert result.source == source
    assert result.destination == destination
    assert result.family == ("tcp4" if pair[0].version == 4 else "tcp6")
    assert result.tlvs == tlvs
    parser = ProxyHeaderParser()
    stream = header + trailing
    cut = min(cut, len(header) - 1)
    assert parser.feed(stream[:cut]) is None
    assert parser.feed(stream[cut:]) == ProxyResult(
        result.source, result.destination, "proxy", result.family, tlvs, None, trailing
    )


# -- allow-list ---------------------------------------------------------------------------------


def test_allow_list_ipv4_networks_and_single_hosts() -> None:
    allow = AllowList.parse(["10.0.0.0/8", "192.168.1.7", "172.16.0.0/12"])
    assert allow.allows("10.255.1.2")
    assert allow.allows("192.168.1.7")
    assert allow.allows("172.31.255.255")
    assert not allow.allows("192.168.1.8")
    assert not allow.allows("11.0.0.1")
    assert not allow.allows("172.32.0.0")
    assert not allow.allows("2001:db8::1")


def test_allow_list_ipv6() -> None:
    allow = AllowList.parse(["2001:db8::/32", "fd00::1"])
    assert allow.allows("2001:db8:ffff::1")
    assert allow.allows("fd00::1")
    assert allow.allows("2001:DB8::1")
    assert not allow.allows("fd00::2")
    assert not allow.allows("2001:db9::1")
    assert not allow.allows("10.0.0.1")


def test_allow_list_ipv4_mapped_addresses_and_networks() -> None:
    allow = AllowList.parse(["10.0.0.0/8"])
    assert allow.allows("::ffff:10.1.2.3")
    assert allow.allows("::ffff:a01:203")
    assert not allow.allows("::ffff:11.1.2.3")
    assert not allow.allows("::10.1.2.3")  # IPv4-compatible, deprecated: not a mapped address
    mapped = AllowList.parse(["::ffff:10.0.0.0/104"])
    assert mapped.allows("10.9.9.9")
    assert mapped.allows("::ffff:10.9.9.9")
    assert not mapped.allows("11.0.0.1")


def test_allow_list_none_allows_all_and_empty_allows_nothing() -> None:
    everyone = AllowList.parse(None)
    assert everyone.allows("203.0.113.9")
    assert everyone.allows("2001:db8::1")
    nobody = AllowList.parse([])
    assert not nobody.allows("203.0.113.9")
    assert not nobody.allows("::1")
    assert AllowList.parse(["0.0.0.0/0"]).allows("203.0.113.9")
    assert AllowList.parse(["::/0"]).allows("::1")


def test_allow_list_refuses_garbage_addresses() -> None:
    allow = AllowList.parse(["10.0.0.0/8"])
    assert not allow.allows("")
    assert not allow.allows("10.0.0")
    assert not allow.allows("example.com")
    assert AllowList.parse(["fe80::/10"]).allows("fe80::1%eth0")


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "10.0.0.1/8", "nonsense", "", " 10.0.0.0/8"])
def test_allow_list_invalid_entry_is_named(entry: str) -> None:
    with pytest.raises(ValueError, match=f"invalid allow-list entry {entry!r}"):
        AllowList.parse(["192.168.0.0/16", entry])


def test_allow_list_collapses_overlapping_entries() -> None:
    allow = AllowList.parse(["10.0.0.0/9", "10.128.0.0/9", "10.1.0.0/16", "::ffff:10.2.0.0/112"])
    assert [str(n) for n in allow.networks] == ["10.0.0.0/8"]
    assert repr(AllowList.parse(None)) == "AllowList(None)"


_IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_NET = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def unmapped_address(address: _IP) -> _IP:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def unmapped_network(network: _NET) -> _NET:
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        low = int(network.network_address) & 0xFFFFFFFF
        return ipaddress.IPv4Network((low, network.prefixlen - 96))
    return network


def any_network(address: st.SearchStrategy[_IP], bits: int) -> st.SearchStrategy[_NET]:
    return st.builds(
        lambda a, p: ipaddress.ip_network((a, p), strict=False), address, st.integers(0, bits)
    )


mapped_ipv4 = st.builds(lambda a: ipaddress.IPv6Address(f"::ffff:{a}"), ipv4)


@settings(max_examples=300, deadline=None)
@given(
    networks=st.lists(
        st.one_of(any_network(ipv4, 32), any_network(ipv6, 128), any_network(mapped_ipv4, 128)),
        max_size=6,
    ),
    address=st.one_of(ipv4, ipv6, mapped_ipv4),
)
def test_allow_list_agrees_with_ipaddress_membership(networks: list[_NET], address: _IP) -> None:
    plain = unmapped_address(address)
    expected = any(
        plain.version == net.version and plain in net for net in map(unmapped_network, networks)
    )
    assert AllowList.parse([str(n) for n in networks]).allows(str(address)) is expected


def test_trusted_proxies_are_the_networks_named_for_a_header_reading_listener() -> None:
    trusted = trusted_proxies("required", ["10.0.1.0/24", "10.0.2.0/24"])
    assert trusted.allows("10.0.2.17") and not trusted.allows("10.0.3.1")
    assert not trusted_proxies("off", None).allows("10.0.2.17")  # nothing reads a header


@pytest.mark.parametrize("mode", ["optional", "required"])
@pytest.mark.parametrize("entries", [None, []])
def test_a_header_reading_listener_must_name_its_trusted_proxies(
    mode: str, entries: list[str] | None
) -> None:
    # Trusting every peer would let any client claim any address: no default is safe.
    with pytest.raises(ValueError, match="needs proxy_protocol_trusted_networks"):
        trusted_proxies(mode, entries)


def test_trusted_proxies_without_proxy_protocol_are_a_configuration_mistake() -> None:
    with pytest.raises(ValueError, match="proxy_protocol = 'off'"):
        trusted_proxies("off", ["10.0.0.0/8"])
    with pytest.raises(ValueError, match=r"invalid allow-list entry '10\.0\.0\.1/8'"):
        trusted_proxies("required", ["10.0.0.1/8"])
