"""A throwaway certificate authority for TLS tests, made with the ``openssl`` command line.

One CA signs a server certificate for 127.0.0.1/localhost and any number of client
certificates (their CN is the device or client identity, as mutual-TLS listeners read it).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Pki:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @classmethod
    def create(cls, directory: Path, ca_name: str = "test-ca") -> Pki:
        """A new CA in ``directory`` (created if missing)."""
        directory.mkdir(parents=True, exist_ok=True)
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", "ca.key", "-out", "ca.crt", "-subj", f"/CN={ca_name}",
            cwd=directory,
        )  # fmt: skip
        return cls(directory)

    def issue(self, name: str, common_name: str, *, server: bool = False) -> tuple[Path, Path]:
        """A certificate and key signed by the CA: ``(name.crt, name.key)``.

        Server certificates are valid for 127.0.0.1 and localhost; client certificates carry
        the clientAuth extended key usage.
        """
        ext = self.directory / f"{name}.ext"
        ext.write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            if server
            else "extendedKeyUsage=clientAuth\n"
        )
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={common_name}",
            cwd=self.directory,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", ext.name,
            cwd=self.directory,
        )  # fmt: skip
        return self.directory / f"{name}.crt", self.directory / f"{name}.key"
