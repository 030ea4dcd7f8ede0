"""PROXY protocol version 2 header parsing and a source-address allow-list.

References ("spec") are to HAProxy's "The PROXY protocol", section 2.2 (binary header format,
version 2), which AWS Network Load Balancers send on TCP targets when proxy protocol v2 is
enabled. A header is the 12-byte signature, a version/command byte, a family/transport byte and
a 16-bit length of what follows: the address block, then TLVs. AWS adds ``PP2_TYPE_AWS`` (0xEA)
TLVs whose first value byte is a subtype; subtype 0x01 carries the VPC endpoint id in US-ASCII.

Sans-I/O: :class:`ProxyHeaderParser` is fed the first bytes of a connection and yields one
:class:`ProxyResult` (with the bytes after the header left in ``rest`` for the codec) or raises
:class:`ProxyProtocolError`, after which the runtime closes the connection.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from parser.errors import ProtocolError

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"  # 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A (spec 2.2)
_FIXED = struct.Struct(">12sBBH")  # signature, version/command, family/transport, length
_FIXED_BYTES = _FIXED.size  # 16
# The length field is 16 bits, so no valid header is longer: this bounds what a parser buffers.
MAX_HEADER_BYTES = _FIXED_BYTES + 0xFFFF

_VERSION_2 = 0x2
_COMMAND_LOCAL = 0x0
_COMMAND_PROXY = 0x1
_FAMILY_UNSPEC = 0x00
_FAMILY_TCP4 = 0x11
_FAMILY_TCP6 = 0x21
# Address blocks (spec 2.2): source and destination addresses, then source and destination ports.
_TCP4 = struct.Struct(">4s4sHH")  # 12 bytes
_TCP6 = struct.Struct(">16s16sHH")  # 36 bytes
_TLV_HEAD = struct.Struct(">BH")  # type, length of the value

_AWS_SUBTYPE_VPCE_ID = 0x01

Command = Literal["local", "proxy", "none"]
Family = Literal["tcp4", "tcp6", "unspec"]


class TlvType(enum.IntEnum):
    """TLV types registered by the spec (2.2.1 - 2.2.7), plus AWS's from the custom range."""

    ALPN = 0x01
    AUTHORITY = 0x02
    CRC32C = 0x03
    NOOP = 0x04
    UNIQUE_ID = 0x05
    SSL = 0x20
    NETNS = 0x30
    AWS = 0xEA  # value: subtype byte, then data (subtype 0x01: VPC endpoint id)


class ProxyMode(enum.Enum):
    """Whether a listener insists on a PROXY header."""

    REQUIRED = "required"  # a connection without the v2 signature is an error
    OPTIONAL = "optional"  # a connection without it is passed through unchanged


