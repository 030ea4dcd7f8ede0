"""TLS contexts for device listeners, reloadable in place.

New handshakes use whatever certificate the context holds, so reloading the chain into the *same*
``SSLContext`` on SIGHUP rotates certificates without dropping a connection.
"""

from __future__ import annotations

import ssl

from gateway.settings import ConfigError, TlsSettings


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
