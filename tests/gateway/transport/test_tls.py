"""TLS device listeners at the edge, through the real gateway process on loopback: handshakes
count against the connection limit and the login deadline; a client certificate speaks for the
one device its CN names."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

from tests.gateway.devices import DeviceSocket
from tests.gateway.gatewayproc import GatewayProcess, read_records
from tests.parser.streams import evb1_ack, evb1_heartbeat, evb1_login
from tests.pki import Pki

IMEI = "356307042441013"
OTHER_IMEI = "356307042441099"
EVB1_ACK_BYTES = 11


def tls_listener(tmp_path: Path, pki: Pki, extra: str = "") -> Path:
    cert, key = pki.issue("server", "gateway", server=True)
    config = tmp_path / "gw.toml"
    config.write_text(
        "[[listeners]]\ncodec = 'evb1'\nhost = '127.0.0.1'\nport = 0\n"
        f"tls = {{ cert_file = '{cert}', key_file = '{key}' }}\n{extra}"
    )
    return config


def client_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.check_hostname = False
    return context


def test_silent_tls_sockets_are_held_to_the_connection_limit_and_the_login_deadline(
    tmp_path: Path,
) -> None:
    pki = Pki.create(tmp_path / "pki")
    limit, sockets, login_timeout_s = 3, 12, 1.0
    config = tls_listener(
        tmp_path, pki, f"max_connections = {limit}\nlogin_timeout_s = {login_timeout_s}\n"
    )
    gw = GatewayProcess(tmp_path / "data", codecs=(), config=config)
    try:
        port = gw.ports["evb1"]
        # TCP connected, never a ClientHello: a handshake that does not even start.
        silent = [DeviceSocket(port) for _ in range(sockets)]
        opened = time.monotonic()
        closed = [dev.closed_by_peer(timeout=login_timeout_s + 5) for dev in silent]
        assert all(closed)  # the refused ones at once, the admitted ones at the login deadline
        assert time.monotonic() - opened < login_timeout_s + 5  # not uvloop's 60 s handshake
        closed_total = "gateway_connections_closed_by_gateway_total"
        assert gw.metric(closed_total, reason="max_connections") == sockets - limit
        assert gw.metric(closed_total, reason="login_timeout") == limit
        # The limit was held by those sockets, not lost: a real device gets in once they are gone.
        with client_context(pki).wrap_socket(
            socket.create_connection(("127.0.0.1", port), timeout=5)
        ) as device:
            device.sendall(evb1_login(IMEI) + evb1_heartbeat(1))
            assert recv_exact(device, 2 * EVB1_ACK_BYTES) == evb1_ack(0, 1) + evb1_ack(1, 4)
        for dev in silent:
            dev.close()
    finally:
        assert gw.stop() == 0


def test_a_client_certificate_logs_in_only_the_device_its_cn_names(tmp_path: Path) -> None:
    pki = Pki.create(tmp_path / "pki")
    config = tls_listener(tmp_path, pki)
    config.write_text(config.read_text().replace(" }", f", client_ca_file = '{pki.ca_cert}' }}"))
    cert, key = pki.issue("device", IMEI)
    context = client_context(pki)
    context.load_cert_chain(cert, key)
    gw = GatewayProcess(tmp_path / "data", codecs=(), config=config)
    try:
        port = gw.ports["evb1"]
        with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5)) as own:
            own.sendall(evb1_login(IMEI) + evb1_heartbeat(1))
            assert recv_exact(own, 2 * EVB1_ACK_BYTES) == evb1_ack(0, 1) + evb1_ack(1, 4)
        # The same certificate logging in as another device: refused, nothing ACKed or kept.
        with context.wrap_socket(
            socket.create_connection(("127.0.0.1", port), timeout=5)
        ) as impostor:
            impostor.sendall(evb1_login(OTHER_IMEI) + evb1_heartbeat(2))
            assert recv_exact(impostor, EVB1_ACK_BYTES) == b""  # closed, no ACK
        closed_total = "gateway_connections_closed_by_gateway_total"
        assert gw.metric(closed_total, reason="certificate_mismatch") == 1
        assert gw.metric("gateway_rejects_total", reason="certificate_mismatch") == 1
    finally:
        assert gw.stop() == 0
    assert {r["device_id"] for r in read_records(gw.data_dir, "raw")} == {IMEI}
    (refused,) = gw.events("login refused: the client certificate names another device")
    assert (refused["device_id"], refused["certificate_cn"]) == (OTHER_IMEI, IMEI)


def recv_exact(sock: ssl.SSLSocket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data
