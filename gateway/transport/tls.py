"""TLS contexts for device listeners, reloadable in place.

New handshakes use whatever certificate the context holds, so reloading the chain into the *same*
``SSLContext`` on SIGHUP rotates certificates without dropping a connection.
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

from gateway.common.settings_base import ConfigError
from gateway.transport.settings import TlsSettings


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if settings.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    )
    load(context, settings)
    return context


def load(context: ssl.SSLContext, settings: TlsSettings) -> None:
    """(Re)load the certificate chain and client CA; ConfigError names the file."""
    try:
        context.load_cert_chain(settings.cert_file, settings.key_file)
        if settings.client_ca_file is not None:
            context.load_verify_locations(settings.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            [f"tls: cannot load {settings.cert_file} / {settings.key_file}: {exc}"]
        ) from None


class TlsSession:
    """Server-side TLS over memory BIOs, run by the connection itself.

    The handshake is part of the connection's life from TCP accept: it counts against the
    connection limit and the login deadline (with ``create_server(ssl=...)`` the protocol exists
    only after it). Behind an NLB with PROXY protocol the header arrives in clear before the
    ClientHello: the connection reads the header, then starts TLS over the rest.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._in, self._out, server_side=True)
        self._handshaken = False

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        """Ciphertext in; (plaintext for the codec, ciphertext to send). Raises ssl.SSLError."""
        self._in.write(data)
        if not self._handshaken:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                return b"", self._out.read()
            self._handshaken = True
        plain = []
        while True:
            try:
                chunk = self._tls.read(65536)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                break
            if not chunk:
                break
            plain.append(chunk)
        return b"".join(plain), self._out.read()

    def peer_certificate(self) -> dict[str, Any] | None:
        """The verified client certificate, once the handshake is done (mutual TLS)."""
        return self._tls.getpeercert() if self._handshaken else None

    def close_notify(self) -> bytes:
        """The close_notify alert to write before closing (RFC 8446 6.1), once handshaken."""
        if not self._handshaken:
            return b""
        # SSLWantReadError: unwrap would wait for the peer's close_notify; we do not.
        with contextlib.suppress(ssl.SSLError):
            self._tls.unwrap()
        return self._out.read()

    def send(self, data: bytes) -> bytes:
        """Plaintext in; the ciphertext to write."""
        self._tls.write(data)
        return self._out.read()


def common_name(cert: dict[str, Any] | None) -> str | None:
    """The subject CN of a certificate as ``getpeercert()`` gives it (the first, if several).

    The CN is the identity a device certificate carries for mutual-TLS listeners: the device id
    its login must name (TCP) or the MQTT identity (``identity = "certificate"``).
    """
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