class ProxyProtocolError(ProtocolError):
    """The header cannot be accepted; the connection must be closed.

    ``reason`` is a short token fit for a metric label: ``bad_signature``, ``bad_version``,
    ``bad_command``, ``bad_family``, ``truncated_addresses``, ``bad_tlv`` or ``header_too_long``.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ProxyResult:
    """What the start of a connection said about its origin.

    ``command`` is ``"proxy"`` when the header relays a client, ``"local"`` for the proxy's own
    connection (a health check) and ``"none"`` when an optional-mode connection had no header.
    ``source``/``destination`` are ``None`` unless the family is TCP over IPv4/IPv6: the runtime
    then uses the real socket endpoints. ``tlvs`` maps each TLV type to its first value;
    ``rest`` is every byte received after the header, to be fed to the codec.
    """

    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    command: Command
    family: Family
    tlvs: dict[int, bytes]
    aws_vpce_id: str | None
    rest: bytes


class ProxyHeaderParser:
    """Reads one PROXY v2 header from the start of one connection; single use.

    ``feed`` returns ``None`` while more bytes are needed and never holds more than
    ``max_header_bytes`` (at most :data:`MAX_HEADER_BYTES`, the spec's own bound). A bad header is
    reported as soon as the offending byte arrives, so a hostile peer is not waited for.
    """

    def __init__(
        self, mode: ProxyMode = ProxyMode.REQUIRED, *, max_header_bytes: int = MAX_HEADER_BYTES
    ) -> None:
        if not _FIXED_BYTES <= max_header_bytes <= MAX_HEADER_BYTES:
            raise ValueError(
                f"max_header_bytes must be within {_FIXED_BYTES}..{MAX_HEADER_BYTES}, "
                f"got {max_header_bytes}"
            )
        self._mode = mode
        self._max_header_bytes = max_header_bytes
        self._buffer = bytearray()
        self._done = False

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for an incomplete header."""
        return len(self._buffer)

    def feed(self, data: bytes) -> ProxyResult | None:
        """Take the next bytes; the result once the header is complete, else ``None``.

        Raises :class:`ProxyProtocolError` for a bad header, and ``RuntimeError`` if called again
        after a result or an error (the caller hands the connection to the codec or closes it).
        """
        if self._done:
            raise RuntimeError("ProxyHeaderParser already finished; feed the codec instead")
        self._buffer += data
        try:
            result = self._parse()
        except ProxyProtocolError:
            self._finish()
            raise
        if result is not None:
            self._finish()
        return result

    def _finish(self) -> None:
        self._done = True
        self._buffer = bytearray()

    def _parse(self) -> ProxyResult | None:
        buf = self._buffer
        seen = min(len(buf), len(SIGNATURE))
        if buf[:seen] != SIGNATURE[:seen]:
            if self._mode is ProxyMode.OPTIONAL:
                return ProxyResult(None, None, "none", "unspec", {}, None, bytes(buf))
            raise ProxyProtocolError("bad_signature", f"{bytes(buf[:seen]).hex()} is no v2 header")
        if len(buf) <= len(SIGNATURE):
            return None
        version, command = buf[12] >> 4, buf[12] & 0x0F
        if version != _VERSION_2:
            raise ProxyProtocolError("bad_version", f"version {version}")
        if command not in (_COMMAND_LOCAL, _COMMAND_PROXY):
            # Spec 2.2: receivers must drop connections presenting unassigned commands.
            raise ProxyProtocolError("bad_command", f"command {command:#x}")
        if len(buf) < 14:
            return None
        family = buf[13]
        # LOCAL ignores the family (spec 2.2). Under PROXY we take TCP over IPv4/IPv6 and UNSPEC
        # only: the spec would let UDP and UNIX fall back to UNSPEC, but on a TCP listener they
        # mean a misconfigured proxy, and falling back would attribute every device to it.
        if command == _COMMAND_PROXY and family not in (_FAMILY_UNSPEC, _FAMILY_TCP4, _FAMILY_TCP6):
            raise ProxyProtocolError("bad_family", f"family/transport {family:#04x}")
        if len(buf) < _FIXED_BYTES:
            return None
        length = int.from_bytes(buf[14:16], "big")
        total = _FIXED_BYTES + length
        if total > self._max_header_bytes:
            raise ProxyProtocolError(
                "header_too_long", f"{total} bytes, limit {self._max_header_bytes}"
            )
        if command == _COMMAND_PROXY:
            needed = _address_bytes(family)
            if length < needed:
                raise ProxyProtocolError(
                    "truncated_addresses", f"{length} bytes for a {needed}-byte address block"
                )
        if len(buf) < total:
            return None
        rest = bytes(buf[total:])
        if command == _COMMAND_LOCAL or family == _FAMILY_UNSPEC:
            # Spec 2.2: LOCAL discards the whole block; an UNSPEC block has no defined layout,
            # so nothing in it (TLVs included) can be located. The length is still honoured.
            kind: Command = "local" if command == _COMMAND_LOCAL else "proxy"
            return ProxyResult(None, None, kind, "unspec", {}, None, rest)
        payload = bytes(buf[_FIXED_BYTES:total])
        if family == _FAMILY_TCP4:
            src, dst, sport, dport = _TCP4.unpack_from(payload)
            source = (str(ipaddress.IPv4Address(src)), sport)
            destination = (str(ipaddress.IPv4Address(dst)), dport)
            name: Family = "tcp4"
        else:
            src, dst, sport, dport = _TCP6.unpack_from(payload)
            source = (str(ipaddress.IPv6Address(src)), sport)
            destination = (str(ipaddress.IPv6Address(dst)), dport)
            name = "tcp6"
        tlvs, vpce_id = _parse_tlvs(payload, _address_bytes(family))
        return ProxyResult(source, destination, "proxy", name, tlvs, vpce_id, rest)


def _address_bytes(family: int) -> int:
    if family == _FAMILY_TCP4:
        return _TCP4.size
    if family == _FAMILY_TCP6:
        return _TCP6.size
    return 0


def _parse_tlvs(payload: bytes, start: int) -> tuple[dict[int, bytes], str | None]:
    """TLVs after the address block (spec 2.2), first value per type, and the AWS VPCE id.

    The CRC32C TLV is kept but not verified: the spec makes checking optional for receivers,
    NLB does not send it, and a pure-Python CRC over a 64 KiB header would cost milliseconds.
    """
    tlvs: dict[int, bytes] = {}
    vpce_id: str | None = None
    offset, end = start, len(payload)
    while offset < end:
        if end - offset < _TLV_HEAD.size:
            raise ProxyProtocolError("bad_tlv", f"{end - offset} stray bytes after the last TLV")
        kind, length = _TLV_HEAD.unpack_from(payload, offset)
        offset += _TLV_HEAD.size
        if length > end - offset:
            raise ProxyProtocolError(
                "bad_tlv", f"TLV {kind:#04x} claims {length} bytes, {end - offset} left"
            )
        value = payload[offset : offset + length]
        offset += length
        tlvs.setdefault(kind, value)
        if kind == TlvType.AWS:
            if not value:
                raise ProxyProtocolError("bad_tlv", "AWS TLV without a subtype")
            if value[0] == _AWS_SUBTYPE_VPCE_ID and vpce_id is None:
                vpce_id = _vpce_id(value[1:])
    return tlvs, vpce_id


def _vpce_id(raw: bytes) -> str:
    # AWS documents the endpoint id as US-ASCII ("vpce-0123456789abcdef0"); it ends up in logs
    # and records, so control characters and non-ASCII are refused rather than passed on.
    text = raw.decode("ascii", errors="replace")
    if not text or not text.isascii() or not text.isprintable():
        raise ProxyProtocolError("bad_tlv", f"VPC endpoint id {raw!r} is not printable ASCII")
    return text


def build_v2(
    source: tuple[str, int],
    destination: tuple[str, int],
    tlvs: Mapping[int, bytes] | None = None,
) -> bytes:
    """A PROXY command header for TCP over IPv4 or IPv6 (by the addresses' family), with TLVs.

    Raises ``ValueError`` for mixed families, bad ports or a header over the 16-bit length.
    """
    src = ipaddress.ip_address(source[0])
    dst = ipaddress.ip_address(destination[0])
    if src.version != dst.version:
        raise ValueError(f"{source[0]} and {destination[0]} are of different families")
    for port in (source[1], destination[1]):
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"port {port} out of range")
    family, block = (_FAMILY_TCP4, _TCP4) if src.version == 4 else (_FAMILY_TCP6, _TCP6)
    body = bytearray(block.pack(src.packed, dst.packed, source[1], destination[1]))
    for kind, value in (tlvs or {}).items():
        if not 0 <= kind <= 0xFF or len(value) > 0xFFFF:
            raise ValueError(f"TLV {kind} with {len(value)} bytes does not fit")
        body += _TLV_HEAD.pack(kind, len(value)) + value
    if len(body) > 0xFFFF:
        raise ValueError(f"{len(body)} bytes after the fixed header, at most 65535 fit")
    return _FIXED.pack(SIGNATURE, _VERSION_2 << 4 | _COMMAND_PROXY, family, len(body)) + body


