"""Behind the NLB: PROXY protocol v2, source allow-lists, TLS and SIGHUP reload, over sockets."""

from __future__ import annotations

import hashlib
import signal
import socket
import ssl
import subprocess
from pathlib import Path

from parser.proxy_protocol import build_v2
from tests.gateway.devices import DeviceSocket
from tests.gateway.gatewayproc import GatewayProcess, read_records, wait_for
from tests.parser.streams import evb1_ack, evb1_heartbeat, evb1_login

IMEI = "356307042441013"


def test_proxy_v2_gives_the_real_address_and_the_allow_list_checks_it(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(
        "[[listeners]]\ncodec = 'evb1'\nhost = '127.0.0.1'\nport = 0\n"
        "proxy_protocol = 'required'\nproxy_protocol_trusted_networks = ['127.0.0.0/8']\n"
        "allowed_networks = ['203.0.113.0/24']\n"
    )
    gw = GatewayProcess(tmp_path / "data", codecs=(), config=config)
    try:
        port = gw.ports["evb1"]
        header = build_v2(("203.0.113.7", 40000), ("10.0.0.5", port))
        dev = DeviceSocket(port)
        dev.send(header + evb1_login(IMEI) + evb1_heartbeat(1))
        assert dev.recv_exact(22) == evb1_ack(0, 1) + evb1_ack(1, 4)
        outsider = DeviceSocket(port)
        outsider.send(build_v2(("198.51.100.9", 1234), ("10.0.0.5", port)) + evb1_login(IMEI))
        assert outsider.closed_by_peer()
        bare = DeviceSocket(port)  # no PROXY header where one is required
        bare.send(evb1_login(IMEI))
        assert bare.closed_by_peer()
        closed = "gateway_connections_closed_by_gateway_total"
        assert gw.metric(closed, reason="source_not_allowed") == 1
        assert gw.metric(closed, reason="bad_proxy_header") == 1
        assert gw.metric("gateway_rejects_total", reason="proxy_bad_signature") == 1
        dev.close()
    finally:
        assert gw.stop() == 0
    raw = read_records(gw.data_dir, "raw")
    assert {r["peer"] for r in raw} == {"203.0.113.7:40000"}
    opened = [line for line in gw.events("connection open") if line.get("codec") == "evb1"]
    assert any(line["peer"] == "203.0.113.7:40000" for line in opened)


def make_cert(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def tls_device(port: int) -> tuple[ssl.SSLSocket, str]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5))
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return sock, hashlib.sha256(der).hexdigest()


def recv_exact(sock: ssl.SSLSocket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_tls_listener_reloads_its_certificate_on_sighup(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    first_cert, first_key = make_cert(certs, "first")
    second_cert, second_key = make_cert(certs, "second")
    live_cert, live_key = certs / "live.pem", certs / "live.key"
    live_cert.write_bytes(first_cert.read_bytes())
    live_key.write_bytes(first_key.read_bytes())
    config = tmp_path / "gw.toml"
    config.write_text(
        "[[listeners]]\ncodec = 'evb1'\nhost = '127.0.0.1'\nport = 0\n"
        f"tls = {{ cert_file = '{live_cert}', key_file = '{live_key}' }}\n"
    )
    gw = GatewayProcess(tmp_path / "data", codecs=(), config=config)
    try:
        port = gw.ports["evb1"]
        old, old_fingerprint = tls_device(port)
        old.sendall(evb1_login(IMEI))
        assert recv_exact(old, 11) == evb1_ack(0, 1)
        live_cert.write_bytes(second_cert.read_bytes())
        live_key.write_bytes(second_key.read_bytes())
        gw.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: bool(gw.events("reloaded")), timeout=10)
        new, new_fingerprint = tls_device(port)
        assert new_fingerprint != old_fingerprint  # new handshakes get the new certificate
        new.sendall(evb1_login("356307042441099"))
        assert recv_exact(new, 11) == evb1_ack(0, 1)
        old.sendall(evb1_heartbeat(1))  # and the open connection was not dropped
        assert recv_exact(old, 11) == evb1_ack(1, 4)
        old.close()
        new.close()
    finally:
        assert gw.stop() == 0


def test_proxy_header_before_tls(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "gw")
    config = tmp_path / "gw.toml"
    config.write_text(
        "[[listeners]]\ncodec = 'evb1'\nhost = '127.0.0.1'\nport = 0\nproxy_protocol = 'required'\n"
        "proxy_protocol_trusted_networks = ['127.0.0.1/32']\n"
        f"tls = {{ cert_file = '{cert}', key_file = '{key}' }}\n"
    )
    gw = GatewayProcess(tmp_path / "data", codecs=(), config=config)
    try:
        port = gw.ports["evb1"]
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        # As an NLB with PROXY v2 and TLS passthrough does: the header in clear, then TLS.
        raw.sendall(build_v2(("203.0.113.20", 50000), ("10.0.0.5", port)))
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        dev = context.wrap_socket(raw)
        dev.sendall(evb1_login(IMEI) + evb1_heartbeat(3))
        assert recv_exact(dev, 22) == evb1_ack(0, 1) + evb1_ack(3, 4)
        dev.close()
        plain = DeviceSocket(port)  # no TLS after the header: the handshake fails, closed
        plain.send(build_v2(("203.0.113.21", 50001), ("10.0.0.5", port)) + evb1_login(IMEI))
        assert plain.closed_by_peer()
    finally:
        assert gw.stop() == 0
    assert {r["peer"] for r in read_records(gw.data_dir, "raw")} == {"203.0.113.20:50000"}


def test_sighup_reloads_the_source_allow_list(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    listener = "[[listeners]]\ncodec = 'evb1'\nhost = '127.0.0.1'\nport = {port}\n"
    config.write_text(listener.format(port=0) + "allowed_networks = ['127.0.0.0/8']\n")
    gw = GatewayProcess(tmp_path / "data", codecs=(), config=config)
    try:
        port = gw.ports["evb1"]
        old = DeviceSocket(port)
        old.send(evb1_login(IMEI))
        assert old.recv_exact(11) == evb1_ack(0, 1)
        # The file now names the bound port, as an operator's file does (ports cannot change live).
        config.write_text(listener.format(port=port) + "allowed_networks = ['10.0.0.0/8']\n")
        gw.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: bool(gw.events("reloaded")), timeout=10)
        refused = DeviceSocket(port)
        refused.send(evb1_login("356307042441099"))
        assert refused.closed_by_peer()
        old.send(evb1_heartbeat(1))  # connections already open are kept
        assert old.recv_exact(11) == evb1_ack(1, 4)
        assert (
            gw.metric("gateway_connections_closed_by_gateway_total", reason="source_not_allowed")
            == 1
        )
        old.close()
    finally:
        assert gw.stop() == 0
