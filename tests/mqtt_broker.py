"""Debian's mosquitto for tests and benches: its own config and data dir, free loopback ports.

Started in the foreground (never ``-d``), ready once a raw CONNECT gets a CONNACK back (a broker
that accepts TCP but is too busy to answer is not ready), stopped by SIGTERM (which saves the
persistence file), killed by SIGKILL, and restarted on the same ports with the same data. The
config says ``user root``: as root without it mosquitto switches to the ``mosquitto`` user, cannot
write its data dir and silently loses persistence (shared/research/mqtt.md §1).
"""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

from tests.local_server import free_port
from tests.pki import Pki

MOSQUITTO = "/usr/sbin/mosquitto"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
# MQTT 3.1.1 CONNECT, clean session, keep-alive 60 s, client id "ready-check"; then DISCONNECT.
_CONNECT = bytes.fromhex("101700044d5154540402003c000b72656164792d636865636b")
_DISCONNECT = b"\xe0\x00"
CONNACK = 0x20


def issued(pki: Pki, name: str, common_name: str, *, server: bool = False) -> tuple[Path, Path]:
    """``pki.issue``, once per name: brokers and clients of many tests share their certificates
    (an RSA key takes a while to generate)."""
    crt, key = pki.directory / f"{name}.crt", pki.directory / f"{name}.key"
    if crt.exists() and key.exists():
        return crt, key
    return pki.issue(name, common_name, server=server)


@dataclass(frozen=True)
class BrokerListener:
    """One listener: ``tls`` (server certificate), ``client_certs`` (mutual TLS, the CN is the
    username), ``users`` (username -> password; anonymous clients refused), ``acl`` (the text of
    its ACL file, which ``acl_path`` names; rewrite it and ``reload``)."""

    tls: bool = False
    client_certs: bool = False
    users: tuple[tuple[str, str], ...] = ()
    acl: str = ""
    port: int = 0


class MosquittoBroker:
    def __init__(
        self,
        directory: Path,
        listeners: list[BrokerListener],
        pki: Pki | None = None,
        extra_config: str = "",
    ) -> None:
        self.directory = directory
        self.pki = pki
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "data").mkdir(exist_ok=True)
        self.listeners = [replace(x, port=x.port or free_port()) for x in listeners]
        self.log_path = directory / "mosquitto.log"
        self._server_cert: tuple[Path, Path] | None = None
        self._check_cert: tuple[Path, Path] | None = None
        if any(x.tls for x in self.listeners):
            assert pki is not None, "TLS listeners need a Pki"
            self._server_cert = issued(pki, "mosquitto-server", "localhost", server=True)
            if any(x.client_certs for x in self.listeners):
                self._check_cert = issued(pki, "mosquitto-ready-check", "ready-check")
        self.config_path = directory / "mosquitto.conf"
        self.config_path.write_text(self._config(extra_config))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        """The first listener's port."""
        return self.listeners[0].port

    def _config(self, extra: str) -> str:
        lines = [
            "user root",
            "per_listener_settings true",
            "persistence true",
            f"persistence_location {self.directory / 'data'}/",
            "autosave_interval 1",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            extra,
        ]
        for index, x in enumerate(self.listeners):
            lines.append(f"listener {x.port} 127.0.0.1")
            lines.append(f"allow_anonymous {'false' if x.users else 'true'}")
            if x.users:
                passwd = self.directory / f"passwd-{index}"
                for n, (user, password) in enumerate(x.users):
                    create = ["-c"] if n == 0 else []
                    subprocess.run(
                        ["mosquitto_passwd", *create, "-b", str(passwd), user, password],
                        check=True,
                        capture_output=True,
                        timeout=30,
                    )
                lines.append(f"password_file {passwd}")
            if x.tls:
                assert self.pki is not None and self._server_cert is not None
                crt, key = self._server_cert
                lines += [f"cafile {self.pki.ca_cert}", f"certfile {crt}", f"keyfile {key}"]
            if x.client_certs:
                lines += ["require_certificate true", "use_identity_as_username true"]
            if x.acl:
                self.acl_path(index).write_text(x.acl)
                lines.append(f"acl_file {self.acl_path(index)}")
        return "\n".join(lines) + "\n"

    def acl_path(self, index: int = 0) -> Path:
        return self.directory / f"acl-{index}"

    def reload(self) -> None:
        """SIGHUP: mosquitto reads its ACL and password files again."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def start(self) -> None:
        """Start (or start again, same ports and data) and wait for a CONNACK on every port."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        for listener in self.listeners:
            while not self._answers(listener):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"mosquitto did not start:\n{self.log_path.read_text()}")
                time.sleep(0.02)

    def _answers(self, listener: BrokerListener) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", listener.port), timeout=2) as raw:
                sock: socket.socket = raw
                if listener.tls:
                    assert self.pki is not None
                    context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
                    if self._check_cert is not None:
                        context.load_cert_chain(*self._check_cert)
                    sock = context.wrap_socket(raw, server_hostname="localhost")
                sock.sendall(_CONNECT)
                answer = sock.recv(4)
                if answer[:1] == bytes([CONNACK]):
                    sock.sendall(_DISCONNECT)
                    return True  # any CONNACK, even "not authorised": the broker is serving
                return False
        except (OSError, ssl.SSLError):
            return False

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence file and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL: whatever was not autosaved yet is lost (a PUBACK is not durability)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)

    def restart(self) -> None:
        self.stop()
        self.start()
