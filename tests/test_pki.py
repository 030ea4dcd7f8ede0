import ssl
import subprocess
from pathlib import Path

from tests.pki import Pki


def test_issued_certificates_verify_against_the_ca(tmp_path: Path) -> None:
    pki = Pki.create(tmp_path / "pki")
    server_cert, server_key = pki.issue("server", "localhost", server=True)
    client_cert, _ = pki.issue("dev1", "356307042441013")
    for cert in (server_cert, client_cert):
        verified = subprocess.run(
            ["openssl", "verify", "-CAfile", str(pki.ca_cert), str(cert)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(server_cert, server_key)
    decoded = ssl._ssl._test_decode_cert(str(client_cert))  # type: ignore[attr-defined]
    assert tuple(decoded["subject"]) == ((("commonName", "356307042441013"),),)
    assert tuple(decoded["issuer"]) == ((("commonName", "test-ca"),),)