def build_v2_local() -> bytes:
    """A LOCAL command header (the proxy's own connection, e.g. a health check)."""
    return _FIXED.pack(SIGNATURE, _VERSION_2 << 4 | _COMMAND_LOCAL, _FAMILY_UNSPEC, 0)


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


class AllowList:
    """Source networks allowed to connect; ``None`` networks means no allow-list (allow all).

    Lookups cost one set probe per distinct prefix length of the address's family, whatever the
    number of entries. IPv4-mapped IPv6 addresses and networks (``::ffff:10.0.0.0/104``) are
    treated as the IPv4 ones they map, so either spelling matches the other.
    """

    __slots__ = ("_allow_all", "_by_prefix", "networks")

    def __init__(self, networks: Iterable[_Network] | None) -> None:
        self._allow_all = networks is None
        v4: list[ipaddress.IPv4Network] = []
        v6: list[ipaddress.IPv6Network] = []
        for network in networks or ():
            if isinstance(network, ipaddress.IPv4Network):
                v4.append(network)
            elif network.subnet_of(_MAPPED):
                low = int(network.network_address) & 0xFFFFFFFF
                v4.append(ipaddress.IPv4Network((low, network.prefixlen - 96)))
            else:
                v6.append(network)
        collapsed4 = tuple(ipaddress.collapse_addresses(v4))
        collapsed6 = tuple(ipaddress.collapse_addresses(v6))
        self.networks: tuple[_Network, ...] = (*collapsed4, *collapsed6)
        # Per family: (shift, network prefixes as integers) for each prefix length present.
        self._by_prefix: dict[int, tuple[tuple[int, frozenset[int]], ...]] = {
            4: _prefix_sets(collapsed4, 32),
            6: _prefix_sets(collapsed6, 128),
        }

    @classmethod
    def parse(cls, entries: Iterable[str] | None) -> AllowList:
        """From CIDR strings or single addresses; ``None`` allows all, ``[]`` allows nothing.

        Raises ``ValueError`` naming the first invalid entry (host bits set count as invalid:
        ``10.0.0.1/8`` is more likely a typo than a wish for ``10.0.0.0/8``).
        """
        if entries is None:
            return cls(None)
        networks: list[_Network] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=True))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"invalid allow-list entry {entry!r}: {exc}") from None
        return cls(networks)

    def allows(self, address: str) -> bool:
        """Whether ``address`` (an IPv4 or IPv6 literal) is allowed; unparseable means no."""
        if self._allow_all:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        value = int(ip)
        return any(value >> shift in prefixes for shift, prefixes in self._by_prefix[ip.version])

    def __repr__(self) -> str:
        if self._allow_all:
            return "AllowList(None)"
        return f"AllowList({[str(n) for n in self.networks]!r})"


