"""AIS-140 packets shared by the codec tests and the gateway process tests: the standard's login
example (its printed checksum is wrong, so ``LOGIN`` carries the XOR computed here; sources in
``test_ais140``) and an emergency packet."""

from __future__ import annotations

from functools import reduce

IMEI = "869867038141406"


def with_xor(body: str) -> bytes:
    """``$body*hh`` with the standard's XOR checksum, computed here."""
    raw = body.encode()
    return b"$" + raw + b"*" + f"{reduce(int.__xor__, raw, 0):02X}".encode()


LOGIN = with_xor(
    "Header,iTriangle,KA01I2000,861693034634154,1_37T02B0164MAIS,AIS140,12.976545,N,77.549759,E"
)
# Table 1A with an emergency (panic button) packet type, alert 10, emergency status 1.
EMERGENCY_BODY = (
    "NRM,ACME,1.0.0,EA,10,L,{imei},MH12AB1234,1,07122026,101500,18.520430,N,73.856743,E,"
    "42.5,90.0,9,560.0,1.2,0.8,airtel,1,1,12.6,4.1,1,C,24,404,45,0a83,e3c8,"
    "e3c7,0a83,7,e3fb,0a83,7,c79d,0a83,10,e3f9,0a83,0,0001,00,000042"
)
EMERGENCY = with_xor(EMERGENCY_BODY.format(imei=IMEI))