def trusted_proxies(mode: str, entries: Iterable[str] | None) -> AllowList:
    """The peers whose PROXY headers a listener honours (``mode``: off, optional, required).

    Any client can send a header, so one is believed only from the load balancer: a listener
    reading headers must name the networks its proxies connect from (the NLB's subnets). There
    is no safe default (trusting every peer would let a direct client claim any address), so
    ``ValueError`` says what to set; entries without a header-reading listener are refused too,
    as a sign of a mistaken configuration.
    """
    if mode == "off":
        if entries is not None:
            raise ValueError("proxy_protocol_trusted_networks is set but proxy_protocol = 'off'")
        return AllowList([])
    if not entries:
        raise ValueError(
            f"proxy_protocol = '{mode}' needs proxy_protocol_trusted_networks (the load "
            "balancer's subnets): a PROXY header from any other peer could claim any address"
        )
    return AllowList.parse(entries)


def _prefix_sets(networks: Iterable[_Network], bits: int) -> tuple[tuple[int, frozenset[int]], ...]:
    by_length: dict[int, set[int]] = {}
    for network in networks:
        shift = bits - network.prefixlen
        by_length.setdefault(shift, set()).add(int(network.network_address) >> shift)
    return tuple((shift, frozenset(prefixes)) for shift, prefixes in sorted(by_length.items()))
